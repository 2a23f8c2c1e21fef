"""Public entry points: one point, given points, one point repeated, and the concurrency and rate sweeps.

Concurrency sweep (Model Analyzer's rule): 1, 2, 4, ... until the best of the last 3 points is
< 5% better than the best before them (so 4 points show the plateau), or the SLO verdict says the
p99 is above the bound. Rate sweep: double the rate while the SLO verdict is "met", then bisect
(at most 5 steps, or until the bracket is within 10%); then, with rate_confirmations, the rate found
is run that many times more, each with its own arrival seed, and stands only if every run met the
bound: one run near the limit is a coin toss on a shared host. A failed confirmation makes that
rate the bracket's top and moves CONFIRM_STEP_DOWN below it (to a rate there that met, if one is
within 10%), confirmed the same way, at most MAX_CONFIRMED_RATES rates.
SLO claims come only from the verdict (MLPerf LoadGen's early-stopping test), never from the raw
p99 of a few requests; each rate point runs long enough for one (459 requests at p99/99%). A point
whose load worker died is never a peak, a verdict or a plateau step.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from deploybench.config import LoadConfig
from deploybench.load.early_stopping import required_requests
from deploybench.load.load_report import LoadReport, client_environment
from deploybench.load.runner import PointResult, ProgressFn, measure_point
from deploybench.load.targets import LoadError, Target
from deploybench.results import LoadPoint

MIN_GAIN = 0.05
PLATEAU_POINTS = 4
MAX_SWEEP_CONCURRENCY = 256
MAX_ERROR_FRACTION = 0.5
MAX_DOUBLINGS = 12
MAX_BISECT_STEPS = 5
DEFAULT_START_RATE = 10.0
RATE_PRECISION = 1.10  # stop bisecting when the bracket's high / low is within this
CONFIRM_STEP_DOWN = 0.85  # no met rate below a failed confirmation: try this share of it
MAX_CONFIRMED_RATES = 4
VERDICT_MARGIN = 1.3  # a rate point lasts 1.3x the time its verdict's requests take to arrive
MAX_VERDICT_POINT_S = 120.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Session:
    """Collects the points of one run into a LoadReport."""

    def __init__(
        self,
        target: Target,
        cfg: LoadConfig,
        on_progress: ProgressFn | None,
        stop_event: threading.Event | None,
    ) -> None:
        target.preflight()
        self.target, self.cfg, self.on_progress, self.stop_event = target, cfg, on_progress, stop_event
        self.results: list[PointResult] = []
        self.started_at = _now()
        self.notes: list[str] = []

    @property
    def stopped(self) -> bool:
        return any(r.interrupted for r in self.results) or bool(self.stop_event and self.stop_event.is_set())

    def measure(self, *, concurrency: int | None = None, rate: float | None = None) -> LoadPoint:
        result = measure_point(
            self.target,
            self.cfg,
            concurrency=concurrency,
            rate=rate,
            on_progress=self.on_progress,
            stop_event=self.stop_event,
        )
        self.results.append(result)
        self.notes.extend(result.notes)
        return result.point

    def report(self, order_by_concurrency: bool = False) -> LoadReport:
        results = (
            sorted(self.results, key=lambda r: r.point.concurrency or 0)
            if order_by_concurrency
            else self.results
        )
        points = [r.point for r in results]
        report = LoadReport(
            settings=self.cfg,
            target=self.target.describe(),
            environment=client_environment(),
            points=points,
            details=[r.detail for r in results],
            peak_index=peak_index(points),
            stopped_early=self.stopped,
            notes=self.notes,
            started_at=self.started_at,
            finished_at=_now(),
        )
        if points and report.peak_index is None:
            report.notes.append(f"no trusted point: no peak is claimed ({untrusted_summary(points)})")
        return report


def peak_index(points: list[LoadPoint]) -> int | None:
    """Best throughput among trusted points: valid, stable, the client kept up."""
    eligible = [i for i, p in enumerate(points) if p.trusted]
    return max(eligible, key=lambda i: points[i].throughput_rps) if eligible else None


def untrusted_summary(points: list[LoadPoint]) -> str:
    """'2 unstable, 1 client-bound' over the points' flags."""
    kinds: dict[str, int] = {}
    for point in points:
        for kind in {flag.split(":")[0] for flag in point.flags}:
            kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none flagged"


def _error_fraction(point: LoadPoint) -> float:
    total = point.ok + point.error_count
    return point.error_count / total if total else 1.0


def plateau_reached(throughputs: list[float], min_gain: float = MIN_GAIN) -> bool:
    """True when the last 3 points beat the best before them by less than min_gain."""
    if len(throughputs) < PLATEAU_POINTS:
        return False
    before = max(throughputs[: -(PLATEAU_POINTS - 1)])
    return max(throughputs[-(PLATEAU_POINTS - 1) :]) < (1 + min_gain) * before


def _sweep_stop_reason(points: list[LoadPoint], cfg: LoadConfig) -> str | None:
    valid = [p for p in points if p.invalid_reason is None]
    if not valid or valid[-1] is not points[-1]:
        return None  # the last point broke: no evidence either way
    last = valid[-1]
    if last.slo is not None and last.slo.status == "missed":
        return (
            f"SLO verdict: p99 above {last.slo.bound_ms:g} ms ({last.slo.overshoots} of "
            f"{last.slo.requests} requests over it)"
        )
    if _error_fraction(last) > MAX_ERROR_FRACTION:
        return f"{_error_fraction(last):.0%} of requests failed"
    if plateau_reached([p.throughput_rps for p in valid]):
        return f"throughput plateau (< {MIN_GAIN:.0%} gain over {PLATEAU_POINTS} points)"
    return None


def sweep_concurrency(
    target: Target,
    cfg: LoadConfig,
    levels: list[int] | None = None,
    *,
    extra_levels: tuple[int, ...] | list[int] = (),
    max_concurrency: int | None = None,
    on_progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
) -> LoadReport:
    """Closed-loop points at 1, 2, 4, ... (or exactly `levels`), plus `extra_levels` (e.g. 16)."""
    session = _Session(target, cfg, on_progress, stop_event)
    cap = max_concurrency or cfg.concurrency or MAX_SWEEP_CONCURRENCY
    planned = list(levels) if levels else None
    level = 1
    while not session.stopped:
        current = planned.pop(0) if planned is not None else level
        session.measure(concurrency=current)
        if planned is not None:
            if not planned:
                break
            continue
        reason = _sweep_stop_reason([r.point for r in session.results], cfg)
        if reason or level * 2 > cap:
            session.notes.append(f"sweep stopped: {reason or f'reached the cap of {cap}'}")
            break
        level *= 2
    done = {r.point.concurrency for r in session.results}
    for extra in extra_levels:
        if extra not in done and not session.stopped:
            session.measure(concurrency=extra)
    return session.report(order_by_concurrency=True)


def run_points(
    target: Target,
    cfg: LoadConfig,
    *,
    concurrencies: list[int] | None = None,
    rates: list[float] | None = None,
    on_progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
) -> LoadReport:
    """Exactly these closed-loop concurrencies, then these open-loop rates; no search."""
    session = _Session(target, cfg, on_progress, stop_event)
    for concurrency in concurrencies or []:
        if not session.stopped:
            session.measure(concurrency=concurrency)
    for rate in rates or []:
        if not session.stopped:
            session.measure(rate=rate)
    return session.report()


def repeat_point(
    target: Target,
    cfg: LoadConfig,
    repeats: int,
    *,
    on_progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
) -> LoadReport:
    """The one point cfg asks for, `repeats` times back to back, each with its own warm-up: the
    spread of their estimates is this machine's between-run noise (deploybench.load.noise)."""
    if cfg.sweep != "none":
        raise LoadError("--repeat measures one point again and again: drop --sweep")
    if cfg.concurrency is not None and cfg.rate is not None:
        raise LoadError("give --concurrency (closed loop) or --rate (open loop), not both")
    if cfg.rate is not None:
        rates = [cfg.rate] * repeats
        return run_points(target, cfg, rates=rates, on_progress=on_progress, stop_event=stop_event)
    levels = [cfg.concurrency or 1] * repeats
    return run_points(target, cfg, concurrencies=levels, on_progress=on_progress, stop_event=stop_event)


def _meets_slo(point: LoadPoint) -> bool:
    """The early-stopping verdict says the p99 bound holds (a valid point only).

    A client-bound open-loop point still counts: its latency runs from the schedule, so a late
    client only adds to it and the verdict errs on the safe side (the flag stays on the point).
    """
    return point.invalid_reason is None and point.slo is not None and point.slo.status == "met"


def verdict_config(cfg: LoadConfig, rate: float) -> LoadConfig:
    """The point's time bound, stretched so the requests a verdict needs can arrive at this rate."""
    needed = cfg.warmup_s + VERDICT_MARGIN * required_requests(0) / rate
    duration = min(max(cfg.duration_s, needed), MAX_VERDICT_POINT_S)
    return cfg.model_copy(update={"duration_s": duration})


def _bracket_narrow(low: float, high: float) -> bool:
    return low > 0 and high / low <= RATE_PRECISION


def sweep_rate(
    target: Target,
    cfg: LoadConfig,
    *,
    start_rate: float | None = None,
    on_progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
) -> LoadReport:
    """Highest open-loop rate whose p99 verdict meets cfg.slo_p99_ms: double until it fails, then bisect."""
    if cfg.slo_p99_ms is None:
        raise LoadError("--sweep rate needs --slo-p99-ms (the p99 bound the rate must meet)")
    session = _Session(target, cfg, on_progress, stop_event)
    best: tuple[float, int] | None = None  # (rate, result index)
    low, high, rate = 0.0, None, start_rate or cfg.rate or DEFAULT_START_RATE

    def meets(at: float) -> bool:
        session.cfg = verdict_config(cfg, at)
        return _meets_slo(session.measure(rate=at))

    for _ in range(MAX_DOUBLINGS):
        if session.stopped:
            break
        if meets(rate):
            best, low, rate = (rate, len(session.results) - 1), rate, rate * 2
        else:
            high = rate
            break
    for _ in range(MAX_BISECT_STEPS if high is not None else 0):
        rate = (low + high) / 2 if low > 0 else high / 2
        if session.stopped or rate < 0.1 or _bracket_narrow(low, high):
            break
        if meets(rate):
            best, low = (rate, len(session.results) - 1), rate
        else:
            high = rate
    return _rate_report(session, cfg, best)


def _rate_report(session: _Session, cfg: LoadConfig, best: tuple[float, int] | None) -> LoadReport:
    """The sweep's report, after the found rate's confirmations (module rules)."""
    if best is not None and cfg.rate_confirmations:
        best = _confirmed(session, cfg, best[0])
    session.cfg = cfg
    report = session.report()
    report.slo_rate_index = best[1] if best else None
    if best is None:
        report.notes.append(f"no tested rate met p99 <= {cfg.slo_p99_ms:g} ms by its verdict")
    elif cfg.rate_confirmations:
        report.notes.append(_held_note(session, best[0]))
    return report


def _runs_at(session: _Session, rate: float) -> list[tuple[int, LoadPoint]]:
    return [(i, r.point) for i, r in enumerate(session.results) if r.point.target_rate == rate]


def _rate_holds(session: _Session, cfg: LoadConfig, rate: float) -> bool:
    """Run `rate` until 1 + rate_confirmations runs met the bound (earlier runs count) or one did not."""
    runs = _runs_at(session, rate)
    if not all(_meets_slo(p) for _, p in runs):
        return False
    for extra in range(len(runs), 1 + cfg.rate_confirmations):
        if session.stopped:
            return False
        session.cfg = verdict_config(cfg, rate).model_copy(update={"seed": cfg.seed + 1000 * extra})
        if not _meets_slo(session.measure(rate=rate)):
            return False
    return True


def _next_lower(session: _Session, failed: float) -> float:
    """At least CONFIRM_STEP_DOWN below `failed` (a machine that slowed once may stay slow): that
    share of `failed` itself, or the highest rate there that every run met when it lies within
    RATE_PRECISION of it (no new rate is worth runs for a gain the search would not resolve)."""
    ceiling = failed * CONFIRM_STEP_DOWN
    rates = {r.point.target_rate for r in session.results if r.point.target_rate}
    held = [r for r in rates if r <= ceiling and all(_meets_slo(p) for _, p in _runs_at(session, r))]
    best_held = max(held, default=0.0)
    return best_held if _bracket_narrow(best_held, ceiling) else ceiling


def _confirmed(session: _Session, cfg: LoadConfig, rate: float) -> tuple[float, int] | None:
    """The highest rate that held on every run (module rules), with its first run's index; None if none."""
    for _ in range(MAX_CONFIRMED_RATES):
        if session.stopped or rate < 0.1:
            return None
        if _rate_holds(session, cfg, rate):
            return rate, _runs_at(session, rate)[0][0]
        rate = _next_lower(session, rate)
    return None


def _held_note(session: _Session, rate: float) -> str:
    p99s = [p.latency.p99_ms for _, p in _runs_at(session, rate)]
    return (
        f"{rate:.1f} req/s met the p99 verdict in {len(p99s)} of {len(p99s)} runs "
        f"(p99 {min(p99s):.1f}-{max(p99s):.1f} ms)"
    )


def run_load(
    target: Target,
    cfg: LoadConfig,
    on_progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
) -> LoadReport:
    """Run what cfg asks for: one point (sweep none), a concurrency sweep or a rate sweep."""
    if cfg.concurrency is not None and cfg.rate is not None and cfg.sweep != "concurrency":
        raise LoadError("give --concurrency (closed loop) or --rate (open loop), not both")
    if cfg.sweep == "concurrency":
        if cfg.rate is not None:
            raise LoadError("--sweep concurrency is closed loop: drop --rate")
        return sweep_concurrency(target, cfg, on_progress=on_progress, stop_event=stop_event)
    if cfg.sweep == "rate":
        return sweep_rate(target, cfg, on_progress=on_progress, stop_event=stop_event)
    if cfg.rate is not None:
        return run_points(target, cfg, rates=[cfg.rate], on_progress=on_progress, stop_event=stop_event)
    return run_points(
        target, cfg, concurrencies=[cfg.concurrency or 1], on_progress=on_progress, stop_event=stop_event
    )
