"""A Ray cluster of different machines: each machine type is a node label, each trial a Ray task.

Nodes join with `--labels=deploybench/instance-type=<name> --resources='{"deploybench_slot": 1}'`.
A task asks for its type's label (label_selector), the node's one slot (so a machine runs one trial at
a time and trials never disturb each other's numbers) and the GPU it uses; it is never retried
(max_retries=0: a benchmark is not silently re-run) and gets a fresh worker process (max_calls=1).
On its node it runs deploybench's own single-node path (node.py), so variants are built, verified
and timed where they are served. The driver appends each returned record to trials.jsonl.
"""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import deploybench
from deploybench.load import LiveStats
from deploybench.pricing.catalogue import UnknownInstanceError, resolve_price
from deploybench.results import MachineInfo, TrialRecord
from deploybench.study.executors.base import (
    Executor,
    ExecutorError,
    MachineTarget,
    Prepared,
    PrepareRequest,
    register,
)
from deploybench.study.executors.node import code_digest, identity_mismatch, run_on_node
from deploybench.study.executors.node_main import planned_trial_json
from deploybench.study.executors.ray_streams import TaskStreams
from deploybench.study.loss import as_lost
from deploybench.study.plan import StackOffer
from deploybench.study.spec import ClusterMachine
from deploybench.study.store import StudyStore
from deploybench.study.trial import TrialContext, TrialEvents, TrialJob, failed_record

INSTANCE_LABEL = "deploybench/instance-type"
SLOT = "deploybench_slot"


@dataclass(frozen=True)
class ClusterNode:
    node_id: str
    address: str
    instance: str | None
    slot: bool
    gpus: int


def cluster_nodes(ray_nodes: list[dict[str, Any]]) -> list[ClusterNode]:
    """The live nodes as Ray reports them (ray.nodes())."""
    return [
        ClusterNode(
            node["NodeID"],
            node.get("NodeManagerAddress", ""),
            (node.get("Labels") or {}).get(INSTANCE_LABEL),
            node.get("Resources", {}).get(SLOT, 0) >= 1,
            int(node.get("Resources", {}).get("GPU", 0)),
        )
        for node in ray_nodes
        if node.get("Alive")
    ]


def describe_node(started: dict[str, Any]) -> str:
    return f"node {started['node_id'][:8]} ({started['hostname']}, {started['address']})"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ExecutorError("a cluster study needs Ray: pip install 'deploybench[ray]'") from exc
    return ray


def _price(machine: ClusterMachine) -> float:
    if machine.price_per_hour is not None:
        return machine.price_per_hour
    try:
        return resolve_price(machine.instance)
    except (UnknownInstanceError, ValueError) as exc:
        raise ExecutorError(f"machines: {machine.instance}: {exc}") from exc


def _bootstrap_address(ray: Any, address: str) -> str:
    """HOST:PORT that the address leads to ("auto": the cluster `ray start` wrote down on this machine)."""
    if address.startswith("ray://"):
        return address.removeprefix("ray://")
    if address != "auto":
        return address
    try:  # deploybench pins its Ray, so this helper is the one this code was written against
        return str(ray._private.services.canonicalize_bootstrap_address_or_die(address))
    except (ConnectionError, AttributeError) as exc:
        raise ExecutorError(
            "no Ray cluster found on this machine (--cluster auto): start one (see the README) "
            "or pass --cluster HOST:PORT"
        ) from exc


def check_reachable(host_port: str, timeout_s: float = 5.0) -> None:
    """Ray retries an absent cluster for minutes; a closed port is an error at once."""
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise ExecutorError(
            f"no Ray cluster answers at {host_port} ({exc}); is it up? (`ray status` on its head)"
        ) from exc


@register
class RayExecutor(Executor):
    name = "ray"

    def open(self) -> None:
        self.ray = _import_ray()
        address = self.config.cluster.address if self.config.cluster else "auto"
        check_reachable(_bootstrap_address(self.ray, address))
        try:
            self.ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ExecutorError(f"cannot connect to the Ray cluster at {address}: {exc}") from exc
        self._task = self.ray.remote(max_calls=1, max_retries=0)(run_on_node)
        # what every node that takes work must run: the driver's deploybench, code and Ray
        self._expect = {
            "deploybench": deploybench.__version__,
            "code": code_digest(),
            "ray": self.ray.__version__,
        }
        self._libraries: dict[str, Any] = {}  # per machine type: the library versions it was prepared with

    def close(self) -> None:
        if getattr(self, "ray", None) is not None and self.ray.is_initialized():
            self.ray.shutdown()

    def _nodes(self) -> list[ClusterNode]:
        return cluster_nodes(self.ray.nodes())

    def _alive_types(self) -> set[str]:
        return {n.instance for n in self._nodes() if n.instance and n.slot}

    def targets(self) -> list[MachineTarget]:
        nodes = [n for n in self._nodes() if n.instance]
        labels = sorted({n.instance for n in nodes if n.instance})
        wanted = self.config.machines or [ClusterMachine(instance=name) for name in labels]
        reported = ", ".join(labels) or "no node carries it"
        missing = [m.instance for m in wanted if m.instance not in labels]
        if missing or not wanted:
            raise ExecutorError(
                f"no node labelled {INSTANCE_LABEL}={' or '.join(missing) or '<any>'} in the cluster; "
                f"instance types it reports: {reported}"
            )
        slotless = [m.instance for m in wanted if m.instance not in {n.instance for n in nodes if n.slot}]
        if slotless:
            raise ExecutorError(
                f"nodes labelled {', '.join(slotless)} have no {SLOT} resource: start them with "
                f"--resources='{{\"{SLOT}\": 1}}'"
            )
        self._gpus = {m.instance: max(n.gpus for n in nodes if n.instance == m.instance) for m in wanted}
        return [MachineTarget(m.instance, _price(m)) for m in wanted]

    def machine_info(self, target: MachineTarget, environment: dict[str, Any]) -> MachineInfo:
        return MachineInfo(
            label=str(target.key),
            instance=target.key,
            price_per_hour=target.price_per_hour,
            cpu_model=environment.get("cpu_model"),
            cores=environment.get("cores"),
            gpu=environment.get("gpu"),
            cpu_vendor=environment.get("cpu_vendor"),
            cpu_family=environment.get("cpu_family"),
            memory_gib=environment.get("memory_gib"),
            price_source=f"the cluster's node label {target.key}",
        )

    def _submit(self, instance: str, gpus: int, job: dict[str, Any], payloads: Any = None) -> Any:
        return self._task.options(
            label_selector={INSTANCE_LABEL: instance}, resources={SLOT: 1}, num_gpus=gpus
        ).remote(job, payloads)

    def prepare(
        self, requests: list[PrepareRequest], cache_dir: Path | None, on_stage: Callable[[str], None]
    ) -> Iterator[Prepared]:
        streams: TaskStreams[MachineTarget] = TaskStreams(self.ray, self._alive_types)
        config = self.config.model_dump(mode="json")
        for request in requests:
            key = str(request.target.key)
            job = {
                "kind": "evaluate",
                "config": config,
                "need_variants": request.need_variants,
                "cache_dir": str(cache_dir) if cache_dir else None,
                "expect": self._expect,
            }
            streams.add(self._submit(key, self._gpus[key], job), request.target, key)
        settled: set[str | None] = set()  # one outcome per machine: prepared, or why not
        for target, event in streams.events():
            if target.key not in settled:
                prepared = self._prepared(target, event, on_stage)
                if prepared is not None:
                    settled.add(target.key)
                    yield prepared

    def _prepared(
        self, target: MachineTarget, event: dict[str, Any], on_stage: Callable[[str], None]
    ) -> Prepared | None:
        kind = event["event"]
        if kind == "started":
            on_stage(f"{target.key}: preparing on {describe_node(event)}")
            mismatch = identity_mismatch(event, self._expect)
            return Prepared(target, error=mismatch) if mismatch else None
        if kind == "stage":
            on_stage(f"  {target.key}: {event['message']}")
        elif kind == "prepared":
            stacks = [
                StackOffer(o["name"], o["unavailable"], _backends(o["backends"])) for o in event["stacks"]
            ]
            self._libraries[str(target.key)] = event["environment"].get("libraries")
            return Prepared(target, event["environment"], event["variants"], stacks)
        elif kind in ("failed", "unscheduled", "error", "refused"):
            return Prepared(target, error=event["message"])
        return None

    def _trial_job(self, ctx: TrialContext, job: TrialJob, cache_dir: str | None) -> dict[str, Any]:
        return {
            "kind": "trial",
            "config": ctx.config.model_dump(mode="json"),
            "cache_dir": cache_dir,
            "weights": ctx.weights,
            "trial_id": job.trial_id,
            "trial": planned_trial_json(job.trial),
            "machine": job.machine.model_dump(mode="json"),
            "parity": job.parity.model_dump(mode="json") if job.parity else None,
            "accuracy": job.accuracy.model_dump(mode="json") if job.accuracy else None,
            # the node refuses the trial unless it runs the driver's code and its type's libraries
            "expect": {**self._expect, "libraries": self._libraries.get(str(job.machine.instance))},
        }

    def run_trials(
        self,
        ctx: TrialContext,
        jobs: list[TrialJob],
        store: StudyStore,
        events: TrialEvents,
    ) -> Iterator[TrialRecord]:
        payloads = self.ray.put([base64.b64encode(body).decode() for body in ctx.payloads])
        cache_dir = str(ctx.cache_dir) if ctx.cache_dir else None
        streams: TaskStreams[TrialJob] = TaskStreams(self.ray, self._alive_types)
        for job in jobs:
            instance = str(job.machine.instance)
            gpus = 0 if job.trial.candidate.device == "cpu" else 1
            streams.add(
                self._submit(instance, gpus, self._trial_job(ctx, job, cache_dir), payloads), job, instance
            )
        started: dict[str, dict[str, Any]] = {}
        for job, event in streams.events(ctx.stop):
            record = self._on_event(ctx, job, event, started, store.log_path, events)
            if record is not None:
                yield record

    def _on_event(
        self,
        ctx: TrialContext,
        job: TrialJob,
        event: dict[str, Any],
        started: dict[str, dict[str, Any]],
        log_path: Callable[[str], Path],
        events: TrialEvents,
    ) -> TrialRecord | None:
        kind = event["event"]
        if kind == "started":
            started[job.trial_id] = event
            events.on_start(job, describe_node(event))
        elif kind == "stage":
            events.on_stage(f"  {job.trial_id}: {event['message']}")
        elif kind == "live":
            stats = event["stats"]
            events.on_live(LiveStats(**{**stats, "label": f"{job.machine.instance} {stats['label']}"}))
        elif kind == "record":
            log_path(job.trial_id).write_text(event.get("log", ""), encoding="utf-8")
            record = TrialRecord.model_validate(event["record"])
            return record.model_copy(update={"machine": _on_node(job.machine, started[job.trial_id])})
        elif kind in ("failed", "error") and job.trial_id in started:
            node = started[job.trial_id]
            reason = f"{describe_node(node)} failed during the trial: {event['message']}"
            machine = _on_node(job.machine, node)
            record = failed_record(ctx, job, machine, reason, node["at"], event.get("log_tail"))
            return as_lost(record, reason) if event.get("lost") else record
        elif kind in ("failed", "error", "unscheduled", "refused"):
            self.unfinished.append(f"{job.trial_id}: not run: {event['message']}")
        return None


def _backends(names: list[str] | None) -> frozenset[str] | None:
    return None if names is None else frozenset(names)


def _on_node(machine: MachineInfo, started: dict[str, Any]) -> MachineInfo:
    return machine.model_copy(
        update={
            "node_id": started["node_id"],
            "node_address": started["address"],
            "hostname": started["hostname"],
        }
    )
