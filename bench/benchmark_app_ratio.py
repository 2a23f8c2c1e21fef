"""The served winner against OpenVINO's own best on the same IR (not a test).

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/benchmark_app_ratio.py STUDY_DIR \\
        [--candidate TRIAL_ID] [--duration 15] [--batches 1,4,8] [--rounds 2] [--decoders pillow,torchvision]

The study's candidate (default: the recommended one) is exported as a SageMaker PyTorch archive to get
the exact OpenVINO IR it serves (rebuilt from the artifact cache, re-checked as in the study). Then, in
alternating rounds on the same cores: `benchmark_app -hint throughput` on that IR at each batch size
(no JPEG decode, no HTTP: the runtime's own ceiling), and deploybench's server with the candidate's
knobs measured by wrk (1 thread, 16 connections, the study's JPEG payload, after a 5 s warm-up), once
per round with each of --decoders (RuntimeKnobs.decoder, in turns). It
prints each figure and served / best benchmark_app, the issue's ratio (with decoding and
preprocessing on the same cores as inference, so it cannot reach 1).

It also says where the served CPU goes, so the ratio has a bound to read it against: CPU seconds per
request of the server's processes during wrk's run (front and workers, from psutil), CPU per image
of benchmark_app (its process's CPU over its images), and decoding + preprocessing per request from
the server's own Server-Timing on sequential requests. With both runs saturating the same cores,
the ratio is about benchmark_app's CPU per image over the server's CPU per request; the ceiling
printed is that ratio for a server that spent nothing beyond the network and the preprocessing.
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from urllib.request import Request, urlopen

import psutil

from deploybench.config import ModelSpec
from deploybench.export import export_candidate
from deploybench.export.core import study_config
from deploybench.inputs.payload import default_payload_path
from deploybench.load.shapes import parse_server_timing
from deploybench.report.study import load_study
from deploybench.results import Candidate, TrialRecord
from deploybench.stacks.process import start_server, stop_server
from deploybench.study.spec import study_model_spec

LUA = """local f = io.open("{path}", "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
"""
THROUGHPUT = re.compile(r"Throughput:\s*([\d.]+)\s*FPS")
COUNT = re.compile(r"Count:\s*(\d+)\s*iterations")
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


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def benchmark_app(xml: Path, batch: int, duration: float) -> tuple[float, float]:
    """OpenVINO's own throughput on the IR at this batch (FPS), and its CPU ms per image."""
    tool = shutil.which("benchmark_app", path=str(Path(sys.executable).parent)) or "benchmark_app"
    command = [tool, "-m", str(xml), "-d", "CPU", "-hint", "throughput", "-b", str(batch)]
    command += ["-shape", f"[{batch},3,224,224]", "-t", str(int(duration))]
    cpu_before = children_cpu_s()
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 300, check=False)
    cpu_s = children_cpu_s() - cpu_before
    found, count = THROUGHPUT.search(out.stdout), COUNT.search(out.stdout)
    if found is None or count is None:
        raise SystemExit(f"benchmark_app failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return float(found.group(1)), 1000 * cpu_s / (int(count.group(1)) * batch)


def tree_cpu_s(root: psutil.Process) -> dict[int, float]:
    """CPU seconds (user + system) of the server and every process under it, by pid."""
    procs = [root, *root.children(recursive=True)]
    times: dict[int, float] = {}
    for proc in procs:
        try:
            cpu = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        times[proc.pid] = cpu.user + cpu.system
    return times


def wrk(url: str, lua: Path, duration: float, server_pid: int) -> tuple[float, float, float]:
    """wrk's requests per second at 16 connections, after a 5 s warm-up it does not count; and the
    server's CPU ms per request during the counted run: its front process, and its workers."""
    base = ["wrk", "-t1", "-c16", "-s", str(lua), "--latency"]
    subprocess.run([*base, "-d5s", url], capture_output=True, timeout=60, check=False)
    root = psutil.Process(server_pid)
    before = tree_cpu_s(root)
    out = subprocess.run([*base, f"-d{int(duration)}s", url], capture_output=True, text=True,
                         timeout=duration + 60, check=False)  # fmt: skip
    after = tree_cpu_s(root)
    found = REQUESTS.search(out.stdout)
    if found is None:
        raise SystemExit(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    rate = float(found.group(1))
    requests = rate * duration
    front = 1000 * (after.get(server_pid, 0.0) - before.get(server_pid, 0.0)) / requests
    workers = sum(after[pid] - before.get(pid, 0.0) for pid in after if pid != server_pid)
    return rate, front, 1000 * workers / requests


def preprocessing_ms(url: str, body: bytes, count: int = 40) -> float:
    """Decode + preprocess per request, from the server's Server-Timing, on sequential requests."""
    totals: list[float] = []
    for _ in range(count):
        request = Request(url, data=body, headers={"Content-Type": "image/jpeg"})
        with urlopen(request, timeout=30) as reply:
            phases = dict(parse_server_timing(reply.headers.get("Server-Timing", "")))
        totals.append(phases.get("decode", 0.0) + phases.get("preprocess", 0.0))
    return statistics.median(totals)


def served_candidate(study_dir: Path, trial_id: str) -> tuple[ModelSpec, TrialRecord]:
    study = load_study(study_dir)
    trial = next(t for t in study.trials if t.trial_id == trial_id)
    return study_model_spec(study_config(study)), trial


def with_decoder(trial: TrialRecord, decoder: str) -> Candidate:
    """The trial's candidate with `decoder` (RuntimeKnobs.decoder) in place of its own."""
    runtime = trial.candidate.runtime.model_copy(update={"decoder": decoder})
    return trial.candidate.model_copy(update={"runtime": runtime})


Served = dict[str, list[tuple[float, float, float, float]]]


def measure_rounds(
    args: argparse.Namespace, xml: Path, spec: ModelSpec, trial: TrialRecord, scratch: Path
) -> tuple[Served, dict[int, list[tuple[float, float]]]]:
    """Alternating rounds: the served candidate under wrk with each decoder (rate, front and worker
    CPU ms per request, preprocessing ms), then benchmark_app at each batch with the cores to itself."""
    lua = scratch / "post.lua"
    lua.write_text(LUA.format(path=default_payload_path()))
    body = default_payload_path().read_bytes()
    served: Served = {d: [] for d in args.decoders.split(",")}
    native: dict[int, list[tuple[float, float]]] = {int(b): [] for b in args.batches.split(",")}
    for round_ in range(args.rounds):
        for decoder, runs in served.items():
            candidate = with_decoder(trial, decoder)
            server = start_server(spec, candidate, scratch / "server.log", cache_dir=None, timeout_s=900)
            try:
                figures = wrk(server.invocations_url, lua, args.duration, server.proc.pid)
                runs.append((*figures, preprocessing_ms(server.invocations_url, body)))
            finally:
                stop_server(server)  # benchmark_app gets the cores to itself, as wrk's server did
        for batch, runs in native.items():
            runs.append(benchmark_app(xml, batch, args.duration))
        print(f"round {round_ + 1}: served " + ", ".join(f"{d} {v[-1][0]:.1f}" for d, v in served.items())
              + " req/s; benchmark_app " + ", ".join(f"b{b} {v[-1][0]:.1f}" for b, v in native.items()),
              flush=True)  # fmt: skip
    return served, native


def print_summary(trial_id: str, served: Served, native: dict[int, list[tuple[float, float]]]) -> None:
    """The ratio per decoder, then where the served CPU goes and the ratio's ceiling on this machine."""
    best_batch = max(native, key=lambda b: statistics.median(r[0] for r in native[b]))
    best = statistics.median(r[0] for r in native[best_batch])
    native_cpu = statistics.median(r[1] for r in native[best_batch])
    print(f"{trial_id}: benchmark_app -hint throughput best {best:.1f} FPS at batch {best_batch}, "
          f"{native_cpu:.2f} ms CPU per image")  # fmt: skip
    for decoder, runs in served.items():
        rate, front, workers, prep = (statistics.median(f[i] for f in runs) for i in range(4))
        print(f"decoder {decoder}: served (wrk, 16 connections, JPEG decode included) {rate:.1f} req/s, "
              f"ratio {rate / best:.3f}; CPU per request {front + workers:.2f} ms (front {front:.2f}, "
              f"workers {workers:.2f}; decode + preprocess {prep:.2f} by Server-Timing); CPU ratio "
              f"{native_cpu / (front + workers):.3f}; ceiling with nothing but the network and the "
              f"preprocessing: {native_cpu / (native_cpu + prep):.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("study", type=Path)
    parser.add_argument("--candidate", default=None)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--decoders", default="pillow", help="served with each, in turns: pillow,torchvision")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="benchmark-app-ratio-"))
    xml, trial_id = exported_ir(args.study, args.candidate, scratch)
    spec, trial = served_candidate(args.study, trial_id)
    served, native = measure_rounds(args, xml, spec, trial, scratch)
    print_summary(trial_id, served, native)


if __name__ == "__main__":
    main()
