"""The SageMaker-compatible inference server: one HTTP front process, N model worker processes.

front (app.py, uvicorn + Starlette): HTTP, body limit, content negotiation, admission (bounded
queue, timeouts, disconnects), the request queue (batching.py) and one supervised dispatcher per
worker (workers.py). Workers (worker.py, spawned) build the variant once, warm it, then take whole
batches of raw request bytes: decode + preprocess into one preallocated array, ONE predict call,
encode each answer (handlers.py, vision.py). A user's inference.py runs with SageMaker's contract
(user.py; toolkit.py for the PyTorch toolkit's defaults, context.py for TorchServe's context,
requirements.py for code/requirements.txt). errors.py builds every error body. IPC is a
socketpair per worker carrying small pickled tuples (protocol.py). archive.py unpacks model.tar.gz.

Library entry point: settings.resolve_settings(...) -> ServeSettings; app.run_server(settings,
on_ready) blocks until SIGTERM/SIGINT (drains first) and raises app.ServerStartError when a worker
cannot load its model. Kept import-light on purpose: worker processes are spawned and re-import
this package.
"""
