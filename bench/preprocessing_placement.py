"""Where the CPU of one served image goes, and what moving the preprocessing would save (not a test).

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/preprocessing_placement.py IR.xml \\
        [--rounds 3] [--images 150]

IR.xml: an OpenVINO int8 (or any) IR with a (N, 3, 224, 224) float input, e.g. the one
`bench/benchmark_app_ratio.py` extracts from an export, or the artifact cache's
`openvino-int8-*/model.xml`. One thread, CPU time (process_time) per image, median of the rounds:

- the network alone at batch 1 and 4 (LATENCY hint, 1 thread: a w2t1 worker's setting);
- THE reference preprocessing (Pillow decode with draft, box resize, normalise into a buffer);
- torchvision.io.decode_jpeg + transforms v2 resize + crop (pixels within 1/255 of the reference
  where Pillow's draft does not decode at a reduced scale), then the same normalise;
- normalisation folded into the graph (OpenVINO PrePostProcessor: u8 NHWC in), the network included;
- resize and normalisation folded into the graph (u8 NHWC of the crop box, any size), network included.

The last two report their cosine to the reference pipeline's logits: the graph's linear resize is not
Pillow's, so a folded resize changes the input the variant was gated on.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from openvino.preprocess import PrePostProcessor, ResizeAlgorithm

from deploybench.inputs.payload import (
    CROP,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESIZE,
    decode_image,
    default_payload_path,
    preprocess,
    resize_and_crop,
)

CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1}


def folded_model(core: ov.Core, xml: Path, resize: bool) -> Any:
    """The IR with u8 NHWC input; normalisation (and the resize, when asked) inside the graph."""
    ppp = PrePostProcessor(core.read_model(str(xml)))
    tensor = ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    steps = ppp.input().preprocess().convert_element_type(ov.Type.f32)
    if resize:
        tensor.set_spatial_dynamic_shape()
        steps.resize(ResizeAlgorithm.RESIZE_LINEAR)
    steps.mean([255 * m for m in IMAGENET_MEAN]).scale([255 * s for s in IMAGENET_STD])
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    return core.compile_model(ppp.build(), "CPU", CONFIG)


def crop_box_pixels(data: bytes) -> np.ndarray:
    """The decoded pixels of the reference's crop box, rounded to whole pixels, u8 HWC."""
    image = decode_image(data)
    width, height = image.size
    scale = RESIZE / min(width, height)
    new_w, new_h = max(CROP, round(width * scale)), max(CROP, round(height * scale))
    sx, sy = width / new_w, height / new_h
    top, left = (new_h - CROP) // 2 * sy, (new_w - CROP) // 2 * sx
    pixels = np.asarray(image)
    return pixels[round(top) : round(top + CROP * sy), round(left) : round(left + CROP * sx)]


def torchvision_pixels(data: bytes) -> np.ndarray:
    """torchvision's decode and antialiased resize, then the centre crop: u8 CHW."""
    import torch
    import torchvision.transforms.v2.functional as tvf
    from torchvision.io import ImageReadMode, decode_jpeg

    image = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    height, width = image.shape[-2:]
    scale = RESIZE / min(width, height)
    new_w, new_h = max(CROP, round(width * scale)), max(CROP, round(height * scale))
    image = tvf.resize(image, [new_h, new_w], antialias=True)
    top, left = (new_h - CROP) // 2, (new_w - CROP) // 2
    return image[:, top : top + CROP, left : left + CROP].numpy()


_SCALE = (1.0 / (255.0 * IMAGENET_STD)).reshape(3, 1, 1)
_SHIFT = (IMAGENET_MEAN / IMAGENET_STD).reshape(3, 1, 1)


def normalise_chw(pixels: np.ndarray, out: np.ndarray) -> np.ndarray:
    np.multiply(pixels, _SCALE, out=out, casting="unsafe")
    out -= _SHIFT
    return out


def cpu_ms(step: Callable[[], object], count: int) -> float:
    for _ in range(5):
        step()
    start = time.process_time()
    for _ in range(count):
        step()
    return 1000 * (time.process_time() - start) / count


def cases(core: ov.Core, xml: Path, data: bytes) -> dict[str, tuple[Callable[[], object], int]]:
    """Each case's step and how many images one step handles."""
    plain = core.compile_model(str(xml), "CPU", CONFIG)
    normalised, resized = folded_model(core, xml, False), folded_model(core, xml, True)
    run_plain, run_norm, run_resize = (m.create_infer_request() for m in (plain, normalised, resized))
    out = np.empty((3, CROP, CROP), np.float32)
    one, four = np.zeros((1, 3, CROP, CROP), np.float32), np.zeros((4, 3, CROP, CROP), np.float32)
    return {
        "network alone, batch 1": (lambda: run_plain.infer({0: one}, share_inputs=True), 1),
        "network alone, batch 4": (lambda: run_plain.infer({0: four}, share_inputs=True), 4),
        "reference preprocessing (Pillow)": (lambda: preprocess(data, out), 1),
        "torchvision decode + resize": (lambda: normalise_chw(torchvision_pixels(data), out), 1),
        "Pillow resize, normalise in graph, + network": (
            lambda: run_norm.infer({0: np.asarray(resize_and_crop(decode_image(data)))[None]}),
            1,
        ),
        "crop box only, resize + normalise in graph, + network": (
            lambda: run_resize.infer({0: np.ascontiguousarray(crop_box_pixels(data))[None]}),
            1,
        ),
    }


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def agreement(core: ov.Core, xml: Path, data: bytes) -> None:
    """Pixels of the torchvision path against the reference; logits of the folded graphs."""
    reference_pixels = np.asarray(resize_and_crop(decode_image(data))).transpose(2, 0, 1)
    diff = np.abs(torchvision_pixels(data).astype(int) - reference_pixels.astype(int)).max()
    print(f"torchvision pixels vs reference: max |difference| {diff} of 255")
    plain = core.compile_model(str(xml), "CPU", CONFIG)
    reference = plain.create_infer_request().infer({0: preprocess(data)[None]})[0]
    norm = folded_model(core, xml, False).create_infer_request()
    resized = folded_model(core, xml, True).create_infer_request()
    pixels = np.asarray(resize_and_crop(decode_image(data)))[None]
    print(f"normalise in graph: logits cosine {cosine(reference, norm.infer({0: pixels})[0]):.4f}")
    box = np.ascontiguousarray(crop_box_pixels(data))[None]
    print(f"resize + normalise in graph: logits cosine {cosine(reference, resized.infer({0: box})[0]):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ir", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=150)
    args = parser.parse_args()
    core, data = ov.Core(), default_payload_path().read_bytes()
    steps = cases(core, args.ir, data)
    figures: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, (step, images) in steps.items():
            figures[name].append(cpu_ms(step, max(1, args.images // images)) / images)
    for name, values in figures.items():
        print(f"{name:55s} {statistics.median(values):6.3f} ms CPU per image")
    agreement(core, args.ir, data)


if __name__ == "__main__":
    main()
