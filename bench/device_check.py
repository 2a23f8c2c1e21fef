"""Device check (not a test): what a lent GPU does with ResNet50, in under 8 minutes, offline.

1. Variants table: each GPU variant in-process (eager fp32, channels-last, bf16 autocast, inductor,
   TensorRT through torch-tensorrt or ONNX Runtime's TensorRT provider) at batch 1, 8, 32 and 64,
   with its speed-up over eager on the same GPU (the seed measured compiled 1.9x eager on a T4).
2. Served sweep: the two fastest variants deploybench can serve on the GPU (a backend whose class
   runs on cuda) and eager, each on deploybench's server at batch 1, 16 and 64, one closed-loop point
   at 2 x batch clients (at least 16): JPEG decoding and preprocessing run on the host's cores.
3. Roofline: images/s x 8.2 GFLOP (ResNet50: about 4.1 G multiply-adds per 224 x 224 image) over
   the GPU's dense fp16 tensor peak from its datasheet.

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/device_check.py [--json out.json] [--quick]

Without a CUDA device it says so and exits 0. Nothing is downloaded (random weights); nothing is
installed: a backend whose library is missing is listed as unavailable.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

GFLOP_PER_IMAGE = 8.2  # 2 x 4.1 G multiply-adds: ResNet50 at 224 x 224
# Dense fp16 tensor-core TFLOPS (NVIDIA datasheets; SXM parts where the name does not say PCIe).
PEAK_FP16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}
PEAK_FP16_TFLOPS.update({"L4": 121.0, "A10G": 70.0, "T4": 65.0})
GPU_VARIANTS = ("eager", "eager-channels-last", "eager-bf16", "inductor", "tensorrt")
BATCHES = (1, 8, 32, 64)
SERVED_BATCHES = (1, 16, 64)


def peak_tflops(gpu: str) -> float | None:
    """The datasheet peak of the first model name the GPU's name contains (longest names first)."""
    for model in sorted(PEAK_FP16_TFLOPS, key=len, reverse=True):
        if all(word.lower() in gpu.lower().split() for word in model.split()):
            return PEAK_FP16_TFLOPS[model]
    return None


def variants_table(batches: tuple[int, ...], budget_s: float) -> list[dict[str, Any]]:
    """Each GPU variant's in-process images/s per batch size (a failed build is a row with why)."""
    from deploybench.backends import BackendUnavailableError
    from deploybench.backends.build import build_variant
    from deploybench.config import ModelSpec
    from deploybench.inputs.calibration import parity_inputs
    from deploybench.models.sources import load_model
    from deploybench.variants.timing import time_variant

    spec = ModelSpec(weights="random")
    model = load_model(spec)
    inputs = parity_inputs(count=max(batches))
    rows = []
    for name in GPU_VARIANTS:
        start = time.perf_counter()
        try:
            variant, _ = build_variant(spec, name, threads=os.cpu_count() or 1, model=model, device="cuda")
        except (BackendUnavailableError, RuntimeError, ValueError) as exc:
            rows.append({"backend": name, "error": str(exc)[:200]})
            continue
        built = time.perf_counter() - start
        speeds = {
            b: time_variant(variant, inputs[:b], threads=1, budget_s=budget_s).images_per_s for b in batches
        }
        rows.append(
            {"backend": name, "precision": variant.precision, "build_s": built, "images_per_s": speeds}
        )
        print(f"{name:>20} ({variant.precision}, built in {built:.0f} s): " + ", ".join(
            f"b{b} {v:,.0f}/s" for b, v in speeds.items()
        ))  # fmt: skip
    return rows


def served_sweep(names: list[str], batches: tuple[int, ...], seconds: float) -> list[dict[str, Any]]:
    """Each backend on deploybench's server at each batch size: one closed-loop point."""
    from deploybench.config import LoadConfig, ModelSpec
    from deploybench.inputs.payload import default_payload_path, read_payloads
    from deploybench.load import HttpTarget, run_load
    from deploybench.results import Candidate
    from deploybench.stacks.process import ServerStartError, start_server, stop_server

    bodies = read_payloads(default_payload_path(), "image/jpeg")
    spec, rows, cores = ModelSpec(weights="random"), [], os.cpu_count() or 1
    for name in names:
        for batch in batches if name != "eager" else (1,):
            candidate = Candidate(
                backend=name, workers=1, threads=cores, max_batch_size=batch, max_delay_ms=2.0
            )
            log = Path(tempfile.mkdtemp()) / "server.log"
            try:
                server = start_server(spec, candidate, log, cache_dir=None, timeout_s=300)
            except ServerStartError as exc:
                rows.append({"backend": name, "batch": batch, "error": str(exc)[:200]})
                continue
            try:
                clients = max(16, 2 * batch)
                config = LoadConfig(
                    concurrency=clients, duration_s=seconds, warmup_s=3.0, window_s=seconds / 3
                )
                point = run_load(
                    HttpTarget(server.base_url, bodies, content_type="image/jpeg"), config
                ).points[0]
            finally:
                stop_server(server)
            rows.append({"backend": name, "batch": batch, "clients": clients, "rps": point.throughput_rps})
            print(
                f"served {name:>12} batch {batch:>2} at {clients} clients: {point.throughput_rps:,.1f} req/s"
            )
    return rows


def roofline(gpu: str, best_images_per_s: float) -> dict[str, Any]:
    peak = peak_tflops(gpu)
    achieved = best_images_per_s * GFLOP_PER_IMAGE / 1000  # TFLOPS
    share = achieved / peak if peak else None
    words = f"{share:.1%} of its {peak:g} TFLOPS fp16 peak" if share is not None else "peak unknown"
    rate = f"{best_images_per_s:,.0f} images/s x {GFLOP_PER_IMAGE} GFLOP"
    print(f"roofline: {rate} = {achieved:.1f} TFLOPS, {words}")
    return {"gpu": gpu, "achieved_tflops": achieved, "peak_tflops": peak, "share": share}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="shorter timings (about 3 minutes)")
    args = parser.parse_args()
    from deploybench.hardware import detect_gpu

    gpu = detect_gpu()
    if gpu is None:
        print("no NVIDIA GPU here (nvidia-smi, /proc/driver/nvidia): nothing to check")
        return
    print(f"GPU: {gpu}")
    table = variants_table(BATCHES, 1.0 if args.quick else 3.0)
    timed = [r for r in table if "images_per_s" in r]
    eager = next((r for r in timed if r["backend"] == "eager"), None)
    if eager:
        for row in timed:
            row["speedup"] = {b: v / eager["images_per_s"][b] for b, v in row["images_per_s"].items()}
    from deploybench.backends import all_backends

    servable = [r for r in timed if all_backends()[r["backend"]].device == "cuda"]
    best = sorted(servable, key=lambda r: -max(r["images_per_s"].values()))[:2]
    sweep = served_sweep(
        [r["backend"] for r in best] + ["eager"], SERVED_BATCHES, 6.0 if args.quick else 12.0
    )
    fastest = max((max(r["images_per_s"].values()) for r in timed), default=0.0)
    report = {"gpu": gpu, "variants": table, "served": sweep, "roofline": roofline(gpu, fastest)}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
