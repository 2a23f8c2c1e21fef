"""Round trip of `deploybench export` (not a test): a study's trial served again as the exported
archive, its throughput beside the trial's recorded figure and beside the study's own variant served
afresh in the same run. Both servers run side by side with the trial's knobs; load rounds alternate
between them, so drift from other processes on the machine hurts both alike.

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/export_roundtrip.py STUDY_DIR \\
        [--archive exported.tar.gz] [--candidate TRIAL_ID] [--rounds 3] [--duration 10]

Without --archive the candidate is exported first (into a temporary folder). The load client runs
on the same cores as the server, as in the study.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path

from serve_overhead import load_rate  # bench/ is on sys.path when a script there runs

from deploybench.config import ModelSpec
from deploybench.export import export_candidate
from deploybench.export.core import study_config
from deploybench.inputs.payload import default_payload_path, read_payloads
from deploybench.report.study import load_study
from deploybench.results import TrialRecord
from deploybench.stacks.process import start_server, stop_server
from deploybench.study.spec import study_model_spec
from deploybench.study.summary import headline_point

TOLERANCE = 0.10


def pick_trial(
    study_dir: Path, candidate: str | None, archive: Path | None, cache: Path | None
) -> tuple[TrialRecord, Path]:
    study = load_study(study_dir)
    if archive is None:
        archive = Path(tempfile.mkdtemp(prefix="roundtrip-")) / "exported.tar.gz"
        result = export_candidate(study_dir, archive, trial_id=candidate, cache_dir=cache)
        candidate = result.trial_id
        print(f"exported {result.trial_id} to {archive} ({result.artifact})")
    elif candidate is None:
        with tarfile.open(archive) as tar:
            candidate = json.load(tar.extractfile("deploybench-export.json"))["trial_id"]  # type: ignore[arg-type]
    trial = next(t for t in study.trials if t.trial_id == candidate)
    return trial, archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--archive", type=Path, help="an exported archive (default: export now)")
    parser.add_argument("--candidate", help="trial id (default: the archive's, else the recommended one)")
    parser.add_argument("--cache-dir", type=Path, help="the study's artifact cache")
    parser.add_argument("--concurrency", type=int, help="default: the trial's headline point")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    config = study_config(load_study(args.study))
    trial, archive = pick_trial(args.study, args.candidate, args.archive, args.cache_dir)
    point = headline_point(trial)
    concurrency = args.concurrency or (point.concurrency if point and point.concurrency else 1)
    recorded = next((p.throughput_rps for p in trial.points if p.concurrency == concurrency), None)
    bodies = read_payloads(config.payload or default_payload_path(), config.content_type)
    spec = study_model_spec(config)
    exported_spec = ModelSpec(source=str(archive), content_type=config.content_type)
    as_is = trial.candidate.model_copy(update={"backend": "eager"})  # the exported handler runs as it is
    log_dir = Path(tempfile.mkdtemp(prefix="roundtrip-logs-"))
    servers = {
        "study variant": start_server(
            spec, trial.candidate, log_dir / "variant.log", cache_dir=args.cache_dir, timeout_s=600
        ),
        "exported": start_server(
            exported_spec, as_is, log_dir / "exported.log", cache_dir=args.cache_dir, timeout_s=600
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for round_index in range(args.rounds):
            for name, server in servers.items():
                rate, errors, _ = load_rate(
                    server.invocations_url, bodies, concurrency, args.duration, config.content_type
                )
                if errors:
                    print(f"  warning: {errors} errors", file=sys.stderr)
                rates[name].append(rate)
                print(f"round {round_index + 1}: {name:>13}: {rate:,.1f} req/s at concurrency {concurrency}")
    finally:
        for server in servers.values():
            stop_server(server)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    exported = medians["exported"]
    print(f"\n{trial.trial_id} at concurrency {concurrency}:")
    if recorded:
        print(f"  recorded by the study: {recorded:,.1f} req/s; exported/recorded {exported / recorded:.3f}")
    print(
        f"  study variant now: {medians['study variant']:,.1f} req/s; exported now: {exported:,.1f} req/s; "
        f"exported/variant {exported / medians['study variant']:.3f}"
    )
    for what, reference in (
        ("the trial's recorded", recorded),
        ("the variant served now", medians["study variant"]),
    ):
        if reference:
            ratio = exported / reference
            verdict = "yes" if abs(ratio - 1) <= TOLERANCE else "NO"
            print(f"  within {TOLERANCE:.0%} of {what} throughput: {verdict} ({ratio:.3f})")
    print(
        "  (the recorded figure was taken at another time: on a shared machine, side by side is the fair one)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "trial": trial.trial_id,
                    "concurrency": concurrency,
                    "recorded": recorded,
                    "rates": rates,
                    "medians": medians,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
