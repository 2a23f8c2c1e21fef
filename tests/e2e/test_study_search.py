"""The search end to end: probes recorded as trials, candidates dropped with reasons, finalists fully
measured, and a study killed mid-search resumed without probing anything twice."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from helpers import TESTS
from helpers.study_runs import kill_after_first_trial, rerun_measures_nothing, resume

TINY_SEARCH = TESTS / "study" / "data" / "tiny_search.yaml"
pytestmark = pytest.mark.slow


def test_a_killed_search_resumes_without_reprobing_and_fully_measures_only_finalists(tmp_path: Path) -> None:
    out = tmp_path / "study"
    command = [sys.executable, "-m", "deploybench.cli", "run", str(TINY_SEARCH), "--out", str(out)]
    command += ["--cache-dir", str(tmp_path / "cache")]
    before = kill_after_first_trial(command, out, timeout_s=400)
    assert before[0].trial_id.endswith("#probe") and before[0].status == "probe"
    after = resume(command, out, before, tmp_path / "run.json")
    probes = [t for t in after if t.trial_id.endswith("#probe")]
    longer = [t for t in after if t.trial_id.endswith("#round2")]
    assert len(probes) == 3 and all(t.status == "probe" for t in probes + longer)  # eager is never probed
    # round 2 is a paired runoff: both served at once, with the eager baseline (the speed-up over it
    # is paired too), 4 rounds of one window each, in turn
    assert len(longer) == 3 and sum(t.candidate.backend == "eager" for t in longer) == 1
    assert all(t.runoff is not None and len(t.runoff.rps) == 4 and len(t.points) == 4 for t in longer)
    assert len({t.runoff.group for t in longer if t.runoff}) == 1
    assert {p.concurrency for t in probes for p in t.points} == {8}  # one point: 2 x workers x batch 4
    dropped = [t for t in after if t.status == "skipped"]
    assert len(dropped) == 2, [(t.trial_id, t.reason) for t in after]
    assert sum("dropped after probe" in (t.reason or "") for t in dropped) == 1
    assert sum("dropped after the longer run" in (t.reason or "") for t in dropped) == 1
    assert all("req/s" in (t.reason or "") and not t.points for t in dropped)
    finals = [t for t in after if t.status == "ok"]
    assert len(finals) == 2 and any(t.candidate.backend == "eager" for t in finals)
    for final in finals:  # each carries its runoff sample, the baseline too
        assert final.runoff == next(t.runoff for t in longer if t.trial_id == f"{final.trial_id}#round2")
    for trial in finals:  # the baseline at the fixed level only; the winner of the search the full plan
        levels = {p.concurrency for p in trial.points}
        assert levels == {4} if trial.candidate.backend == "eager" else levels >= {1, 2, 4}, trial.trial_id
    search = json.loads((out / "search.json").read_text())["machines"]["ci"]
    assert (search["space"], search["probed"], search["run_longer"], search["fully_measured"]) == (4, 3, 2, 2)
    assert set(search["dropped"]) == {t.trial_id for t in dropped}
    assert "4 candidates in the space, 3 probed (concurrency 8)" in (out / "summary.md").read_text()
    rows = json.loads((tmp_path / "run.json").read_text())["rows"]
    assert len(rows) == 4 and not any("#" in row["trial_id"] for row in rows)  # probes are not listed
    with (out / "results.csv").open() as results:
        ranked = [r for r in csv.DictReader(results) if r["backend"] != "eager" and r["status"] == "ok"]
    if ranked[0]["throughput_rps"]:  # a finalist with no trusted point has no speed-up to state
        assert "in a paired runoff at 8 clients" in ranked[0]["vs_baseline"], ranked  # over eager, paired
    again = rerun_measures_nothing(command, out, after)  # a finished search measures nothing again
    assert "4 candidates in the space, 3 probed, 2 run longer, 2 fully measured" in again  # decides the same
