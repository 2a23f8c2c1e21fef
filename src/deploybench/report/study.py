"""Read a study folder (read-only): trials.jsonl, study.yaml, environment.json, variants.json.

The report must work on a study that is still running or was killed mid-append, so a torn last line
is skipped with a warning; any other bad line is an error that names the file and the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from deploybench.results import TrialRecord, candidate_trials, latest_trials

TRIALS = "trials.jsonl"
CONFIG = "study.yaml"
ENVIRONMENT = "environment.json"
VARIANTS = "variants.json"
MACHINES = "machines"  # a cluster study: machines/<instance>/{environment,variants}.json
SEARCH = "search.json"  # how much of the candidate space the search measured, and why it dropped the rest


class StudyReadError(ValueError):
    """A study folder that cannot be reported on: says which file and line, and why."""


@dataclass
class StudyData:
    """Everything the report needs from one study folder."""

    root: Path
    trials: list[TrialRecord]
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    variants: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    search: dict[str, Any] = field(default_factory=dict)
    # the search's round records: dropped candidates' figures and the runoff naming the runner-up
    search_records: list[TrialRecord] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.root.resolve().name


def load_study(study_dir: Path) -> StudyData:
    root = Path(study_dir)
    if not root.is_dir():
        raise StudyReadError(f"{root}: not a folder")
    trials_path = root / TRIALS
    if not trials_path.exists():
        raise StudyReadError(f"{root}: not a study folder (no {TRIALS}); run `deploybench run` first")
    warnings: list[str] = []
    every = latest_trials(_read_trials(trials_path, warnings))  # a retried trial: its newest record
    trials = candidate_trials(every)
    environment = _read_optional(root / ENVIRONMENT, json.loads, warnings) or {}
    variants = _as_list(_read_optional(root / VARIANTS, json.loads, warnings))
    for machine in sorted(p for p in (root / MACHINES).glob("*") if p.is_dir()):
        found = _read_optional(machine / ENVIRONMENT, json.loads, warnings)
        if found:
            environment[machine.name] = found
        variants += [
            {"machine": machine.name, **v}
            for v in _as_list(_read_optional(machine / VARIANTS, json.loads, warnings))
            if isinstance(v, dict)
        ]
    return StudyData(
        root=root,
        trials=trials,
        config=_read_optional(root / CONFIG, yaml.safe_load, warnings) or {},
        environment=environment,
        variants=variants,
        warnings=warnings,
        search=_read_optional(root / SEARCH, json.loads, warnings) or {},
        search_records=[t for t in every if t.status == "probe"],
    )


def _read_trials(path: Path, warnings: list[str]) -> list[TrialRecord]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    torn_tail = bool(text) and not text.endswith("\n")
    trials: list[TrialRecord] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            trials.append(TrialRecord.model_validate_json(line))
        except ValidationError as exc:
            if torn_tail and number == len(lines):
                warnings.append(f"{path}:{number}: incomplete last line skipped (study still running?)")
                continue
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "line"
            raise StudyReadError(f"{path}:{number}: not a trial record: {where}: {first['msg']}") from exc
    return trials


def _read_optional(path: Path, parse, warnings: list[str]) -> Any:
    """Side files are context, not data: a missing or broken one is a warning, not a failure."""
    if not path.exists():
        return None
    try:
        return parse(path.read_text(encoding="utf-8"))
    except (ValueError, yaml.YAMLError) as exc:
        warnings.append(f"{path}: unreadable ({str(exc).splitlines()[0]}); left out of the report")
        return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict):
        return list(value.get("variants", [value]))
    return list(value)
