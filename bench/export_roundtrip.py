"""Round trip of `deploybench export` (not a test): a study's trial served again as the exported
archive, the way its target runs it, its throughput beside the trial's recorded figure and beside the
trial's configuration on deploybench's server in the same run (export/roundtrip.py, the measurement
`deploybench export --round-trip` writes into the archive's README).

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/export_roundtrip.py STUDY_DIR \\
        [--archive exported.tar.gz] [--candidate TRIAL_ID] [--rounds 3] [--duration 10]

Without --archive the candidate is exported first (into a temporary folder, its stack's target). The
load client runs on the same cores as the server, as in the study.
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
from pathlib import Path

from deploybench.export import export_candidate
from deploybench.export.core import study_config
from deploybench.export.readme import sagemaker_env
from deploybench.export.roundtrip import RoundTripPlan, measure_round_trip
from deploybench.inputs.payload import default_payload_path, read_payloads
from deploybench.report.study import load_study
from deploybench.results import TrialRecord
from deploybench.study.spec import study_model_spec
from deploybench.study.summary import headline_point

TOLERANCE = 0.10


def pick_trial(
    study_dir: Path, candidate: str | None, archive: Path | None, cache: Path | None
) -> tuple[TrialRecord, Path, str]:
    """(the trial, its archive, the archive's target): exported now unless an archive is given."""
    study = load_study(study_dir)
    if archive is None:
        archive = Path(tempfile.mkdtemp(prefix="roundtrip-")) / "exported.tar.gz"
        result = export_candidate(study_dir, archive, trial_id=candidate, cache_dir=cache)
        print(f"exported {result.trial_id} to {archive} as {result.target} ({result.artifact})")
        candidate = result.trial_id
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("deploybench-export.json"))  # type: ignore[arg-type]
    candidate = candidate or manifest["trial_id"]
    trial = next(t for t in study.trials if t.trial_id == candidate)
    return trial, archive, manifest.get("target") or "sagemaker-pytorch"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--archive", type=Path, help="an exported archive (default: export now)")
    parser.add_argument("--candidate", help="trial id (default: the archive's, else the recommended one)")
    parser.add_argument("--cache-dir", type=Path, help="the study's artifact cache")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    config = study_config(load_study(args.study))
    trial, archive, target = pick_trial(args.study, args.candidate, args.archive, args.cache_dir)
    recorded = next((p.throughput_rps for p in trial.points if p.concurrency == args.concurrency), None)
    point = headline_point(trial)
    bodies = read_payloads(config.payload or default_payload_path(), config.content_type)
    plan = RoundTripPlan(clients=args.concurrency, rounds=args.rounds, duration_s=args.duration)
    trip = measure_round_trip(
        archive, target, study_model_spec(config), trial.candidate, bodies, content_type=config.content_type,
        env=sagemaker_env(trial.candidate), cache_dir=args.cache_dir, plan=plan, on_progress=print,
    )  # fmt: skip
    print(f"\n{trial.trial_id} as {target} at {plan.clients} clients:")
    if recorded:
        ratio = trip.exported_rps / recorded
        print(f"  recorded by the study: {recorded:,.1f} req/s; exported/recorded {ratio:.3f}")
    elif point is not None:
        print(f"  (the study recorded no point at {plan.clients} clients; its headline: {point.concurrency})")
    print(
        f"  trial's configuration now: {trip.trial_rps:,.1f} req/s; exported now: "
        f"{trip.exported_rps:,.1f} req/s; exported/trial's configuration {trip.ratio:.3f}; "
        f"{trip.errors} errors; same answers: {trip.answers_match}"
    )
    verdict = "yes" if abs(trip.ratio - 1) <= TOLERANCE else "NO"
    print(f"  within {TOLERANCE:.0%} of the trial's configuration served now: {verdict} ({trip.ratio:.3f})")
    print(
        "  (the recorded figure was taken at another time: on a shared machine, side by side is the fair one)"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"trial": trial.trial_id, "recorded": recorded, **trip.model_dump()}, indent=2)
        )


if __name__ == "__main__":
    main()
