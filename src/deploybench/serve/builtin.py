"""What a worker runs per batch for the built-in vision pipeline: one batched predict call.

A user's inference.py runs through serve/user.py instead; its contract lives in sagemaker/contract.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploybench.config import Decoder
from deploybench.sagemaker import codecs
from deploybench.serve.protocol import WorkItem, WorkResult, error_result


@dataclass
class VisionModel:
    """The built-in model: a backend variant plus what the output encoders need."""

    variant: Any  # deploybench.backends.base.Variant (kept untyped: this module stays torch-free)
    labels: list[str] | None
    input_shape: tuple[int, int, int]
    top_k: int = 5
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.variant.predict(batch)


class BuiltinPipeline:
    """Decode every request of the batch into one preallocated array, run ONE predict, split the rows."""

    def __init__(
        self, model: VisionModel, max_batch_size: int, debug: bool, decoder: Decoder = "pillow"
    ) -> None:
        self.model = model
        self.debug = debug
        self.decoder = decoder  # RuntimeKnobs.decoder: who decodes and resizes image bodies
        self.buffer = np.empty((max_batch_size, *model.input_shape), dtype=np.float32)

    def run(self, items: list[WorkItem]) -> list[WorkResult]:
        results: dict[int, WorkResult] = {}
        accepted: list[tuple[WorkItem, float, float]] = []
        for item in items:
            try:
                decode_s, prep_s = codecs.decode_into(
                    item.body, item.content_type, self.buffer[len(accepted)], self.decoder
                )
            except Exception as exc:  # any failure of one body is that request's answer, never the batch's
                results[item.rid] = error_result(item.rid, exc, self.debug)
                continue
            accepted.append((item, decode_s, prep_s))
        if accepted:
            results.update(self._predict(accepted))
        return [results[item.rid] for item in items]

    def _predict(self, accepted: list[tuple[WorkItem, float, float]]) -> dict[int, WorkResult]:
        start = time.perf_counter()
        try:
            logits = self.model.predict(self.buffer[: len(accepted)])
        except Exception as exc:
            return {item.rid: error_result(item.rid, exc, self.debug) for item, _, _ in accepted}
        infer_s = time.perf_counter() - start
        out: dict[int, WorkResult] = {}
        for row, (item, decode_s, prep_s) in enumerate(accepted):
            begin = time.perf_counter()
            body = codecs.encode_output(logits[row], item.accept, self.model.labels, self.model.top_k)
            timings = (decode_s, prep_s, infer_s, time.perf_counter() - begin)
            out[item.rid] = WorkResult(item.rid, 200, body, item.accept, timings)
        return out
