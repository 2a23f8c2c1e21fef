"""Builds real TrialRecords and study folders for the pricing, recommendation and report tests.

Load points are computed, not typed in: latencies are drawn for a closed loop (Little's law: mean
latency = concurrency / throughput), recorded into a real HdrHistogram, and the percentiles read
back from it, exactly as the load generator records them.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import yaml
from hdrh.histogram import HdrHistogram

from deploybench.results import (
    Candidate,
    Interval,
    LatencyStats,
    LoadPoint,
    MachineInfo,
    ParityReport,
    TrialRecord,
)

CONCURRENCIES = (1, 2, 4, 8, 16)
METHOD = "test factory: +-noise"
FACTORY_FLAG = "send lateness p99 9.0 ms > bound 1.0 ms"
C5_XLARGE = MachineInfo(label="ml.c5.xlarge", instance="ml.c5.xlarge", price_per_hour=0.204, cores=4)


def histogram_stats(latencies_ms: np.ndarray) -> tuple[LatencyStats, str]:
    """Record latencies (in microseconds) into an HdrHistogram; derive stats from it like the generator."""
    hist = HdrHistogram(1, 60_000_000, 3)
    values, counts = np.unique(np.maximum(1, np.round(latencies_ms * 1000)).astype(int), return_counts=True)
    for value, count in zip(values, counts, strict=True):
        hist.record_value(int(value), int(count))

    def ms(percentile: float) -> float:
        return hist.get_value_at_percentile(percentile) / 1000

    stats = LatencyStats(
        count=hist.get_total_count(),
        mean_ms=float(latencies_ms.mean()),  # hdrh's get_mean_value walks every bucket: slow in Python
        p50_ms=ms(50),
        p90_ms=ms(90),
        p95_ms=ms(95),
        p99_ms=ms(99),
        p999_ms=ms(99.9),
        max_ms=hist.get_max_value() / 1000,
    )
    return stats, hist.encode().decode("ascii")


def closed_point(
    concurrency: int,
    capacity_rps: float,
    service_ms: float,
    rng: np.random.Generator,
    *,
    duration_s: float = 30.0,
    stable: bool = True,
    client_bound: bool = False,
    errors: int = 0,
    noise: float = 0.01,
) -> LoadPoint:
    """A closed-loop point: throughput saturates at capacity, latency grows with the queue.

    Intervals: +-noise on throughput, +-2 x noise on p99 (what the generator's batch means give at
    these sizes); at least 500 requests, so a p99 verdict is reachable.
    """
    throughput = min(concurrency * 1000 / service_ms, capacity_rps * (1 - np.exp(-concurrency / 1.5)))
    mean_ms = concurrency / throughput * 1000
    count = max(500, int(throughput * duration_s))
    latencies = rng.lognormal(np.log(mean_ms) - 0.045, 0.3, size=min(count, 20_000))
    stats, encoded = histogram_stats(latencies)
    decode, preprocess = 0.2, 1.2
    infer = max(0.1, service_ms - decode - preprocess - 0.1)
    queue = max(0.0, mean_ms - service_ms - 0.3)
    return LoadPoint(
        mode="closed",
        concurrency=concurrency,
        duration_s=duration_s,
        ok=count,
        errors={"http_503": errors} if errors else {},
        throughput_rps=throughput,
        latency=stats,
        stable=stable,
        windows=3,
        client_bound=client_bound,
        flags=[f"client-bound: {FACTORY_FLAG}"] if client_bound else ([] if stable else ["unstable"]),
        throughput_ci=Interval(low=throughput * (1 - noise), high=throughput * (1 + noise), method=METHOD),
        p99_ci=Interval(
            low=stats.p99_ms * (1 - 2 * noise), high=stats.p99_ms * (1 + 2 * noise), method=METHOD
        ),
        server_timing_ms={
            "queue": queue,
            "decode": decode,
            "preprocess": preprocess,
            "infer": infer,
            "encode": 0.1,
        },
        histogram=encoded,
    )


def make_trial(
    backend: str,
    precision: str = "fp32",
    *,
    capacity_rps: float = 20.0,
    service_ms: float | None = None,
    workers: int = 1,
    threads: int = 2,
    max_batch_size: int = 1,
    machine: MachineInfo = C5_XLARGE,
    status: str = "ok",
    reason: str | None = None,
    weights: str = "pretrained",
    client_bound: bool = False,
    stable: bool = True,
    concurrencies: tuple[int, ...] = CONCURRENCIES,
    noise: float = 0.01,
) -> TrialRecord:
    """A realistic trial; `status='rejected'|'failed'` gives the record the study writes for those."""
    candidate = Candidate(
        backend=backend,
        workers=workers,
        threads=threads,
        max_batch_size=max_batch_size,
        max_delay_ms=2.0 if max_batch_size > 1 else 0.0,
    )
    trial_id = f"{candidate.key}:{precision}:{machine.label}"
    rng = np.random.default_rng(zlib.crc32(trial_id.encode()))
    service = service_ms if service_ms is not None else 1000 / capacity_rps
    points = []
    if status == "ok":
        points = [
            closed_point(c, capacity_rps, service, rng, stable=stable, client_bound=client_bound, noise=noise)
            for c in concurrencies
        ]
    verdict = {"ok": "passed", "rejected": "rejected", "failed": "passed"}[status]
    if backend == "eager" and precision == "fp32":
        verdict = "reference"
    parity = ParityReport(
        verdict=verdict,
        precision=precision,
        inputs=64,
        top1_agreement=1.0 if verdict != "rejected" else 0.61,
        top5_overlap=0.99,
        cosine_min=0.99995 if precision == "fp32" else 0.97,
        max_abs_err=1e-4,
        reason=reason if status == "rejected" else None,
    )
    peak = max(range(len(points)), key=lambda i: points[i].throughput_rps) if points else None
    return TrialRecord(
        trial_id=trial_id,
        model="torchvision:resnet50",
        weights=weights,
        candidate=candidate,
        status=status,
        reason=reason,
        precision=precision,
        parity=parity,
        points=points,
        peak_index=peak,
        c16_index=concurrencies.index(16) if points and 16 in concurrencies else None,
        peak_rss_mb=310.0 * workers,
        server_cpu_pct=180.0 if points else None,
        machine=machine,
        started_at="2026-11-28T16:00:00Z",
        finished_at="2026-11-28T16:01:00Z",
    )


def cpu_study_trials(machine: MachineInfo = C5_XLARGE, weights: str = "pretrained") -> list[TrialRecord]:
    """The shape of a default study on a 2-core CPU machine (figures from MEASUREMENTS.md)."""
    return [
        make_trial("eager", capacity_rps=16.5, machine=machine, weights=weights),
        make_trial("torchscript", capacity_rps=18.0, machine=machine, weights=weights),
        make_trial("onnxruntime", capacity_rps=25.5, machine=machine, weights=weights),
        make_trial("openvino", "bf16", capacity_rps=47.4, machine=machine, weights=weights),
        make_trial("onnxruntime-int8", "int8", capacity_rps=73.1, machine=machine, weights=weights),
        make_trial("openvino-int8", "int8", capacity_rps=90.9, machine=machine, weights=weights),
        make_trial(
            "openvino-int8",
            "int8",
            capacity_rps=95.0,
            workers=2,
            threads=1,
            max_batch_size=4,
            machine=machine,
            weights=weights,
        ),
        make_trial(
            "onnxruntime-int8-s8s8",
            "int8",
            status="rejected",
            machine=machine,
            weights=weights,
            reason="top-1 agreement 0.61 < 0.75",
        ),
        make_trial(
            "compile",
            status="failed",
            machine=machine,
            weights=weights,
            reason="server did not answer /ping within 60 s",
        ),
    ]


def write_study(root: Path, trials: list[TrialRecord], *, torn_tail: str = "") -> Path:
    """A study folder in the layout the study writes (study.yaml, trials.jsonl, environment, variants)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = "".join(t.model_dump_json() + "\n" for t in trials)
    (root / "trials.jsonl").write_text(lines + torn_tail, encoding="utf-8")
    config = {
        "model": {"source": "torchvision:resnet50", "weights": "pretrained"},
        "backends": sorted({t.candidate.backend for t in trials}),
        "constraints": {"p99_ms": None, "objective": "cost"},
    }
    (root / "study.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    environment = {
        "cpu": {"model": "Intel Xeon (test)", "cores": 2, "flags": ["avx512f", "avx512_vnni"]},
        "memory_gib": 24,
        "gpu": None,
        "versions": {"torch": "2.14.1", "onnxruntime": "1.32.0"},
        "threads": {"OMP_NUM_THREADS": "2"},
        "deploybench": "0.1.0",
        "weights": trials[0].weights if trials else "pretrained",
    }
    (root / "environment.json").write_text(json.dumps(environment), encoding="utf-8")
    variants = [
        {
            "backend": t.candidate.backend,
            "precision": t.precision,
            "build_seconds": 1.5,
            "artifact_bytes": 102_400_000,
        }
        for t in trials
    ]
    (root / "variants.json").write_text(json.dumps(variants), encoding="utf-8")
    return root
