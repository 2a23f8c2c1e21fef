"""A study folder loses nothing: what is not a study is never overwritten or deleted, and measurements
taken under other inputs (config, file contents, libraries, machine) are never mixed or reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploybench.cli import app
from deploybench.cli.run import default_study_dir
from deploybench.study.environment import environment_changes
from deploybench.study.folder import MARKER, study_key
from deploybench.study.spec import StudyConfig, dump_study_config
from deploybench.study.store import ENVIRONMENT, ENVIRONMENTS, VARIANTS, StudyStore, StudyStoreError

TINY = Path(__file__).parent / "data" / "tiny.yaml"


def users_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    (folder / "logs").mkdir(parents=True)
    (folder / "study.yaml").write_text("# my own study file\nname: mine\n")
    (folder / "logs" / "keep.txt").write_text("my notes")
    return folder


@pytest.mark.parametrize("fresh", [False, True])
def test_a_folder_that_is_not_a_study_is_refused_and_left_as_it_was(tmp_path: Path, fresh: bool) -> None:
    folder = users_folder(tmp_path)
    with pytest.raises(StudyStoreError, match="not a deploybench study folder"):
        StudyStore(folder).acquire("name: a\n", fresh=fresh)
    assert (folder / "study.yaml").read_text() == "# my own study file\nname: mine\n"
    assert (folder / "logs" / "keep.txt").read_text() == "my notes"
    assert sorted(p.name for p in folder.iterdir()) == ["logs", "study.yaml"]


def test_run_refuses_such_a_folder_before_measuring(tmp_path: Path) -> None:
    folder = users_folder(tmp_path)
    result = CliRunner().invoke(app, ["run", str(TINY), "--out", str(folder), "--fresh"])
    assert result.exit_code == 2, result.output
    assert "not a deploybench study folder" in result.output
    assert (folder / "logs" / "keep.txt").exists() and not (folder / MARKER).exists()


def test_an_empty_folder_or_a_study_folder_is_taken(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    store = StudyStore(empty)
    store.acquire("name: a\n", fresh=False)
    store.release()
    assert (empty / MARKER).exists()
    again = StudyStore(empty)
    again.acquire("name: a\n", fresh=True)  # a study folder: --fresh may clear what a study wrote
    again.release()


def test_variants_measured_for_another_configuration_are_not_reused(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "study")
    store.acquire("name: a\n", fresh=False)
    store.write_json(VARIANTS, {"backends": []})
    store.release()
    with pytest.raises(StudyStoreError, match="changed: the configuration"):
        StudyStore(tmp_path / "study").acquire("name: b\n", fresh=False)
    fresh = StudyStore(tmp_path / "study")
    fresh.acquire("name: b\n", fresh=True)
    assert not (tmp_path / "study" / VARIANTS).exists()


def test_changed_file_contents_change_the_key_and_the_default_folder(tmp_path: Path) -> None:
    payload = tmp_path / "request.jpg"
    payload.write_bytes(b"first photo")
    config = StudyConfig(payload=payload)
    before_key, before_dir = study_key(config), default_study_dir(config)
    store = StudyStore(tmp_path / "study")
    store.acquire("name: a\n", fresh=False, key=before_key)
    store.write_json(VARIANTS, {"backends": []})
    store.release()
    payload.write_bytes(b"a retrained model's photo")  # same path, same config, other contents
    after_key = study_key(config)
    assert default_study_dir(config) != before_dir
    with pytest.raises(StudyStoreError, match="the payload file's contents"):
        StudyStore(tmp_path / "study").acquire("name: a\n", fresh=False, key=after_key)


def test_library_versions_are_part_of_the_key(tmp_path: Path) -> None:
    key = study_key(StudyConfig())
    store = StudyStore(tmp_path / "study")
    store.acquire("name: a\n", fresh=False, key=key)
    store.write_json(VARIANTS, {"backends": []})
    store.release()
    other = {**key, "libraries": {**key["libraries"], "torch": "0.0.1"}}
    with pytest.raises(StudyStoreError, match=r"torch .* -> 0\.0\.1"):
        StudyStore(tmp_path / "study").acquire("name: a\n", fresh=False, key=other)


def test_every_run_keeps_its_own_environment_record(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "study")
    store.acquire("name: a\n", fresh=False)
    first = {"cpu_model": "EPYC", "cores": 2, "libraries": {"torch": "2.14.1"}}
    second = {**first, "hostname": "another"}
    store.record_environment(None, first, "2026-12-05T10:00:00+00:00")
    store.record_environment(None, second, "2026-12-05T11:00:00+00:00")
    assert json.loads((tmp_path / "study" / ENVIRONMENT).read_text()) == first
    runs = [json.loads(line) for line in (tmp_path / "study" / ENVIRONMENTS).read_text().splitlines()]
    assert [run["environment"] for run in runs] == [first, second]
    assert environment_changes(first, second) == []  # the hostname does not change the figures
    assert environment_changes(first, {**first, "cores": 4}) == ["cores: 2 -> 4"]


def test_a_folder_written_by_the_previous_release_resumes(tmp_path: Path) -> None:
    """No marker, no lock file, a study.yaml dumped before settings were added and a stack renamed:
    the same study all the same, so it resumes; another study does not."""
    config = StudyConfig(stacks=["deploybench", "pytriton"])
    today = dump_study_config(config)
    old = "\n".join(line for line in today.splitlines() if "probe_servers" not in line)
    old = old.replace("pytriton", "triton")
    assert old != today
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "study.yaml").write_text(old)
    (folder / "environment.json").write_text("{}")
    (folder / VARIANTS).write_text("[]")
    store = StudyStore(folder)
    store.acquire(today, fresh=False)  # the previous release's folder: no refusal
    store.release()
    assert (folder / MARKER).exists() and (folder / "study.yaml").read_text() == today
    other = dump_study_config(StudyConfig(name="another"))
    with pytest.raises(StudyStoreError, match="changed: the configuration"):
        StudyStore(folder).acquire(other, fresh=False)
