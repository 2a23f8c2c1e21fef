"""The study folder: resolved config, environment, variant reports and trials.jsonl (append + fsync).

A study resumes by reading trials.jsonl and skipping the trial ids it holds, so every finished trial
is durable the moment it is appended and nothing is measured twice. The one exception is a trial lost
to the infrastructure (retryable): it is measured again, and its new record, appended after the old,
is the one every reader takes (results.latest_trials).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import IO, Any

from deploybench.results import TrialRecord, latest_trials
from deploybench.study.folder import (
    MARKER,
    NotAStudyFolderError,
    check_study_folder,
    key_differences,
    read_marker,
    same_config,
    write_marker,
)

TRIALS = "trials.jsonl"
CONFIG = "study.yaml"
ENVIRONMENT = "environment.json"  # the first run's; every run's is a line of ENVIRONMENTS
ENVIRONMENTS = "environments.jsonl"
VARIANTS = "variants.json"
LOGS = "logs"
MACHINES = "machines"
STACKS = "stacks"
_LOCK = ".lock"


def machine_file(name: str, machine: str | None) -> str:
    """Where one machine's side file lives: the folder's root for a single-machine study, else
    machines/<instance>/ (each node type of a cluster study has its own environment and variants)."""
    return name if machine is None else f"{MACHINES}/{machine}/{name}"


class StudyStoreError(RuntimeError):
    """The study folder cannot be used as asked (another study holds it, or its config differs)."""


class StudyStore:
    """One study folder, held under an exclusive lock while a study writes to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock_file: IO[str] | None = None

    def acquire(self, config_yaml: str, *, fresh: bool, key: dict[str, Any] | None = None) -> None:
        """Lock the folder, start over if asked, and refuse what would lose or mix data: a folder that
        is not a study (nothing in it is ours to overwrite or delete), another study running in it, or
        data measured under another key (config, input files' contents, library versions)."""
        try:
            check_study_folder(self.root)
        except NotAStudyFolderError as exc:
            raise StudyStoreError(str(exc)) from exc
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_file = (self.root / _LOCK).open("w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StudyStoreError(f"{self.root}: another study is running in this folder") from exc
        if fresh:
            self._clear()
        key = key or {"config": hashlib.sha256(config_yaml.encode()).hexdigest()[:16]}
        self._drop_torn_tail()
        self._refuse_other_data(config_yaml, key)
        (self.root / CONFIG).write_text(config_yaml)
        write_marker(self.root, key)

    def has_data(self) -> bool:
        """Anything measured here: trials, or a machine's in-process variants."""
        return bool(self.trial_ids()) or (self.root / VARIANTS).exists() or (self.root / MACHINES).exists()

    def _refuse_other_data(self, config_yaml: str, key: dict[str, Any]) -> None:
        if not self.has_data():
            return
        marker = read_marker(self.root)
        changes = key_differences(marker.get("key", {}), key) if marker is not None else []
        existing = self.root / CONFIG
        same = existing.exists() and same_config(existing.read_text(), config_yaml)
        if marker is None and not same:  # a folder from before the marker: only its config compares
            changes = ["the configuration"]
        if same:
            changes = [change for change in changes if change != "the configuration"]
        if changes:
            raise StudyStoreError(
                f"{self.root} holds measurements taken with other inputs (changed: {'; '.join(changes)}); "
                "rerun with --fresh to start over, or choose another --out folder"
            )

    def release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _clear(self) -> None:
        """Delete what a study writes, and nothing else (the folder is known to be a study's)."""
        for name in (TRIALS, VARIANTS, ENVIRONMENT, ENVIRONMENTS, CONFIG, MARKER):
            (self.root / name).unlink(missing_ok=True)
        shutil.rmtree(self.root / LOGS, ignore_errors=True)
        shutil.rmtree(self.root / MACHINES, ignore_errors=True)
        shutil.rmtree(self.root / STACKS, ignore_errors=True)

    def _drop_torn_tail(self) -> None:
        """A kill during an append can leave half a line; cut it so the file stays valid JSON Lines."""
        path = self.root / TRIALS
        if not path.exists():
            return
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def append_trial(self, record: TrialRecord) -> None:
        """Append one trial and make it durable before the study moves on."""
        self.append_trials([record])

    def append_trials(self, records: list[TrialRecord]) -> None:
        """Append trials that stand or fall together (a runoff's group: its samples pair only with each
        other) in one write, durable before the study moves on: a kill leaves all of them or none."""
        lines = "".join(record.model_dump_json() + "\n" for record in records)
        with (self.root / TRIALS).open("a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())

    def records(self) -> list[TrialRecord]:
        """Every line of trials.jsonl, a retried trial's lost attempt included."""
        path = self.root / TRIALS
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [TrialRecord.model_validate_json(line) for line in lines if line.strip()]

    def trials(self) -> list[TrialRecord]:
        """Each trial's latest record."""
        return latest_trials(self.records())

    def trial_ids(self) -> set[str]:
        return {trial.trial_id for trial in self.trials()}

    def finished_ids(self) -> set[str]:
        """The trials a resumed study skips: all but those whose latest record was lost to the
        infrastructure (retryable), which it measures again."""
        return {trial.trial_id for trial in self.trials() if not trial.retryable}

    def write_json(self, name: str, data: Any) -> None:
        """Write a JSON document atomically (temp file + rename)."""
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(tmp, target)

    def record_environment(self, machine: str | None, environment: dict[str, Any], started: str) -> None:
        """One environment record per run: the first run's stays in environment.json (what the
        report reads), and every run appends its own line, so a resume never rewrites history."""
        first = machine_file(ENVIRONMENT, machine)
        if self.read_json(first) is None:
            self.write_json(first, environment)
        line = json.dumps({"started": started, "machine": machine, "environment": environment}, default=str)
        with (self.root / ENVIRONMENTS).open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def read_json(self, name: str) -> Any | None:
        path = self.root / name
        return json.loads(path.read_text()) if path.exists() else None

    def log_path(self, trial_id: str) -> Path:
        (self.root / LOGS).mkdir(exist_ok=True)
        return self.root / LOGS / f"{_safe_name(trial_id)}.log"

    def stack_dir(self, trial_id: str) -> Path:
        """The trial's serving-stack files (config.properties, model store, workspace), kept."""
        return self.root / STACKS / _safe_name(trial_id)


def _safe_name(trial_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in trial_id)
