"""Device check (not a test): what a lent GPU does with ResNet50, in under 8 minutes, offline.

1. Variants table: each GPU variant in-process (eager fp32; fp16 channels-last eager and torch.compile
   max-autotune with CUDA graphs, deploybench's GPU backends; channels-last and fp16 autocast; TensorRT
   through torch-tensorrt or ONNX Runtime's TensorRT provider; inductor fp32) at batch 1, 8, 32, 64,
   with its speed-up over eager on the same GPU (the seed measured compiled 1.9x eager on a T4).
2. Served sweep: the two fastest variants deploybench can serve on the GPU (a backend whose class
   runs on cuda) and eager, each on deploybench's server at batch 1, 16 and 64, one closed-loop point
   at 2 x batch clients (at least 16): JPEG decoding and preprocessing run on the host's cores.
3. Roofline: images/s x 8.2 GFLOP (ResNet50: about 4.1 G multiply-adds per 224 x 224 image) over
   the GPU's dense fp16 tensor peak from its datasheet.

On the lent machine, as one command (wheels made here first by bench/device_wheels.sh):

    bash bench/device_run.sh            # run(command=..., carry=[".whl"], timeout_s=540)

Time is bounded: no step starts past --deadline-s, no variant times a new batch size (each may
compile) past its --variant-budget-s, and the JSON is rewritten after every step, so a run cut
short still reports what it measured. --rehearse-on-cpu runs the same steps on this machine's CPU
with tiny budgets (every import, build, the server subprocess and the load test), roofline skipped.
Without a CUDA device (and without that flag) it says so and exits 0. Nothing is downloaded (random
weights); nothing is installed: a backend whose library is missing is a row with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GFLOP_PER_IMAGE = 8.2  # 2 x 4.1 G multiply-adds: ResNet50 at 224 x 224
# Dense fp16 tensor-core TFLOPS (NVIDIA datasheets; SXM parts where the name does not say PCIe).
PEAK_FP16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}
PEAK_FP16_TFLOPS.update({"L4": 121.0, "A10G": 70.0, "T4": 65.0})
# the served GPU classes first (fp16 eager, then compiled: the pair a GPU study serves), then the rest
GPU_VARIANTS = ("eager", "eager-fp16-cuda", "inductor-fp16-cuda", "eager-channels-last", "eager-bf16")
GPU_VARIANTS += ("tensorrt", "tensorrt-int8", "inductor")
BATCHES = (1, 8, 32, 64)
QUICK_BATCHES = (1, 8, 64)  # inductor compiles batch 1, then one dynamic-batch graph: 64 costs no compile
SERVED_BATCHES = (1, 16, 64)
SERVED_RESERVE_S = 45.0  # one served point: server start (imports, model, worker) + warm-up + stop
COMPILE_RESERVE_S = 120.0  # a compiling variant's build (inductor, TensorRT engines): it cannot be cut short


@dataclass(frozen=True)
class Plan:
    """How much each step may do: on the GPU, or the CPU rehearsal's tiny budgets."""

    device: str  # where the variants run: cuda, or cpu for --rehearse-on-cpu
    batches: tuple[int, ...]
    served_batches: tuple[int, ...]
    budget_s: float  # timing budget per (variant, batch)
    served_s: float  # measured seconds per served point
    threads: int  # torch intra-op threads while timing: 1 feeds a GPU; the rehearsal uses every core
    variant_budget_s: float  # no new batch size (a possible recompile) after this long on one variant
    deadline: float  # time.monotonic() after which no new step starts
    serve_count: int  # how many of the fastest servable variants are served besides eager


def make_plan(args: argparse.Namespace, started: float) -> Plan:
    """The GPU's plan (--quick: fewer batches, shorter timings), or the rehearsal's on the CPU."""
    deadline, budget = started + args.deadline_s, args.variant_budget_s
    if args.rehearse_on_cpu:
        cores = os.cpu_count() or 1
        return Plan("cpu", (1, 4), (1, 4), 0.5, 4.0, cores, budget, deadline, serve_count=1)
    if args.quick:
        return Plan("cuda", QUICK_BATCHES, SERVED_BATCHES, 1.0, 6.0, 1, budget, deadline, serve_count=2)
    return Plan("cuda", BATCHES, SERVED_BATCHES, 3.0, 12.0, 1, budget, deadline, serve_count=2)


def left_s(plan: Plan) -> float:
    return plan.deadline - time.monotonic()


def failure(exc: BaseException) -> str:
    """One line for a row: the exception's type and the start of its message."""
    return f"{type(exc).__name__}: {str(exc).strip()[:300]}"


def peak_tflops(gpu: str) -> float | None:
    """The datasheet peak of the first model name the GPU's name contains (longest names first)."""
    for model in sorted(PEAK_FP16_TFLOPS, key=len, reverse=True):
        if all(word.lower() in gpu.lower().split() for word in model.split()):
            return PEAK_FP16_TFLOPS[model]
    return None


def time_batches(variant: Any, inputs: Any, plan: Plan, start: float) -> dict[str, Any]:
    """images/s per batch size; past the variant's budget or the deadline the rest are skipped, and a
    batch that fails (a recompile, memory) is noted: the sizes already timed stand."""
    from deploybench.variants.timing import time_variant

    speeds: dict[int, float] = {}
    notes: dict[int, str] = {}
    for b in plan.batches:
        if time.perf_counter() - start > plan.variant_budget_s or left_s(plan) < SERVED_RESERVE_S:
            notes[b] = "skipped: time budget"
            continue
        try:
            timing = time_variant(variant, inputs[:b], threads=plan.threads, budget_s=plan.budget_s)
        except Exception as exc:  # one batch size failing must not lose the others
            notes[b] = failure(exc)
            continue
        speeds[b] = timing.images_per_s
    return {"images_per_s": speeds, **({"notes": notes} if notes else {})}


def variant_row(name: str, spec: Any, model: Any, inputs: Any, plan: Plan) -> dict[str, Any]:
    """Build one variant on the plan's device and time it; a failed build is a row with why."""
    from deploybench.backends.build import build_variant

    start = time.perf_counter()
    try:
        variant, _ = build_variant(spec, name, threads=os.cpu_count() or 1, model=model, device=plan.device)
    except Exception as exc:  # unavailable, or a build that breaks: a row, not a crash
        print(f"{name:>20}: {failure(exc)}")
        return {"backend": name, "error": failure(exc)}
    built = time.perf_counter() - start
    row = {"backend": name, "precision": variant.precision, "build_s": built}
    row.update(time_batches(variant, inputs, plan, start))
    parts = [f"b{b} {v:,.0f}/s" for b, v in row["images_per_s"].items()]
    parts += [f"b{b} {why}" for b, why in row.get("notes", {}).items()]
    print(f"{name:>20} ({variant.precision}, built in {built:.0f} s): " + ", ".join(parts))
    return row


def free_gpu_cache() -> None:
    """Give back the memory the last variant held (it is out of scope) before the next one builds."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def build_reserve_s(name: str) -> float:
    """Time a build may take beyond the served step's reserve: a backend compiled in every process
    (rebuilt_per_process) compiles for minutes, the eager ones build in a second."""
    from deploybench.backends import all_backends

    return COMPILE_RESERVE_S if all_backends()[name].rebuilt_per_process else 0.0


def variants_table(plan: Plan, on_row: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """Each GPU variant's in-process images/s per batch size, with its speed-up over eager; on_row sees
    the rows so far after each variant (a compile that outlasts the run's limit loses only its own)."""
    from deploybench.config import ModelSpec
    from deploybench.inputs.calibration import parity_inputs
    from deploybench.models.sources import load_model

    spec = ModelSpec(weights="random")
    model = load_model(spec)
    inputs = parity_inputs(count=max(plan.batches))
    rows = []
    for name in GPU_VARIANTS:
        if left_s(plan) < SERVED_RESERVE_S + build_reserve_s(name):
            rows.append({"backend": name, "error": "skipped: the check's deadline is near"})
            continue
        rows.append(variant_row(name, spec, model, inputs, plan))
        free_gpu_cache()
        on_row(rows)
    eager = next((r for r in rows if r["backend"] == "eager" and r.get("images_per_s")), None)
    for row in rows:
        if eager and row.get("images_per_s"):
            base = eager["images_per_s"]
            row["speedup"] = {b: v / base[b] for b, v in row["images_per_s"].items() if b in base}
    return rows


def served_names(table: list[dict[str, Any]], plan: Plan) -> list[str]:
    """Eager first (the reference, which the server runs on the CPU: served before the deadline can
    skip it), then the fastest variants whose backend class runs on the plan's device (what
    deploybench's server builds there)."""
    from deploybench.backends import all_backends

    backends = all_backends()
    timed = [r for r in table if r.get("images_per_s") and r["backend"] != "eager"]
    servable = [r for r in timed if backends[r["backend"]].device == plan.device]
    best = sorted(servable, key=lambda r: -max(r["images_per_s"].values()))[: plan.serve_count]
    return ["eager"] + [r["backend"] for r in best]


def served_point(name: str, batch: int, bodies: list[bytes], plan: Plan) -> dict[str, Any]:
    """One backend on deploybench's server (a `deploybench serve` subprocess): one closed-loop point
    at 2 x batch clients (at least 16)."""
    from deploybench.config import LoadConfig, ModelSpec
    from deploybench.load import HttpTarget, run_load
    from deploybench.results import Candidate
    from deploybench.stacks.process import ServerStartError, start_server, stop_server

    cores = os.cpu_count() or 1
    candidate = Candidate(backend=name, workers=1, threads=cores, max_batch_size=batch, max_delay_ms=2.0)
    log = Path(tempfile.mkdtemp()) / "server.log"
    timeout = max(30.0, min(300.0, left_s(plan) - plan.served_s - 10))
    try:
        server = start_server(ModelSpec(weights="random"), candidate, log, cache_dir=None, timeout_s=timeout)
    except ServerStartError as exc:
        print(f"served {name:>12} batch {batch:>2}: {exc}\n{exc.log_tail[-2000:]}")
        return {"backend": name, "batch": batch, "error": str(exc)[:300], "log_tail": exc.log_tail[-2000:]}
    clients = max(16, 2 * batch)
    warmup = min(3.0, plan.served_s / 2)
    config = LoadConfig(
        concurrency=clients, duration_s=plan.served_s, warmup_s=warmup, window_s=plan.served_s / 3
    )
    try:
        target = HttpTarget(server.invocations_url, bodies, content_type="image/jpeg")
        point = run_load(target, config).points[0]
    except Exception as exc:  # a load test that breaks is a row; the server still stops
        return {"backend": name, "batch": batch, "error": failure(exc)}
    finally:
        stop_server(server)
    errors = sum(point.errors.values())
    print(
        f"served {name:>12} batch {batch:>2} at {clients} clients: {point.throughput_rps:,.1f} req/s, "
        f"p50 {point.latency.p50_ms:.1f} ms, p99 {point.latency.p99_ms:.1f} ms, {point.ok} ok, "
        f"{errors} errors"
    )
    return {
        "backend": name,
        "batch": batch,
        "clients": clients,
        "rps": point.throughput_rps,
        "ok": point.ok,
        "errors": point.errors,
        "p50_ms": point.latency.p50_ms,
        "p99_ms": point.latency.p99_ms,
    }


def served_sweep(names: list[str], plan: Plan) -> list[dict[str, Any]]:
    """Each named backend at each served batch size (eager at batch 1 only); skipped near the deadline."""
    from deploybench.inputs.payload import default_payload_path, read_payloads

    bodies = read_payloads(default_payload_path(), "image/jpeg")
    rows = []
    for name in names:
        for batch in plan.served_batches if name != "eager" else (1,):
            if left_s(plan) < plan.served_s + 15:
                rows.append(
                    {"backend": name, "batch": batch, "error": "skipped: the check's deadline is near"}
                )
                continue
            rows.append(served_point(name, batch, bodies, plan))
    return rows


def roofline(gpu: str | None, best_images_per_s: float) -> dict[str, Any]:
    """The best images/s as a share of the GPU's datasheet fp16 peak (skipped without a GPU)."""
    if gpu is None:
        print(f"roofline: no GPU: skipped (rehearsal on the CPU; best {best_images_per_s:,.0f} images/s)")
        return {"gpu": None, "skipped": "no GPU"}
    peak = peak_tflops(gpu)
    achieved = best_images_per_s * GFLOP_PER_IMAGE / 1000  # TFLOPS
    share = achieved / peak if peak else None
    words = f"{share:.1%} of its {peak:g} TFLOPS fp16 peak" if share is not None else "peak unknown"
    rate = f"{best_images_per_s:,.0f} images/s x {GFLOP_PER_IMAGE} GFLOP"
    print(f"roofline: {rate} = {achieved:.1f} TFLOPS, {words}")
    return {"gpu": gpu, "achieved_tflops": achieved, "peak_tflops": peak, "share": share}


def environment(gpu: str | None, plan: Plan) -> dict[str, Any]:
    """What ran the check: python, torch and its CUDA, the plan's device."""
    import torch

    env = {
        "gpu": gpu,
        "device": plan.device,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cores": os.cpu_count(),
    }
    print("environment: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    return env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the report here (rewritten after every step)")
    parser.add_argument("--quick", action="store_true", help="fewer batches, shorter timings (~3 minutes)")
    parser.add_argument(
        "--rehearse-on-cpu",
        action="store_true",
        help="run every step on the CPU with tiny budgets (batches 1 and 4), roofline skipped",
    )
    parser.add_argument("--deadline-s", type=float, default=420.0, help="no step starts after this")
    parser.add_argument(
        "--variant-budget-s", type=float, default=150.0, help="no new batch size after this on one variant"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    plan = make_plan(args, started)
    from deploybench.hardware import detect_gpu

    gpu = detect_gpu()
    if gpu is None and not args.rehearse_on_cpu:
        print("no NVIDIA GPU here (nvidia-smi, /proc/driver/nvidia): nothing to check")
        return 0
    report: dict[str, Any] = {"gpu": gpu, "rehearsal": args.rehearse_on_cpu}

    def save(**step: Any) -> None:
        report.update(step)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str))

    print(f"rehearsing every step on the CPU (GPU: {gpu})" if args.rehearse_on_cpu else f"GPU: {gpu}")
    save(environment=environment(None if args.rehearse_on_cpu else gpu, plan))
    table = variants_table(plan, lambda rows: save(variants=rows))
    save(variants=table)
    save(served=served_sweep(served_names(table, plan), plan))
    fastest = max((max(r["images_per_s"].values()) for r in table if r.get("images_per_s")), default=0.0)
    save(roofline=roofline(None if args.rehearse_on_cpu else gpu, fastest))
    failed = [r["backend"] for r in table + report["served"] if "error" in r]
    print(f"done in {time.monotonic() - started:.0f} s; rows with errors: {failed}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(1)
