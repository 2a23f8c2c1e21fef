"""The PyTriton server of the `triton` stack: one ONNX model behind Triton's KServe v2 HTTP API, CPU only.

Runs as a script in PyTriton's own virtual environment (numpy < 2), with deploybench's source on
PYTHONPATH for THE reference preprocessing only (deploybench.inputs.payload needs numpy and Pillow). Each
Triton model instance is one inference callable with its own ONNX Runtime session; Triton's dynamic
batcher forms the batches. The input is one BYTES element per request (the encoded image), the
output the logits, which Triton's classification extension turns into top-k on request.
"""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

import numpy as np

INPUT, OUTPUT = "image", "logits"
# Token-protected as PyTriton does by default, except statistics: deploybench reads the batch sizes.
PROTECTED = ["shared-memory", "model-repository", "trace", "logging"]
LOAD_ATTEMPTS = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--model-name", default="model")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--max-queue-delay-us", type=int, default=0)
    parser.add_argument("--input-shape", default="3,224,224")
    return parser.parse_args(argv)


def make_callable(onnx_path: str, threads: int, input_shape: tuple[int, ...]) -> Any:
    """One model instance: its own session (the same options as deploybench's onnxruntime backend)."""
    import onnxruntime as ort
    from pytriton.decorators import batch

    # lazy: imported inside PyTriton's venv once deploybench's source is on the path
    from deploybench.inputs.payload import preprocess

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: np.zeros((1, *input_shape), dtype=np.float32)})  # warm-up before ready

    @batch
    def infer(image: np.ndarray) -> dict[str, np.ndarray]:
        inputs = np.empty((len(image), *input_shape), dtype=np.float32)
        for row, element in enumerate(image):
            preprocess(bytes(element[0]), inputs[row])
        return {OUTPUT: session.run(None, {name: inputs})[0].astype(np.float32, copy=False)}

    return infer


def serve_once(args: argparse.Namespace, callables: list[Any]) -> None:
    """Start Triton, load the model, serve until SIGTERM (PyTriton removes its workspace on the way out)."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    config = TritonConfig(
        http_address="127.0.0.1", http_port=args.http_port, allow_grpc=False, allow_metrics=False,
        exit_timeout_secs=5,
    )  # fmt: skip
    model_config = ModelConfig(
        max_batch_size=args.max_batch_size,
        batcher=DynamicBatcher(max_queue_delay_microseconds=args.max_queue_delay_us),
    )
    security = TritonSecurityConfig(restricted_endpoints=PROTECTED)
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name=args.model_name,
            infer_func=callables,
            inputs=[Tensor(name=INPUT, dtype=np.bytes_, shape=(1,))],
            outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=(-1,))],
            config=model_config,
            strict=False,
        )
        print(f"pytriton: serving {args.model_name} on 127.0.0.1:{args.http_port}", flush=True)
        triton.serve()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # Triton.serve() stops cleanly on it


def main(argv: list[str] | None = None) -> None:
    """Serve; retry a failed model load: PyTriton's stub gives its handshake 1 s, which a busy machine
    with few cores sometimes misses ("Timeout occurred while waiting for config file")."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)
    shape = tuple(int(d) for d in args.input_shape.split(","))
    callables = [make_callable(args.onnx, args.threads, shape) for _ in range(args.instances)]
    for attempt in range(1, LOAD_ATTEMPTS + 1):
        try:
            serve_once(args, callables)
            return
        except KeyboardInterrupt:
            return
        except Exception as exc:  # PyTriton and tritonclient raise many types; the message is what counts
            if attempt == LOAD_ATTEMPTS:
                raise
            print(f"pytriton: attempt {attempt} failed ({type(exc).__name__}: {exc}); retrying", flush=True)


if __name__ == "__main__":
    main()
