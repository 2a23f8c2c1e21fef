"""The served winner against OpenVINO's own best on the same IR (not a test).

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/benchmark_app_ratio.py STUDY_DIR \\
        [--candidate TRIAL_ID] [--duration 15] [--batches 1,4,8] [--rounds 2]

The study's candidate (default: the recommended one) is exported as a SageMaker PyTorch archive to get
the exact OpenVINO IR it serves (rebuilt from the artifact cache, re-checked as in the study). Then, in
alternating rounds on the same cores: `benchmark_app -hint throughput` on that IR at each batch size
(no JPEG decode, no HTTP: the runtime's own ceiling), and deploybench's server with the candidate's
knobs measured by wrk (1 thread, 16 connections, the study's JPEG payload, after a 5 s warm-up). It
prints each figure and served / best benchmark_app, the issue's ratio (with decoding and
preprocessing on the same cores as inference, so it cannot reach 1).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from deploybench.config import ModelSpec
from deploybench.export import export_candidate
from deploybench.export.core import study_config
from deploybench.inputs.payload import default_payload_path
from deploybench.report.study import load_study
from deploybench.results import TrialRecord
from deploybench.stacks.process import start_server, stop_server
from deploybench.study.spec import study_model_spec

LUA = """local f = io.open("{path}", "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
"""
THROUGHPUT = re.compile(r"Throughput:\s*([\d.]+)\s*FPS")
REQUESTS = re.compile(r"Requests/sec:\s*([\d.]+)")


def exported_ir(study_dir: Path, candidate: str | None, scratch: Path) -> tuple[Path, str]:
    """The candidate's IR as its export carries it, and the trial id."""
    archive = scratch / "exported.tar.gz"
    result = export_candidate(study_dir, archive, trial_id=candidate, target="sagemaker-pytorch")
    with tarfile.open(archive) as tar:
        tar.extractall(scratch / "exported", filter="data")
    xml = next((scratch / "exported").rglob("*.xml"), None)
    if xml is None:
        raise SystemExit(
            f"{result.trial_id} ({result.backend}) has no OpenVINO IR: pick an openvino candidate"
        )
    return xml, result.trial_id


def benchmark_app(xml: Path, batch: int, duration: float) -> float:
    """OpenVINO's own throughput on the IR at this batch (FPS: images per second)."""
    tool = shutil.which("benchmark_app", path=str(Path(sys.executable).parent)) or "benchmark_app"
    command = [tool, "-m", str(xml), "-d", "CPU", "-hint", "throughput", "-b", str(batch)]
    command += ["-shape", f"[{batch},3,224,224]", "-t", str(int(duration))]
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 300, check=False)
    found = THROUGHPUT.search(out.stdout)
    if found is None:
        raise SystemExit(f"benchmark_app failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return float(found.group(1))


def wrk(url: str, lua: Path, duration: float) -> float:
    """wrk's requests per second at 16 connections, after a 5 s warm-up it does not count."""
    base = ["wrk", "-t1", "-c16", "-s", str(lua), "--latency"]
    subprocess.run([*base, "-d5s", url], capture_output=True, timeout=60, check=False)
    out = subprocess.run([*base, f"-d{int(duration)}s", url], capture_output=True, text=True,
                         timeout=duration + 60, check=False)  # fmt: skip
    found = REQUESTS.search(out.stdout)
    if found is None:
        raise SystemExit(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    return float(found.group(1))


def served_candidate(study_dir: Path, trial_id: str) -> tuple[ModelSpec, TrialRecord]:
    study = load_study(study_dir)
    trial = next(t for t in study.trials if t.trial_id == trial_id)
    return study_model_spec(study_config(study)), trial


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("study", type=Path)
    parser.add_argument("--candidate", default=None)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="benchmark-app-ratio-"))
    xml, trial_id = exported_ir(args.study, args.candidate, scratch)
    spec, trial = served_candidate(args.study, trial_id)
    lua = scratch / "post.lua"
    lua.write_text(LUA.format(path=default_payload_path()))
    server = start_server(spec, trial.candidate, scratch / "server.log", cache_dir=None, timeout_s=900)
    served: list[float] = []
    native: dict[int, list[float]] = {int(b): [] for b in args.batches.split(",")}
    try:
        for round_ in range(args.rounds):
            served.append(wrk(server.invocations_url, lua, args.duration))
            stop_server(server)  # benchmark_app gets the cores to itself, as wrk's server did
            for batch, figures in native.items():
                figures.append(benchmark_app(xml, batch, args.duration))
            print(f"round {round_ + 1}: served {served[-1]:.1f} req/s; benchmark_app "
                  + ", ".join(f"b{b} {v[-1]:.1f}" for b, v in native.items()), flush=True)  # fmt: skip
            if round_ + 1 < args.rounds:
                server = start_server(
                    spec, trial.candidate, scratch / "server.log", cache_dir=None, timeout_s=900
                )
    finally:
        stop_server(server)
    best_batch = max(native, key=lambda b: statistics.median(native[b]))
    best = statistics.median(native[best_batch])
    rate = statistics.median(served)
    print(f"{trial_id}: served (wrk, 16 connections, JPEG decode included) {rate:.1f} req/s; "
          f"benchmark_app -hint throughput best {best:.1f} FPS at batch {best_batch}; "
          f"ratio {rate / best:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
