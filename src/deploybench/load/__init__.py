"""Load generator: closed- and open-loop load against HTTP, KServe v2, SageMaker runtime or in-process.

Public API (see each module): targets (HttpTarget, KServeV2Target, SageMakerTarget, InProcessTarget),
run_load, run_points, repeat_point, sweep_concurrency, sweep_rate, measure_point, LoadReport, LiveStats,
the statistics helpers (merge_histograms, stats_from_histogram, stability, MLPerf LoadGen's early
stopping and its percentile estimate) and this machine's between-run noise record (noise).

What a search or a study reads per point (LoadPoint, deploybench.results): throughput_rps and its
throughput_ci, latency.p99_ms and its p99_ci, slo (the verdict: met / missed / undecided), and
trusted / flags (why not, each with its number).
"""

from deploybench.load.early_stopping import (
    early_stopping_estimate_ms,
    early_stopping_passes,
    required_requests,
    slo_verdict,
)
from deploybench.load.load_report import ClientEnvironment, LiveStats, LoadReport, PointDetail, WindowSummary
from deploybench.load.runner import PointResult, measure_point
from deploybench.load.stats import (
    decode_histogram,
    encode_histogram,
    is_stable,
    merge_histograms,
    stability,
    stats_from_histogram,
)
from deploybench.load.sweeps import (
    peak_index,
    repeat_point,
    run_load,
    run_points,
    sweep_concurrency,
    sweep_rate,
)
from deploybench.load.targets import (
    HttpTarget,
    InProcessTarget,
    KServeV2Target,
    LoadError,
    SageMakerTarget,
    Target,
    TargetUnreachable,
)

__all__ = [
    "ClientEnvironment",
    "HttpTarget",
    "InProcessTarget",
    "KServeV2Target",
    "LiveStats",
    "LoadError",
    "LoadReport",
    "PointDetail",
    "PointResult",
    "SageMakerTarget",
    "Target",
    "TargetUnreachable",
    "WindowSummary",
    "decode_histogram",
    "early_stopping_estimate_ms",
    "early_stopping_passes",
    "encode_histogram",
    "is_stable",
    "measure_point",
    "merge_histograms",
    "peak_index",
    "repeat_point",
    "required_requests",
    "run_load",
    "run_points",
    "slo_verdict",
    "stability",
    "stats_from_histogram",
    "sweep_concurrency",
    "sweep_rate",
]
