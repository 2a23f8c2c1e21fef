"""Candidates = verified backends x server knobs, pruned to what is worth serving on this machine.

Pruning rules (each pruned candidate is recorded with its reason, never silently dropped):
- a backend that is unavailable here, failed to build, or failed the parity gate is not served;
- eager (the baseline) is always served; besides it, the `serve_top` fastest verified backends in-process,
  each at least `serve_within` as fast as the fastest of its own precision (batching and layouts move
  served throughput too little against in-process for a much slower backend to come within 5% of it
  served; a cheaper precision's speed never cuts a full-precision backend, since passing the parity
  gate does not show it keeps the accuracy), judged on an optimistic bound: its best batch size at the
  upper end of its timing interval against the fastest's best batch size, so neither a timing's noise
  nor a batch size that pays only in batches cuts a backend;
  eager's own knob grid is swept only when it is itself among those fastest (else it is the comparison);
- the knob grid is swept on every served backend (or only the `tune_top` fastest, when set); no serving
  knob is pruned on an in-process timing (a batch size no faster in-process can still pay when served):
  in-process speed only orders the candidates, the search (study/search.py) decides;
- workers x threads never exceeds the usable cores unless `oversubscribe` is set;
- runtime knobs (streams, overlap, placement, spinning, ...) only those the backend honours, and
  never more streams than threads per worker (deploybench's own server; other stacks get defaults);
- every other serving stack gets the fastest verified backend it can run, at its default knobs first,
  then over the study's knob grid as far as the stack can express it (Stack.knobs; never runtime
  knobs), so every stack is searched over the same grid; deploybench's server is planned at each of
  those knob settings too, so every stack is compared like for like.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from deploybench.backends.base import SERVER_KNOBS
from deploybench.results import DEFAULT_STACK, Candidate
from deploybench.stacks import get_stack
from deploybench.study.space import MachineShape, study_grid
from deploybench.study.spec import KnobGrid, StudyConfig

BASELINE = "eager"


@dataclass(frozen=True)
class VariantSummary:
    """What the plan needs to know of one backend's in-process evaluation."""

    backend: str
    state: Literal["passed", "rejected", "unavailable", "error"]
    reason: str | None = None
    precision: str | None = None
    device: str = "cpu"
    images_per_s: dict[int, float] = field(default_factory=dict)  # batch size -> in-process images/s
    knobs: frozenset[str] = SERVER_KNOBS  # RuntimeKnobs fields this backend honours
    images_per_s_high: dict[int, float] = field(default_factory=dict)  # the upper end of each's interval

    @property
    def speed(self) -> float:
        return self.images_per_s.get(1) or max(self.images_per_s.values(), default=0.0)

    @property
    def best(self) -> tuple[int, float]:
        """(batch size, images/s) of its fastest batch size in-process, by the point estimates."""
        return max(self.images_per_s.items(), key=lambda item: (item[1], -item[0]), default=(1, 0.0))

    @property
    def optimistic(self) -> tuple[int, float]:
        """(batch size, images/s) of the most it may do in-process: its best batch size at the upper
        end of the timing interval (the point estimate where no interval was recorded)."""
        highs = {b: max(v, self.images_per_s_high.get(b, v)) for b, v in self.images_per_s.items()}
        return max(highs.items(), key=lambda item: (item[1], -item[0]), default=(1, 0.0))


@dataclass(frozen=True)
class PlannedTrial:
    candidate: Candidate
    action: Literal["serve", "rejected", "skipped", "failed"]
    reason: str | None = None
    precision: str | None = None


@dataclass(frozen=True)
class StackOffer:
    """What the plan needs to know of one serving stack on this machine (resolved by the runner)."""

    name: str
    unavailable: str | None = None  # "unavailable: <why> (install with ...)"
    backends: frozenset[str] | None = None  # None: any backend

    def serves(self, backend: str) -> bool:
        return self.backends is None or backend in self.backends


def default_candidate(summary: VariantSummary, cores: int) -> Candidate:
    return Candidate(backend=summary.backend, device=summary.device, workers=1, threads=cores)


def knob_candidates(
    summary: VariantSummary, grid: KnobGrid, cores: int, *, oversubscribe: bool
) -> list[Candidate]:
    """Every combination of the grid that fits the machine; only served measurements prune them."""
    runtimes = grid.runtime_options(summary.knobs)
    found: list[Candidate] = []
    for workers, batch in itertools.product(grid.workers, grid.max_batch_size):
        threads_options = grid.threads or [max(1, cores // workers)]
        delays = grid.max_delay_ms if batch > 1 else [0.0]
        for threads, delay, runtime in itertools.product(threads_options, delays, runtimes):
            if (workers * threads > cores and not oversubscribe) or runtime.streams > threads:
                continue
            found.append(
                Candidate(
                    backend=summary.backend,
                    device=summary.device,
                    workers=workers,
                    threads=threads,
                    max_batch_size=batch,
                    max_delay_ms=delay,
                    runtime=runtime,
                )
            )
    return found


def _not_served(summary: VariantSummary, cores: int) -> PlannedTrial:
    action = {"rejected": "rejected", "unavailable": "skipped", "error": "failed"}[summary.state]
    return PlannedTrial(default_candidate(summary, cores), action, summary.reason, summary.precision)  # type: ignore[arg-type]


def _fastest_peer(summary: VariantSummary, passed: list[VariantSummary]) -> VariantSummary:
    """What `summary`'s speed is compared with: the fastest verified backend of its own precision. A
    cheaper precision's speed never cuts a full-precision backend: the parity gate alone does not
    show the cheaper one keeps the accuracy, so the best of each precision is served."""
    peers = [s for s in passed if s.precision == summary.precision]
    return max(peers, key=lambda s: (s.best[1], s.backend))


def serve_pruned_reason(
    summary: VariantSummary, passed: list[VariantSummary], config: StudyConfig
) -> str | None:
    """Why a verified backend is not served (None: it is): not among serve_top, or below serve_within."""
    ranked = sorted((s for s in passed if s.backend != BASELINE), key=lambda s: (-s.speed, s.backend))
    if summary.backend == BASELINE:
        return None
    if config.serve_top is not None and summary not in ranked[: config.serve_top]:
        return f"pruned: {summary.speed:.1f} images/s in-process, not among the {config.serve_top} fastest"
    return _below_within(summary, _fastest_peer(summary, passed), config.serve_within)


def _below_within(summary: VariantSummary, peer: VariantSummary, within: float | None) -> str | None:
    """Cut only when even the optimistic bound (its best batch size, at the upper end of its timing
    interval) stays below `within` of the peer's best batch size: in-process timings order the work,
    and a timing's own noise must never be what keeps a backend from being served."""
    batch, high = summary.optimistic
    peer_batch, peer_best = peer.best
    if within is None or not peer_best or high >= within * peer_best:
        return None
    return (
        f"pruned: at most {high:.1f} images/s in-process (batch {batch}, the upper end of its timing "
        f"interval), {high / peer_best:.0%} of {peer.backend}'s {peer_best:.1f} (batch {peer_batch}); "
        f"served only within {within:.0%} of the fastest"
    )


def _served_backends(passed: list[VariantSummary], config: StudyConfig) -> list[VariantSummary]:
    ranked = sorted(passed, key=lambda s: (s.backend != BASELINE, -s.speed, s.backend))
    return [s for s in ranked if serve_pruned_reason(s, passed, config) is None]


def _tuned_backends(
    passed: list[VariantSummary], served: list[VariantSummary], config: StudyConfig
) -> set[str]:
    """The served backends whose knob grid is swept (the tune_top fastest; default every one). The eager
    baseline is one of them only when it is itself among the serve_top fastest: otherwise it is the
    comparison, measured with its default knobs, and probing its grid costs minutes for nothing."""
    ranked = sorted(passed, key=lambda s: (-s.speed, s.backend))
    contenders = {s.backend for s in ranked[: config.serve_top]} if config.serve_top is not None else None
    candidates = [s for s in served if s.backend != BASELINE or contenders is None or BASELINE in contenders]
    return {s.backend for s in sorted(candidates, key=lambda s: -s.speed)[: config.tune_top]}


def stack_trials(
    passed: list[VariantSummary],
    offers: Sequence[StackOffer],
    cores: int,
    config: StudyConfig | None = None,
    shape: MachineShape | None = None,
) -> list[PlannedTrial]:
    """Per stack other than deploybench's: the fastest verified backend it runs, at its default knobs
    first, then (where the study sweeps knob grids) the grid it can express (stack_grid)."""
    fastest = sorted(passed, key=lambda s: (-s.speed, s.backend))
    trials = []
    for offer in offers:
        if offer.name == DEFAULT_STACK:
            continue
        pick = next((s for s in fastest if offer.serves(s.backend)), None)
        shown = pick or (fastest[0] if fastest else VariantSummary(BASELINE, "passed"))
        candidate = replace_stack(default_candidate(shown, cores), offer.name)
        if offer.unavailable:
            trials.append(PlannedTrial(candidate, "skipped", offer.unavailable, shown.precision))
        elif pick is None:
            runs = ", ".join(sorted(offer.backends or ())) or "nothing"
            reason = f"{offer.name} runs {runs}; none of them passed here"
            trials.append(PlannedTrial(candidate, "skipped", reason, shown.precision))
        else:
            trials += stack_grid(offer.name, pick, candidate, config, cores, shape)
    return trials


def stack_grid(
    name: str,
    pick: VariantSummary,
    default: Candidate,
    config: StudyConfig | None,
    cores: int,
    shape: MachineShape | None = None,
) -> list[PlannedTrial]:
    """A stack's default candidate, then the study's knob grid as far as the stack can express it
    (Stack.knobs; runtime knobs are deploybench's own, held at their defaults), so every stack is
    searched over the same grid. A combination it cannot express is not planned (it would be measured
    at other knobs than deploybench's twin); the first one is recorded, saying why and how many.
    No grid where the study sweeps none (tune_top 0)."""
    trials = [PlannedTrial(default, "serve", precision=pick.precision)]
    if config is None or config.tune_top == 0:
        return trials
    stack = get_stack(name)
    seen, unexpressed = {default.key}, []
    plain = replace(pick, knobs=frozenset())
    grid = study_grid(config, shape, pick.device)
    for found in knob_candidates(plain, grid, cores, oversubscribe=config.oversubscribe):
        candidate = replace_stack(found, name)
        if candidate.key in seen:
            continue
        seen.add(candidate.key)
        if why := stack.cannot_express(candidate, default):
            unexpressed.append((candidate, why))
        else:
            trials.append(PlannedTrial(candidate, "serve", precision=pick.precision))
    if unexpressed:
        first, why = unexpressed[0]
        reason = f"not planned: {why} ({len(unexpressed)} of the knob grid's combinations, this one first)"
        trials.append(PlannedTrial(first, "skipped", reason, pick.precision))
    return trials


def twin_trials(picks: list[PlannedTrial], planned: list[PlannedTrial]) -> list[PlannedTrial]:
    """deploybench's server at every knob setting another stack is served at, where not planned
    already: each stack's row in the comparison has deploybench's at the very same knobs to pair with."""
    seen = {t.candidate.key for t in planned}
    twins = []
    for trial in picks:
        twin = replace_stack(trial.candidate, DEFAULT_STACK)
        if trial.action == "serve" and twin.key not in seen:
            seen.add(twin.key)
            twins.append(PlannedTrial(twin, "serve", precision=trial.precision))
    return twins


def replace_stack(candidate: Candidate, stack: str) -> Candidate:
    return candidate.model_copy(update={"stack": stack})


def plan_trials(
    config: StudyConfig,
    summaries: list[VariantSummary],
    cores: int,
    stacks: Sequence[StackOffer] = (StackOffer(DEFAULT_STACK),),
    shape: MachineShape | None = None,
) -> list[PlannedTrial]:
    """The ordered list of trials: served candidates first (fastest backends first), then the rest.
    `shape`: the machine, whose space (study/space.py) is swept unless the study gives `knobs:`."""
    passed = [s for s in summaries if s.state == "passed"]
    served = _served_backends(passed, config)
    tuned = _tuned_backends(passed, served, config)
    picks = stack_trials(passed, stacks, cores, config, shape)
    # a backend only another stack was given is served by deploybench too: the comparison is like for like
    picked = {t.candidate.backend for t in picks if t.action == "serve"}
    served += [s for s in passed if s.backend in picked and s not in served]
    trials = _deploybench_trials(config, served, tuned, cores, shape)
    trials += twin_trials(picks, trials)
    if all(offer.name != DEFAULT_STACK for offer in stacks):
        trials = []  # the user chose other stacks only; the variants are still recorded below
    trials += picks
    served_names = {s.backend for s in served}
    for summary in passed:
        if summary.backend not in served_names:
            reason = serve_pruned_reason(summary, passed, config) or "pruned"
            trials.append(
                PlannedTrial(default_candidate(summary, cores), "skipped", reason, summary.precision)
            )
    trials += [_not_served(s, cores) for s in summaries if s.state != "passed"]
    return trials


def _deploybench_trials(
    config: StudyConfig,
    served: list[VariantSummary],
    tuned: set[str],
    cores: int,
    shape: MachineShape | None = None,
) -> list[PlannedTrial]:
    trials: list[PlannedTrial] = []
    seen: set[str] = set()
    for summary in served:
        candidates = [default_candidate(summary, cores)]
        if summary.backend in tuned:
            grid = study_grid(config, shape, summary.device)
            candidates += knob_candidates(summary, grid, cores, oversubscribe=config.oversubscribe)
        for candidate in candidates:
            if candidate.key not in seen:
                seen.add(candidate.key)
                trials.append(PlannedTrial(candidate, "serve", precision=summary.precision))
    return trials
