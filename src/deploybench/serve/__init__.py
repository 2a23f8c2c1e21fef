"""deploybench's own SageMaker-compatible inference server: one HTTP front process, N model workers.

front (app.py, uvicorn + Starlette): HTTP, body limit, content negotiation, admission (bounded
queue, timeouts, disconnects), the request queue (batching.py) and one supervised dispatcher per
worker (pool.py). Workers (worker.py, spawned) build the variant once, warm it, then take whole
batches of raw request bytes: decode + preprocess into one preallocated array, ONE predict call,
encode each answer (builtin.py, with sagemaker/codecs.py). A user's inference.py runs with
SageMaker's contract (user.py; variant_handler.py puts a variant behind it; the contract itself is in
deploybench.sagemaker). IPC is a socketpair per worker carrying small pickled tuples (protocol.py);
placement.py pins workers to cores, inflight.py keeps several batches in flight, metrics.py counts.

Library entry point: settings.resolve_settings(...) -> ServeSettings; app.run_server(settings,
on_ready) blocks until SIGTERM/SIGINT (drains first) and raises app.ServerStartError when a worker
cannot load its model. Kept import-light on purpose: worker processes are spawned and re-import
this package.
"""
