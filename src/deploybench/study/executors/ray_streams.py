"""Several running Ray generator tasks, read together as their events arrive.

Every outcome becomes an event dict, so callers handle one shape: the task's own events, then
"failed" (the task raised, or Ray lost it with its node or worker: "lost"; "started" says whether it
had begun), "unscheduled" (no live
node of its type is left to run it) or "ended".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
POLL_S = 0.5
ORPHAN_CHECK_S = 3.0  # how often queued tasks are checked for a machine type that has no node left


@dataclass
class _Running(Generic[Item]):
    item: Item
    instance: str
    started: dict[str, Any] | None = None


def describe_error(exc: BaseException) -> str:
    """One line: the exception type and the first line Ray gives (its messages run to pages)."""
    text = str(exc).strip().splitlines()
    lines = [line for line in text if line.strip() and not line.startswith(("Traceback", "  "))]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class TaskStreams(Generic[Item]):
    """Event streams of submitted generator tasks; alive_types() names the machine types with a node."""

    def __init__(self, ray: Any, alive_types: Callable[[], set[str]]) -> None:
        self.ray = ray
        self.alive_types = alive_types
        self.running: dict[Any, _Running[Item]] = {}

    def add(self, generator: Any, item: Item, instance: str) -> None:
        self.running[generator] = _Running(item, instance)

    def cancel_all(self) -> None:
        """Ray raises KeyboardInterrupt in each task, whose finally kills its process tree."""
        for generator in self.running:
            self.ray.cancel(generator)
        self.running.clear()

    def events(self, stop: threading.Event | None = None) -> Iterator[tuple[Item, dict[str, Any]]]:
        last_check = time.monotonic()
        while self.running:
            if stop is not None and stop.is_set():
                self.cancel_all()
                raise KeyboardInterrupt
            ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=POLL_S)
            for generator in ready:
                yield from self._next(generator)
            if time.monotonic() - last_check >= ORPHAN_CHECK_S:
                last_check = time.monotonic()
                yield from self._orphans()

    def _next(self, generator: Any) -> Iterator[tuple[Item, dict[str, Any]]]:
        running = self.running[generator]
        try:
            event = self.ray.get(next(generator))
        except StopIteration:
            del self.running[generator]
            yield running.item, {"event": "ended"}
            return
        except self.ray.exceptions.RayError as exc:
            del self.running[generator]
            failed = {
                "event": "failed",
                "message": describe_error(exc),
                "started": running.started,
                # the task's own code raised (RayTaskError), or Ray lost it: its node or worker died
                "lost": not isinstance(exc, self.ray.exceptions.RayTaskError),
            }
            yield running.item, failed
            return
        if event.get("event") == "started":
            running.started = event
        yield running.item, event

    def _orphans(self) -> Iterator[tuple[Item, dict[str, Any]]]:
        """Tasks still queued for a machine type whose last node has gone would wait forever."""
        alive = self.alive_types()
        for generator, running in list(self.running.items()):
            if running.started is None and running.instance not in alive:
                self.ray.cancel(generator)
                del self.running[generator]
                message = f"no live node labelled {running.instance} is left in the cluster"
                yield running.item, {"event": "unscheduled", "message": message}
