"""One study across two machine types of a real (one-machine) Ray cluster: real variants built on each
node, real servers on the nodes' loopback, real load, a real report; a killed driver resumes, and a
node that dies mid-trial leaves a failed trial while the study goes on."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from helpers import TESTS
from helpers.fake_cluster import FakeCluster
from helpers.study_runs import kill_after_first_trial, rerun_measures_nothing, resume

import deploybench
from deploybench.study.executors import ExecutorError
from deploybench.study.runner import StudyProgress, run_study
from deploybench.study.spec import load_study_config
from deploybench.study.store import StudyStore
from deploybench.study.trial import TrialJob

TINY = TESTS / "study" / "data" / "tiny_cluster.yaml"
PRICES = {"c7i.large": 0.08925, "c7i.xlarge": 0.1785, "c5.xlarge": 0.17}  # bundled catalogue, by label
pytestmark = pytest.mark.slow


def study_command(out: Path, cache: Path, address: str, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "deploybench.cli", "run", str(TINY), "--cluster", address]
    return [*command, "--out", str(out), "--cache-dir", str(cache), *extra]


def servers_using(cache: Path) -> list[psutil.Process]:
    """deploybench servers a study started with this artifact cache (only this test's studies use it)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "serve" in cmdline and str(cache) in cmdline:
            found.append(proc)
    return found


def wait_until_gone(cache: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while servers_using(cache) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not servers_using(cache), "a server outlived the study that started it"


def test_a_machine_type_the_cluster_lacks_is_an_error_naming_the_labels_it_has(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    machines = [{"instance": "c7i.large"}, {"instance": "g6.xlarge"}]
    config = load_study_config(TINY, {"cluster": {"address": cluster.address}, "machines": machines})
    with pytest.raises(ExecutorError, match=r"instance-type=g6\.xlarge.*reports: c7i\.large, c7i\.xlarge"):
        run_study(config, tmp_path / "study")
    assert not (tmp_path / "study" / "trials.jsonl").exists()


def test_each_machine_type_runs_on_its_own_node_is_priced_by_its_label_and_a_killed_study_resumes(
    cluster: FakeCluster, artifact_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    command = study_command(out, artifact_cache, cluster.address)
    before = kill_after_first_trial(command, out, timeout_s=300)
    wait_until_gone(artifact_cache, timeout_s=60)  # Ray ends a dead driver's tasks; their trees go too
    machines = ("c7i.large", "c7i.xlarge")
    if len(before) == 2 * len(machines):  # both nodes finished within one poll of each other: all done
        rerun_measures_nothing(command, out, before)
        after = before
    else:
        after = resume(command, out, before, tmp_path / "run.json")
    ids = [t.trial_id for t in after]
    assert set(ids) == {f"{m}/{b}@cpu/w1t2/b1d0" for m in machines for b in ("eager", "onnxruntime")}
    for trial in after:
        instance = trial.trial_id.split("/")[0]
        if trial.candidate.backend == "onnxruntime":  # built and verified on its node, not served
            assert trial.status == "skipped" and trial.parity and trial.parity.verdict == "passed"
            assert trial.machine.instance == instance and trial.machine.node_id is None
            continue
        assert trial.status == "ok", (trial.trial_id, trial.reason, trial.log_tail)
        assert trial.machine.instance == instance and trial.machine.price_per_hour == PRICES[instance]
        assert trial.machine.node_id in cluster.labels, "the trial does not say which node ran it"
        assert cluster.labels[trial.machine.node_id] == instance, "a trial ran on another machine type"
        assert sum(p.ok for p in trial.points) > 0 and trial.peak_rss_mb
        assert "ready on http://127.0.0.1:" in StudyStore(out).log_path(trial.trial_id).read_text()
    for machine in machines:
        assert (out / "machines" / machine / "variants.json").exists()
        assert (out / "machines" / machine / "environment.json").exists()

    ranked = pd.read_csv(out / "results.csv")  # the report ranks both machine types together
    assert set(ranked["machine"]) == set(machines)
    for row in ranked.itertuples():
        assert row.usd_per_hour == PRICES[row.machine]
        if row.throughput_rps == row.throughput_rps:  # judged at an operating point (not NaN)
            assert row.cost_per_1m_usd == pytest.approx(row.usd_per_hour / (row.throughput_rps * 3600) * 1e6)


def test_a_trial_whose_node_dies_is_recorded_retryable_and_the_study_goes_on(
    cluster: FakeCluster, artifact_cache: Path, tmp_path: Path
) -> None:
    doomed = cluster.add_machine("c5.xlarge")
    overrides = {
        "cluster": {"address": cluster.address},
        "machines": [{"instance": "c5.xlarge"}],
        "serve_top": 1,
    }
    config = load_study_config(TINY, overrides)  # two served trials: one dies with its node, one cannot run
    removal: list[threading.Timer] = []

    def on_start(job: TrialJob, node: str | None) -> None:
        if not removal:  # mid-trial: its server is starting or serving by then
            removal.append(threading.Timer(4.0, cluster.cluster.remove_node, args=(doomed,)))
            removal[0].start()

    outcome = run_study(
        config, tmp_path / "study", cache_dir=artifact_cache, progress=StudyProgress(on_trial_start=on_start)
    )
    removal[0].join()
    (died,) = [t for t in outcome.trials if t.status != "skipped"]
    assert died.status == "failed" and died.machine.node_id == doomed.node_id
    assert "failed during the trial" in (died.reason or ""), died.reason
    assert died.retryable and (died.reason or "").startswith("lost to the infrastructure: ")  # rerun: retried
    assert f"{died.trial_id}: lost to the infrastructure: " in " ".join(outcome.unfinished)
    assert died.machine.instance == "c5.xlarge" and died.machine.price_per_hour == PRICES["c5.xlarge"]
    (left,) = [line for line in outcome.unfinished if "lost to the infrastructure" not in line]
    # the other served trial was never run: a rerun will run it
    assert left.startswith("c5.xlarge/") and "no live node labelled c5.xlarge" in left, left
    assert {t.trial_id for t in outcome.trials}.isdisjoint({left.split(":")[0]})
    wait_until_gone(artifact_cache, timeout_s=30)


def test_a_node_running_other_code_is_refused_with_what_differs(
    cluster: FakeCluster, artifact_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edited = tmp_path / "edited"  # the same version number, one file changed: another checkout's code
    shutil.copytree(Path(deploybench.__file__).parent, edited / "deploybench")
    with (edited / "deploybench" / "study" / "trial.py").open("a") as source:
        source.write("\n# edited on this node only\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(edited), os.environ.get("PYTHONPATH", "")]))
    node = cluster.add_machine("c6a.large")  # its workers import the edited copy first
    monkeypatch.undo()
    machines = [{"instance": "c6a.large"}]
    config = load_study_config(TINY, {"cluster": {"address": cluster.address}, "machines": machines})
    refused = r"c6a\.large: not prepared: node \w+ .* runs code \w+ \(expected \w+\)"
    try:
        with pytest.raises(ExecutorError, match=refused):
            run_study(config, tmp_path / "study", cache_dir=artifact_cache)
    finally:
        cluster.cluster.remove_node(node)
