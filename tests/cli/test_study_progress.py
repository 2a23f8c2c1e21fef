"""The study's live display must stay out of the server's way: it draws only when there is news."""

from __future__ import annotations

import io
import time

from rich.console import Console

from deploybench.cli.study_progress import RichStudyProgress
from deploybench.load import LiveStats


def _live(rate: float) -> LiveStats:
    return LiveStats(
        label="concurrency 4",
        phase="measuring",
        elapsed_s=1.0,
        rate_rps=rate,
        p50_ms=5.0,
        p99_ms=9.0,
        errors=0,
        windows=1,
    )


def test_the_display_does_nothing_while_nothing_changes() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with RichStudyProgress(console) as progress:
        progress.progress.add_task("candidates", total=3, live="")
        before = len(out.getvalue())
        time.sleep(1.2)  # a point being measured, no live update: no redraw either
        assert len(out.getvalue()) == before


def test_live_updates_are_drawn_at_most_once_a_second() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with RichStudyProgress(console) as progress:
        progress.task = progress.progress.add_task("candidates", total=3, live="")
        progress.on_live(_live(10.0))
        drawn = len(out.getvalue())
        for rate in range(50):
            progress.on_live(_live(float(rate)))  # a burst of updates within a few milliseconds
        assert len(out.getvalue()) == drawn
