"""The LitServe server of the `litserve` stack: any deploybench variant inside a LitAPI, on 127.0.0.1.

LitServe's own request shape is JSON: {"image": "<base64 bytes>"} in, deploybench's top-5 JSON out.
Each LitServe inference worker builds the variant with build_variant (as deploybench's workers do),
decodes with THE reference preprocessing, and runs whole batches when max_batch_size > 1.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np

TOP_K = 5


class VisionAPI(ls.LitAPI):
    """setup() once per worker; decode_request per request; predict per (batched) input."""

    def __init__(self, spec_json: str, backend: str, threads: int, cache_dir: str | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.spec_json, self.backend, self.threads, self.cache_dir = spec_json, backend, threads, cache_dir
        self.variant: Any = None
        self.labels: list[str] | None = None

    def setup(self, device: str) -> None:
        # lazy: torch loads in LitServe's inference workers, not in its front
        from deploybench.backends.build import build_variant, example_batch
        from deploybench.config import ModelSpec

        spec = ModelSpec.model_validate_json(self.spec_json)
        cache = Path(self.cache_dir) if self.cache_dir else None
        self.variant, loaded = build_variant(spec, self.backend, threads=self.threads, cache_dir=cache)
        self.labels = loaded.labels
        for size in (1, 1, self.max_batch_size):
            self.variant.predict(example_batch(loaded, size))

    def decode_request(self, request, **kwargs: Any) -> np.ndarray:  # type: ignore[no-untyped-def]
        """`request` stays unannotated: LitServe reads the annotation to pick the request type (JSON)."""
        from fastapi import HTTPException

        # lazy: in LitServe's inference workers only
        from deploybench.inputs.payload import PayloadError, preprocess

        try:
            return preprocess(base64.b64decode(request["image"], validate=True))
        except (KeyError, TypeError, binascii.Error, PayloadError) as exc:
            raise HTTPException(status_code=400, detail=f"expected {{'image': base64 image}}: {exc}") from exc

    def predict(self, x: np.ndarray, **kwargs: Any) -> np.ndarray:
        logits = self.variant.predict(x if x.ndim == 4 else x[None])
        return logits if x.ndim == 4 else logits[0]

    def encode_response(self, output: np.ndarray, **kwargs: Any) -> dict[str, Any]:
        # lazy: in LitServe's inference workers only
        from deploybench.sagemaker.codecs import top_k_json

        return json.loads(top_k_json(output, self.labels, TOP_K))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-json", required=True, help="deploybench ModelSpec as JSON")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers-per-device", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--batch-timeout", type=float, default=0.0, help="seconds")
    parser.add_argument("--cache-dir", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    api = VisionAPI(
        args.model_json, args.backend, args.threads, args.cache_dir,
        max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout,
    )  # fmt: skip
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=args.workers_per_device)
    server.run(
        host="127.0.0.1", port=args.port, num_api_servers=1, log_level="warning", generate_client_file=False
    )


if __name__ == "__main__":
    main()
