"""The SageMaker-compatible inference server: one HTTP front process, N model worker processes.

Kept import-light on purpose: worker processes are spawned and re-import this package.
"""
