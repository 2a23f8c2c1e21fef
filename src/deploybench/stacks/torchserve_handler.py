"""The TorchServe handler inside every .mar deploybench builds: THE reference preprocessing, one batched run.

TorchServe loads this file in each of its Python workers. It decodes every request of the batch with
deploybench.inputs.payload (the same preprocessing as deploybench's server), runs the model once on the
whole batch and answers each request with the same top-5 JSON as deploybench's server. A bad image
fails only its own request (400). The module defines exactly one class: TorchServe's rule for class
handlers. It does not subclass BaseHandler, whose import pulls in OpenVINO's torch.compile backend,
a slow import every worker start would pay.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

META_FILE = "deploybench.json"


def _onnx_runner(path: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    # lazy: ONNX Runtime loads only in TorchServe's workers that run an ONNX model
    from deploybench.backends.onnxruntime_backend import ort_session

    session = ort_session(path, threads, ["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def _torch_runner(path: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    torch.set_num_threads(threads)
    if path.endswith(".pt"):  # frozen TorchScript, optimised here as the torchscript backend does
        module = torch.jit.optimize_for_inference(torch.jit.load(path, map_location="cpu"))
    else:
        module = torch.load(path, map_location="cpu", weights_only=False)  # our own pickled module
    module.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(batch)).float().numpy()

    return run


class DeploybenchVisionHandler:
    """initialize() once per worker, then handle() per batch TorchServe forms."""

    def __init__(self) -> None:
        self.initialized = False
        self.meta: dict[str, Any] = {}
        self.run: Callable[[np.ndarray], np.ndarray] | None = None

    def initialize(self, context: Any) -> None:
        model_dir = context.system_properties["model_dir"]
        with open(os.path.join(model_dir, META_FILE), encoding="utf-8") as file:
            self.meta = json.load(file)
        path = os.path.join(model_dir, context.manifest["model"]["serializedFile"])
        threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
        self.run = _onnx_runner(path, threads) if path.endswith(".onnx") else _torch_runner(path, threads)
        self.run(np.zeros((1, *self.meta["input_shape"]), dtype=np.float32))  # warm-up before READY
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        # lazy: TorchServe imports this file in its frontend's model check too; decode only in workers
        from deploybench.inputs.payload import PayloadError, preprocess
        from deploybench.sagemaker.codecs import top_k_json

        batch = np.empty((len(data), *self.meta["input_shape"]), dtype=np.float32)
        answers: list[bytes] = [b""] * len(data)
        accepted: list[int] = []
        for index, row in enumerate(data):
            body = row.get("data") or row.get("body") or b""
            try:
                preprocess(bytes(body), batch[len(accepted)])
                accepted.append(index)
            except PayloadError as exc:
                answers[index] = json.dumps({"error": str(exc), "status": 400}).encode()
                context.set_response_status(400, str(exc), index)
        if accepted and self.run is not None:
            logits = self.run(batch[: len(accepted)])
            for row, index in enumerate(accepted):
                answers[index] = top_k_json(logits[row], self.meta.get("labels"), self.meta.get("top_k", 5))
        for index in range(len(data)):
            context.set_response_content_type(index, "application/json")
        return answers
