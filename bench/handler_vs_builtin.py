"""One variant served behind a user's own SageMaker handler vs the built-in pipeline (not a test).

The handler is the most common public shape: input_fn decodes the JPEG with PIL, predict_fn runs
torchvision's Resize(256)/CenterCrop(224)/ToTensor/Normalize, unsqueeze(0) and the model, output_fn
answers softmax top-5 as JSON. Its model_fn loads a ResNet50 with random weights (model.pth). Both
servers run the same backend at the same knobs, started exactly as a study starts them; rounds
alternate them (one resident at a time) so drift hurts both alike. Prints each point, the median
ratio handler / built-in, and each server's per-request time before the network (Server-Timing:
the handler's input_fn + predict_fn's own work vs the built-in decode + preprocess). A control handler,
the same but with the built-in pipeline's preprocessing in its input_fn, shows what serving behind a
handler costs once the preprocessing cost is equal. Beside throughput, each server's CPU ms per
answered request (front and workers, from psutil): on a saturated machine throughput is cores over
CPU per request, and that ratio hardly moves when other processes share the host.

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/handler_vs_builtin.py \\
        --backend openvino-int8 --config 2x1+b4+d2 --rounds 3 --duration 15
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
from pathlib import Path

import torch
import torchvision
from serve_overhead import (
    account,
    load_point,
    parse_config,
    snapshot,
)  # bench/ is on sys.path when a script there runs

from deploybench.config import ModelSpec
from deploybench.inputs.payload import default_payload_path
from deploybench.results import LoadPoint
from deploybench.stacks.process import start_server, stop_server

HANDLER = """
import io
import json
import os

import torch
import torchvision
import torchvision.transforms as T
from PIL import Image

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
transform = T.Compose([
    T.Resize(256),
    T.CenterCrop(224),
    T.ToTensor(),
    T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])


def model_fn(model_dir):
    model = torchvision.models.resnet50()
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), map_location=device))
    return model.to(device).eval()


def input_fn(request_body, content_type):
    return Image.open(io.BytesIO(request_body)).convert("RGB")


def predict_fn(image, model):
    batch = transform(image).unsqueeze(0).to(device)
    with torch.no_grad():
        return model(batch)


def output_fn(prediction, accept):
    probabilities = torch.nn.functional.softmax(prediction[0], dim=0)
    top = torch.topk(probabilities, 5)
    answer = [{"index": int(i), "probability": float(p)} for p, i in zip(top.values, top.indices)]
    return json.dumps(answer), "application/json"
"""


# The control: the same handler with the built-in pipeline's own preprocessing in input_fn, so its
# ratio to the built-in is the cost of serving behind a handler with the preprocessing cost equal.
CONTROL_FUNCTIONS = """

import numpy as np

from deploybench.sagemaker.codecs import decode_into


def input_fn(request_body, content_type):
    image = np.empty((3, 224, 224), np.float32)
    decode_into(request_body, "image/jpeg", image)
    return torch.from_numpy(image).unsqueeze(0)


def predict_fn(batch, model):
    with torch.no_grad():
        return model(batch)
"""


def handler_folder(root: Path, extra: str = "") -> Path:
    """model.pth (ResNet50, random weights, seed 0) + code/inference.py (the public shape, with
    `extra` functions replacing its own)."""
    (root / "code").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50().state_dict(), root / "model.pth")
    (root / "code" / "inference.py").write_text(textwrap.dedent(HANDLER) + extra)
    return root


def measure(
    spec: ModelSpec, args: argparse.Namespace, log: Path, body: bytes
) -> tuple[LoadPoint, float, float]:
    """(the point, the server's CPU ms per answered request: front, workers). CPU per request is
    what decides throughput on a saturated machine, and other processes on the host hardly move it."""
    candidate = parse_config(args.config).model_copy(update={"backend": args.backend})
    server = start_server(spec, candidate, log, cache_dir=args.cache_dir, timeout_s=900)
    try:
        load_point(server.invocations_url, [body], args.concurrency, 3.0)  # every batch size warm
        before = snapshot(server)
        point = load_point(server.invocations_url, [body], args.concurrency, args.duration)
        served = account(before, snapshot(server), 0.0, ("", point.throughput_rps, 0, None))
        return point, served.front_ms, served.workers_ms
    finally:
        stop_server(server)


def before_network_ms(point: LoadPoint) -> float:
    timing = point.server_timing_ms
    return timing.get("decode", 0.0) + timing.get("preprocess", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="openvino-int8")
    parser.add_argument("--config", default="2x1+b4+d2", help="WxT[+knob...] as bench/serve_overhead.py")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="handler-vs-builtin-"))
    payload = default_payload_path()
    body = payload.read_bytes()
    specs = {
        "handler": ModelSpec(source=str(handler_folder(work / "model")), payload=payload),
        "control": ModelSpec(
            source=str(handler_folder(work / "control", CONTROL_FUNCTIONS)), payload=payload
        ),
        "builtin": ModelSpec(source="torchvision:resnet50", weights="random"),
    }
    ratios: dict[str, list[float]] = {"handler": [], "control": []}
    cpu_ratios: dict[str, list[float]] = {"handler": [], "control": []}
    for round_index in range(args.rounds):
        measured = {name: measure(spec, args, work / f"{name}.log", body) for name, spec in specs.items()}
        points = {name: found[0] for name, found in measured.items()}
        cpu = {name: found[1] + found[2] for name, found in measured.items()}
        for name, found in ratios.items():
            found.append(points[name].throughput_rps / points["builtin"].throughput_rps)
            cpu_ratios[name].append(cpu["builtin"] / cpu[name])
        for name, point in points.items():
            print(
                f"round {round_index + 1} {name:8s}: {point.throughput_rps:7.2f} req/s  "
                f"server CPU {measured[name][1]:5.2f} front + {measured[name][2]:5.2f} workers ms/request  "
                f"p99 {point.latency.p99_ms:7.1f} ms  "
                f"before the network {before_network_ms(point):5.2f} ms/request  "
                f"server timing {point.server_timing_ms}",
                flush=True,
            )
        print(
            f"round {round_index + 1}: "
            + "  ".join(f"{n} / built-in = {r[-1]:.3f}" for n, r in ratios.items())
        )
    for name, found in ratios.items():
        print(
            f"median {name} / built-in over {args.rounds} rounds: throughput {statistics.median(found):.3f}, "
            f"inverse CPU per request {statistics.median(cpu_ratios[name]):.3f}"
        )


if __name__ == "__main__":
    main()
