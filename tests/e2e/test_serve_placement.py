"""Core placement and in-flight batches behind a real server: what /proc says, not what we claim."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers.serve_support import SMALL_MODEL, distinct_jpegs, npy, request, start_server

from deploybench.backends.build import build_variant
from deploybench.config import ModelSpec
from deploybench.inputs.payload import preprocess

pytestmark = pytest.mark.slow
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def thread_masks(pid: int) -> set[str]:
    """Cpus_allowed_list of every thread of a process, read from /proc."""
    masks = set()
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                masks.add(line.split(":", 1)[1].strip())
    return masks


@pytest.mark.skipif(CORES < 2, reason="needs two cores to place two workers apart")
def test_two_one_thread_workers_run_every_thread_on_their_own_core(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    args = ["--model", SMALL_MODEL, "--weights", "random", "--backend", "onnxruntime"]
    server = start_server(tmp_path / "s", *args, "--workers", "2", "--threads", "1", "--json", str(ready))
    try:
        info = json.loads(ready.read_text())
        masks = [thread_masks(worker["pid"]) for worker in info["workers"]]
        assert all(len(m) == 1 and "," not in next(iter(m)) and "-" not in next(iter(m)) for m in masks), (
            masks
        )
        assert masks[0] != masks[1], "both workers' threads share a core"
        for worker, mask in zip(info["workers"], masks, strict=True):
            assert {str(c) for c in worker["cores"]} == mask
            assert worker["runtime_settings"]["intra_op_num_threads"] == 1
        assert request(f"{server.url}/ping")[0] == 200
    finally:
        server.stop()


def test_openvino_streams_run_batches_in_flight_and_each_answer_is_its_own(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    args = [
        "--model",
        SMALL_MODEL,
        "--weights",
        "random",
        "--backend",
        "openvino",
        "--cache-dir",
        str(tmp_path),
    ]
    knobs = ["--workers", "1", "--threads", "2", "--streams", "2", "--overlap", "--json", str(ready)]
    server = start_server(tmp_path / "s", *args, *knobs)
    try:
        worker = json.loads(ready.read_text())["workers"][0]
        assert worker["inflight"] == 3
        settings = worker["runtime_settings"]
        assert (settings["NUM_STREAMS"], settings["PERFORMANCE_HINT"]) == ("2", "THROUGHPUT")
        assert settings["ENABLE_CPU_PINNING"] == "False"
        bodies = distinct_jpegs(24)
        headers = {"Content-Type": "image/jpeg", "Accept": "application/x-npy"}
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda b: request(f"{server.url}/invocations", b, headers), bodies))
    finally:
        server.stop()
    variant, _ = build_variant(
        ModelSpec(source=SMALL_MODEL, weights="random"), "openvino", threads=1, cache_dir=tmp_path
    )
    for body, (status, _, answer) in zip(bodies, answers, strict=True):
        assert status == 200
        expected = variant.predict(preprocess(body)[None])[0]
        np.testing.assert_allclose(npy(answer).reshape(-1), expected, rtol=1e-3, atol=1e-3)
