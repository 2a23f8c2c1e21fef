"""The search over served measurements: successive halving, so the study serves the whole space.

Why successive halving (Jamieson & Talwalkar 2016; Hyperband's inner loop) rather than a model-based
search: the space is small and discrete (backend x workers x batch x runtime knobs, tens at most), the
knobs interact (batching pays on one backend and not another), and the measurements are noisy, so a
short measurement of *every* candidate is the cheapest way never to miss one; TPE would need more
trials than the space has to learn anything. In-process timings only order the candidates.

Rounds (each on the same load generator as the full plan, only with other windows):
1. probe: every candidate, closed loop at one concurrency where all of them peak (probe_concurrency),
   as paired runoffs in groups that fit in memory, sharing one reference (study/probe.py), where the
   executor can, else one after another; with a p99 bound each at its knee, ranked within the bound
   (study/rounds.py); a runoff lost to the infrastructure runs once more and drops no one;
2. the best 1/eta (at least min_round2), plus up to `probe_tied` whose probe interval overlaps the
   last one kept's, again at that concurrency with windows twice as long: as a paired runoff
   (study/runoff.py: all served at once, one window each per round, in turn) where the executor
   can, else one after another;
3. finalists: the best 1/eta of round 2 (at most `finalists`), plus up to `max_tied` that the data
   cannot tell from the best (the runoff's paired interval reaches 1, or the 95% throughput intervals
   overlap), get the full load plan; only they are ranked, and each carries its runoff sample, so the
   recommendation compares them side by side too (deploybench.recommend.ties).
Each stack's candidates run the rounds among themselves (stack_pools). Eager (the baseline), each other
stack at its default knobs and deploybench's own server at those knobs skip the rounds: always
finalists; every other-stack finalist brings deploybench at its knobs into the final (study/protect.py),
so every stack is compared like for like; the baseline is measured at the plan's fixed levels only
(final_groups), as the comparison.
Each round's records are trials (status "probe", trial id KEY#probe / KEY#round2), so a resumed study
re-probes nothing and takes the same decisions; each dropped candidate is recorded with why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import psutil

from deploybench.recommend.ties import geometric_mean
from deploybench.results import DEFAULT_STACK, TrialRecord
from deploybench.study.budget import budget_shares, budget_words, search_budget, within_budget
from deploybench.study.executors import Executor
from deploybench.study.outlook import outlook, outlook_words
from deploybench.study.probe import PROBE, group_size, probe_groups, probe_plan, probe_scores
from deploybench.study.protect import is_baseline, protected_jobs, twins_to_add
from deploybench.study.round_plans import (
    probe_concurrency,
    round_context,
    round_plan,
)
from deploybench.study.rounds import Score, decide, round_sizes, score_of
from deploybench.study.runoff import RunoffPlan
from deploybench.study.spec import LoadPlan
from deploybench.study.store import StudyStore
from deploybench.study.trial import TrialContext, TrialEvents, TrialJob, unserved_record

PROBE_STATUS = "probe"
SEARCH_FILE = "search.json"


def as_round_record(record: TrialRecord, label: str) -> TrialRecord:
    """A round's trial as stored: status probe (never ranked), its outcome in the reason."""
    if record.retryable:
        reason = f"{label}: {record.reason}"  # "lost to the infrastructure: ..." (study/loss.py)
    elif record.status == "failed":
        reason = f"failed: {label}: {record.reason}"
    elif record.runoff is not None:
        rounds = ", ".join(f"{rps:.1f}" for rps in record.runoff.rps)
        reason = f"search {label}: {geometric_mean(record.runoff.rps):.1f} req/s (runoff rounds: {rounds})"
    else:
        rps = max((p.throughput_rps for p in record.points), default=0.0)
        reason = f"search {label}: {rps:.1f} req/s"
    return record.model_copy(update={"status": PROBE_STATUS, "reason": reason})


def dropped_record(ctx: TrialContext, job: TrialJob, why: str, probe: TrialRecord | None) -> TrialRecord:
    """The candidate's own record when the search dropped it: skipped with why (failed if its round did)."""
    failed = probe is not None and round_failed(probe)
    trial = replace(job.trial, action="failed" if failed else "skipped", reason=why)
    record = unserved_record(ctx, replace(job, trial=trial))
    return record.model_copy(update={"log_tail": probe.log_tail}) if failed and probe else record


def summary_line(machine: str | None, counts: dict[str, Any]) -> str:
    where = f" on {machine}" if machine else ""
    return (
        f"search{where}: {counts['space']} candidates in the space, {counts['probed']} probed, "
        f"{counts['run_longer']} run longer, {counts['fully_measured']} fully measured "
        f"({counts['always']} always: the eager baseline, at the fixed levels, and other stacks' defaults); "
        f"{len(counts['dropped'])} dropped" + budget_words(counts)
    )


OnRecord = Callable[[TrialRecord], None]


ALWAYS = "always measured (the baseline, another stack's default knobs, or deploybench at them)"


def round_failed(record: TrialRecord) -> bool:
    return (record.reason or "").startswith("failed: ")


# Of the machine's total memory (not what is free at this moment, so a resumed study forms the same
# probe groups and re-probes nothing): a share for the probe's servers.
PROBE_MEMORY_SHARE = 0.75


@dataclass
class SearchRun:
    """The rounds of one study: where its trials run, where they are kept, what is already known."""

    runner: Executor
    ctx: TrialContext
    store: StudyStore
    events: TrialEvents
    on_record: OnRecord  # a candidate's own record: kept in the study folder and shown
    known: dict[str, TrialRecord] = field(default_factory=dict)

    def _todo(self, jobs: list[TrialJob], suffix: str) -> list[TrialJob]:
        """The round's jobs (trial id KEY+suffix) not already stored."""
        rounds = [replace(job, trial_id=job.trial_id + suffix) for job in jobs]
        return [job for job in rounds if self._needed(job.trial_id)]

    def _needed(self, round_id: str) -> bool:
        """Not stored yet, or stored as lost to the infrastructure (retryable)."""
        record = self.known.get(round_id)
        return record is None or record.retryable

    def _scores(self, jobs: list[TrialJob], suffix: str) -> list[Score]:
        """The round's scores in the jobs' order (those it measured)."""
        ids = [(job.trial_id, job.trial_id + suffix) for job in jobs]
        return [self._score(trial_id, round_id) for trial_id, round_id in ids if round_id in self.known]

    def run_round(self, jobs: list[TrialJob], suffix: str, plan: LoadPlan, label: str) -> list[Score]:
        """Measure each job's round (skipping those already stored); their scores in the jobs' order."""
        if todo := self._todo(jobs, suffix):
            measured = self.runner.run_trials(round_context(self.ctx, plan), todo, self.store, self.events)
            for record in measured:
                self._keep_round(record, label)
        return self._scores(jobs, suffix)

    def run_round2(
        self, jobs: list[TrialJob], level: int, plan: LoadPlan, references: list[TrialJob]
    ) -> list[Score]:
        """Round 2: a paired runoff where the executor serves several candidates at once; the
        `references` (the eager baseline) run in it too, never scored: the speed-up over them is
        then paired, window by window, like the contenders' comparison (deploybench.recommend.baseline)."""
        spec = self.ctx.config.search
        if not (spec.runoff_rounds and self.runner.runs_runoffs and len(jobs) > 1):
            longer = round_plan(plan, level, spec.round2_window_s, spec.round2_windows)
            return self.run_round(jobs, "#round2", longer, "round 2")
        runoff = RunoffPlan(
            level,
            spec.runoff_window_s,
            spec.runoff_warmup_s,
            spec.runoff_rounds,
            first_warmup_s=spec.runoff_first_warmup_s,
            warm_batches=True,
            at_knee=self.ctx.config.constraints.p99_ms is not None,
        )
        group = [replace(job, trial_id=job.trial_id + "#round2") for job in jobs + references]
        refs = len(references)
        also = " and the eager baseline (to compare with)" * bool(refs)
        self.events.on_stage(
            f"round 2: a paired runoff of {len(group) - refs} candidates{also} at concurrency "
            f"{level}{self._knee_words()}, served at once: {runoff.rounds} rounds of one "
            f"{runoff.window_s:g} s window each, in turn"
        )
        self.run_runoffs([(group, runoff)], "round 2")
        return self._scores(jobs, "#round2")

    def _knee_words(self) -> str:
        bound = self.ctx.config.constraints.p99_ms
        return f" (each at most at its knee, with the p99 bound of {bound:g} ms)" if bound else ""

    def run_runoffs(self, runoffs: list[tuple[list[TrialJob], RunoffPlan]], label: str) -> None:
        """Each runoff whose records are not all stored, run whole (a paired sample needs its group);
        one lost to the infrastructure is run once more, and lost twice its candidates go on unmeasured."""
        for attempt in range(2):
            for group, plan in runoffs:
                if not any(self._needed(job.trial_id) for job in group):
                    continue
                if attempt:
                    self.events.on_stage(f"  {label}: a runoff lost to the infrastructure, run once more")
                records = list(self.runner.run_runoff(self.ctx, group, plan, self.store, self.events))
                self._keep_rounds(records, label)  # the group at once: a kill cannot leave half of it

    def run_probe(self, jobs: list[TrialJob], level: int, plan: LoadPlan) -> list[Score]:
        """Round 1: paired runoffs in groups that fit in memory (study/probe.py) where the executor
        serves several candidates at once, else one probe after another."""
        spec, bound = self.ctx.config.search, self.ctx.config.constraints.p99_ms
        if not self.runner.runs_runoffs:
            probe = round_plan(plan, level, spec.probe_window_s, spec.probe_windows)
            return self.run_round(jobs, PROBE, probe, "probe")
        memory_mb = PROBE_MEMORY_SHARE * psutil.virtual_memory().total / 2**20
        groups = probe_groups(jobs, group_size(spec, jobs, memory_mb))
        runoffs = [(g, probe_plan(spec, level, i + 1, len(groups), bound)) for i, g in enumerate(groups)]
        self.events.on_stage(
            f"probe: {len(groups)} paired runoff(s) of at most {max(map(len, groups))} servers at once, "
            f"at concurrency {level}{self._knee_words()}: every batch size warmed, then "
            f"{spec.probe_windows} rounds of one {spec.probe_window_s:g} s window each, in turn"
        )
        self.run_runoffs(runoffs, "probe")
        return probe_scores(groups, self.known, bound)

    def _keep_round(self, record: TrialRecord, label: str) -> None:
        self._keep_rounds([record], label)

    def _keep_rounds(self, records: list[TrialRecord], label: str) -> None:
        stored = [as_round_record(record, label) for record in records]
        self.store.append_trials(stored)
        for record in stored:
            self.known[record.trial_id] = record
            self.events.on_stage(f"  {label:>8}  {record.trial_id}  {record.reason}")

    def with_runoff(self, record: TrialRecord) -> TrialRecord:
        """A finalist's record with its round-2 runoff sample, for the recommendation's comparison."""
        round2 = self.known.get(f"{record.trial_id}#round2")
        if record.status != "ok" or round2 is None or round2.runoff is None:
            return record
        return record.model_copy(update={"runoff": round2.runoff})

    def _score(self, trial_id: str, round_id: str) -> Score:
        record = self.known[round_id]
        if record.retryable:
            return Score(trial_id, None, failure=record.reason, lost=True)
        if round_failed(record):
            return Score(trial_id, None, failure=record.reason)
        return score_of(trial_id, record, self.ctx.config.constraints.p99_ms)

    def search(self, jobs: list[TrialJob]) -> tuple[list[TrialJob], dict[str, Any]]:
        """One machine's served jobs through the rounds: the finalists (plan order) and what was measured.
        Each stack's candidates are searched among themselves (stack_pools says why)."""
        spec = self.ctx.config.search
        always = protected_jobs(jobs)
        # fully measured before there was a search (no probe stored): decided, not searched again
        contenders = [
            job
            for job in jobs
            if job not in always
            and not (job.trial_id in self.known and f"{job.trial_id}#probe" not in self.known)
        ]
        counts: dict[str, Any] = {"space": len(jobs), "always": len(always), "dropped": {}, "finalists": {}}
        pools = stack_pools(contenders)
        budget = search_budget(spec, jobs, len(pools))
        references = len([job for job in always if is_baseline(job)])
        planned, shares = budget_shares(pools, spec, self.ctx.config.load, budget, references)
        counts.update(budget_s=budget, planned_s=planned, budget_shares=shares, unmeasured=0)
        if not spec.enabled or all(len(pool) <= spec.finalists for pool in pools.values()):
            many = f"{len(contenders)} contenders" if len(pools) < 2 else "each stack's contenders"
            why = "search off" if not spec.enabled else f"{many} <= {spec.finalists} finalists"
            counts.update(
                probed=0, run_longer=0, fully_measured=len(jobs), note=f"{why}: every one fully measured"
            )
            return jobs, counts
        return self._halve_each(jobs, always, pools, counts)

    def _halve_each(
        self, jobs: list[TrialJob], always: list[TrialJob], pools: dict[str, list[TrialJob]], counts: dict
    ) -> tuple[list[TrialJob], dict[str, Any]]:
        """Each stack's pool through the rounds; then deploybench's twin of every other stack's
        finalist back in the final where its own pool dropped it (study/protect.py says why)."""
        finalists = {job.trial_id: ALWAYS for job in always}
        dropped: dict[str, str] = {}
        counts.update(probed=0, run_longer=0)
        for stack, pool in pools.items():
            if len(pool) <= self.ctx.config.search.finalists:
                few = f"one of only {len(pool)} {stack} contenders"
                finalists.update({job.trial_id: few for job in pool})
                continue
            chosen, lost = self._halve(pool, always, stack, counts)
            finalists.update(chosen)
            dropped.update(lost)
        for trial_id, why in twins_to_add(jobs, finalists).items():
            if dropped.pop(trial_id, None) is not None:
                finalists[trial_id] = why
        by_id = {job.trial_id: job for pool in pools.values() for job in pool}
        for trial_id, why in dropped.items():
            if trial_id not in self.known:
                probe = self.known.get(f"{trial_id}#round2") or self.known.get(f"{trial_id}#probe")
                self.on_record(dropped_record(self.ctx, by_id[trial_id], why, probe))
        counts.update(fully_measured=len(finalists), dropped=dropped, finalists=finalists)
        return [job for job in jobs if job.trial_id in finalists], counts

    def _halve(
        self, contenders: list[TrialJob], always: list[TrialJob], stack: str, counts: dict[str, Any]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """One stack's contenders through probe and round 2: its finalists and its dropped (id -> why)."""
        spec, plan = self.ctx.config.search, self.ctx.config.load
        space = contenders
        contenders, unmeasured = self._fit_budget(contenders, always, counts)
        longer, final = round_sizes(len(contenders), spec)
        level = probe_concurrency(self.ctx.config, contenders)
        whose = "" if stack == DEFAULT_STACK else f" ({stack})"
        self.events.on_stage(
            f"search{whose}: {len(contenders)} candidates probed at concurrency {level} "
            f"({spec.probe_windows} x {spec.probe_window_s:g} s windows at most); "
            f"the best {longer} (+ up to {spec.probe_tied} tied with the last) run longer, "
            f"the best {final} (+ up to {spec.max_tied} tied) get the full plan"
        )
        probes = self.run_probe(contenders, level, plan)
        first = decide(probes, longer, spec.probe_tied, "probe", 1, cutoff=True)
        by_id = {job.trial_id: job for job in contenders}
        left = [job for job in space if job.trial_id in unmeasured]
        counts["outlook"] = counts.get("outlook", "") + outlook_words(
            outlook(left, [(by_id[s.trial_id], s) for s in probes if s.trial_id in by_id])
        )
        references = [job for job in always if is_baseline(job)]
        runs = self.run_round2([by_id[i] for i in first.kept], level, plan, references)
        second = decide(runs, final, spec.max_tied, "the longer run", 2)
        finalists = {i: "best after the longer run" for i in second.kept if i not in second.tied}
        lost = "its round's measurement was lost to the infrastructure twice: measured fully instead"
        finalists.update({i: lost for i in second.unmeasured})
        tied = "statistically tied with the best (the data cannot tell them apart)"
        finalists.update({i: tied for i in second.tied})
        counts["probed"] += len(probes)
        counts["run_longer"] += len(runs)
        counts.setdefault("probe_concurrency", level)
        return finalists, {**unmeasured, **first.dropped, **second.dropped}

    def _fit_budget(
        self, contenders: list[TrialJob], always: list[TrialJob], counts: dict[str, Any]
    ) -> tuple[list[TrialJob], dict[str, str]]:
        """The contenders the probe measures within this pool's share of the budget (study/budget.py)."""
        share = counts["budget_shares"][contenders[0].trial.candidate.stack]
        if share is None:
            return contenders, {}
        references = len([job for job in always if is_baseline(job)])
        config = self.ctx.config
        kept, unmeasured, _ = within_budget(contenders, config.search, config.load, share, references)
        counts["unmeasured"] += len(unmeasured)
        return kept, unmeasured


def stack_pools(contenders: list[TrialJob]) -> dict[str, list[TrialJob]]:
    """The contenders by stack, in plan order (deploybench's first). Each stack is searched among its
    own: pooled, the fastest stack's candidates would take every final place, and another stack's
    best knobs would never be found, so the stacks would not be compared at their best."""
    pools: dict[str, list[TrialJob]] = {}
    for job in contenders:
        pools.setdefault(job.trial.candidate.stack, []).append(job)
    return pools


def run_search(run: SearchRun, jobs: list[TrialJob]) -> list[TrialJob]:
    """Every machine's served jobs through the search; records search.json; the finalists, in plan order."""
    groups: dict[str, list[TrialJob]] = {}
    for job in jobs:
        groups.setdefault(job.machine.instance or job.machine.label, []).append(job)
    finals: list[TrialJob] = []
    report: dict[str, Any] = {
        "strategy": "successive halving",
        "settings": run.ctx.config.search.model_dump(),
    }
    machines: dict[str, Any] = {}
    for machine, group in groups.items():
        chosen, counts = run.search(group)
        finals += chosen
        machines[machine] = counts
        run.events.on_stage(summary_line(machine if len(groups) > 1 else None, counts))
    run.store.write_json(SEARCH_FILE, {**report, "machines": machines})
    return finals
