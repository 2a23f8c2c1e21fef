"""Served req/s with the Pillow decoder against torchvision's, side by side in one run (not a test).

Both `deploybench serve` servers (the same candidate but for RuntimeKnobs.decoder) are started exactly
as a study starts them and stay up; wrk (1 thread, --concurrency connections, cat.jpg) then measures
them in alternating rounds, pillow-first and torchvision-first in turn, so drift from other users
of the machine falls on both alike. Each round prints req/s, the server's CPU ms per answered request
(front and workers, psutil) and the others' share of the machine; the end prints the medians and the
median of the per-round ratios. Run under the CPU lock:

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/decoder_ab.py \\
        --backend openvino-int8 --config 2x1+b4+d2 --rounds 4 --duration 10
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path

from serve_overhead import WRK_SCRIPT, Served, parse_config, wrk  # bench/ is on sys.path here

from deploybench.config import ModelSpec
from deploybench.inputs.payload import default_payload_path
from deploybench.stacks.process import ServerProcess, stop_server
from deploybench.stacks.process import start_server as launch_server

DECODERS = ("pillow", "torchvision")


def start(args: argparse.Namespace, decoder: str) -> ServerProcess:
    base = parse_config(args.config)
    runtime = base.runtime.model_copy(update={"decoder": decoder})
    candidate = base.model_copy(update={"backend": args.backend, "runtime": runtime})
    log = Path(tempfile.mkstemp(prefix=f"decoder-{decoder}-", suffix=".log")[1])
    print(f"{decoder}: {candidate.key} (log {log})", flush=True)
    return launch_server(
        ModelSpec(source=args.model), candidate, log, cache_dir=args.cache_dir, timeout_s=900
    )


def show(decoder: str, point: Served) -> None:
    print(
        f"  {decoder:12s} {point.rps:7.1f} req/s | CPU ms/req front {point.front_ms:5.2f} workers "
        f"{point.workers_ms:5.2f} | others {point.others_pct:4.1f}% | errors {point.errors}",
        flush=True,
    )


def rounds(
    args: argparse.Namespace, servers: dict[str, ServerProcess], script: Path
) -> dict[str, list[Served]]:
    found: dict[str, list[Served]] = {name: [] for name in servers}
    for number in range(args.rounds):
        order = DECODERS if number % 2 == 0 else DECODERS[::-1]
        print(f"round {number + 1}: {' then '.join(order)}", flush=True)
        for decoder in order:
            point = wrk(servers[decoder], default_payload_path(), args.concurrency, args.duration, script)
            show(decoder, point)
            found[decoder].append(point)
    return found


def summary(found: dict[str, list[Served]]) -> None:
    pillow, ours = found["pillow"], found["torchvision"]
    ratios = [b.rps / a.rps for a, b in zip(pillow, ours, strict=True) if a.rps > 0]
    print("\nmedians over the rounds (wrk):")
    for decoder, points in found.items():
        rps = statistics.median(p.rps for p in points)
        cpu = statistics.median(p.front_ms + p.workers_ms for p in points)
        print(f"  {decoder:12s} {rps:7.1f} req/s, {cpu:5.2f} CPU ms per request")
    spread = ", ".join(f"{r:.3f}" for r in ratios)
    print(f"  torchvision / pillow req/s: median {statistics.median(ratios):.3f} (rounds: {spread})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision:resnet50")
    parser.add_argument("--backend", default="openvino-int8")
    parser.add_argument("--config", default="2x1+b4+d2", help="WxT[+knob...] as bench/serve_overhead.py")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--cache-dir", type=Path, default=None, help="None: deploybench's own cache")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally block: stop our servers
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(WRK_SCRIPT)
    servers: dict[str, ServerProcess] = {}
    try:
        for decoder in DECODERS:
            servers[decoder] = start(args, decoder)
        summary(rounds(args, servers, Path(lua.name)))
    finally:
        for server in servers.values():
            stop_server(server)


if __name__ == "__main__":
    main()
