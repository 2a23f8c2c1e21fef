import json
from pathlib import Path

import pytest

from deploybench.results import Candidate, MachineInfo, TrialRecord
from deploybench.study.store import TRIALS, StudyStore, StudyStoreError


def record(backend: str) -> TrialRecord:
    candidate = Candidate(backend=backend)
    return TrialRecord(
        trial_id=candidate.key,
        model="m",
        weights="random",
        candidate=candidate,
        status="skipped",
        machine=MachineInfo(label="here"),
        started_at="t0",
        finished_at="t1",
    )


def test_trials_survive_a_torn_append_and_resume(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    store.acquire("name: a\n", fresh=False)
    store.append_trial(record("eager"))
    store.append_trial(record("onnxruntime"))
    store.release()
    with (tmp_path / TRIALS).open("a") as handle:  # a kill in the middle of an append
        handle.write('{"trial_id": "half')
    again = StudyStore(tmp_path)
    again.acquire("name: a\n", fresh=False)
    assert [t.candidate.backend for t in again.trials()] == ["eager", "onnxruntime"]
    again.append_trial(record("openvino"))
    assert len(again.trials()) == 3
    again.release()


def test_one_study_per_folder_at_a_time(tmp_path: Path) -> None:
    first = StudyStore(tmp_path)
    first.acquire("name: a\n", fresh=False)
    with pytest.raises(StudyStoreError, match="another study"):
        StudyStore(tmp_path).acquire("name: a\n", fresh=False)
    first.release()


def test_a_different_config_needs_fresh(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    store.acquire("name: a\n", fresh=False)
    store.append_trial(record("eager"))
    store.release()
    with pytest.raises(StudyStoreError, match="--fresh"):
        StudyStore(tmp_path).acquire("name: b\n", fresh=False)
    fresh = StudyStore(tmp_path)
    fresh.acquire("name: b\n", fresh=True)
    assert fresh.trials() == []
    fresh.release()


def test_a_trial_lost_to_the_infrastructure_is_measured_again_and_its_new_record_wins(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    store.acquire("name: a\n", fresh=False)
    lost = record("eager").model_copy(update={"status": "failed", "retryable": True, "reason": "lost"})
    store.append_trial(lost)
    store.append_trial(record("onnxruntime"))
    assert store.finished_ids() == {record("onnxruntime").trial_id}  # a resume measures eager again
    again = record("eager").model_copy(update={"status": "ok"})
    store.append_trial(again)
    assert store.trials() == [again, record("onnxruntime")]  # its newest record, in its first place
    assert len(store.records()) == 3 and store.finished_ids() == store.trial_ids()
    store.release()


def test_a_record_written_before_retryable_existed_reads_as_final(tmp_path: Path) -> None:
    old = record("eager").model_dump(mode="json")
    del old["retryable"]
    (tmp_path / TRIALS).write_text(json.dumps(old) + "\n")
    (tmp_path / "study.yaml").write_text("name: a\n")
    store = StudyStore(tmp_path)
    assert [t.retryable for t in store.trials()] == [False]
    assert store.finished_ids() == {old["trial_id"]}


def test_a_runoff_group_is_stored_in_one_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runoff's samples pair only with each other: a kill between two of its records left half a
    group, which the resumed study had to measure whole again (a trial recorded twice)."""
    store = StudyStore(tmp_path)
    store.acquire("name: a\n", fresh=False)
    writes: list[str] = []
    real_open = Path.open

    def counting_open(self: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        handle = real_open(self, *args, **kwargs)
        if self.name == TRIALS:
            write = handle.write
            handle.write = lambda text: writes.append(text) or write(text)  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(Path, "open", counting_open)
    store.append_trials([record("eager"), record("onnxruntime"), record("openvino")])
    assert len(writes) == 1 and writes[0].count("\n") == 3
    assert [t.candidate.backend for t in store.trials()] == ["eager", "onnxruntime", "openvino"]
    store.release()
