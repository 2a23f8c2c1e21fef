"""A child process that does not outlive its parent (Linux's parent-death signal).

A study killed with SIGKILL cannot clean up: each process it starts (a server, a server's worker, a
load worker) asks the kernel for a signal when its parent dies, so none keeps taking CPU from later
measurements. libc's prctl is bound at import, in the parent: a preexec_fn runs after fork, where
loading a library is unsafe.
"""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1
# The pid of the process starting a load fork server, for load.forkserver_guard to read there.
FORKSERVER_STARTER_ENV = "DEPLOYBENCH_FORKSERVER_STARTER"


def _load_prctl() -> object | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux/glibc: nothing to bind, nothing promised
        return None


_PRCTL = _load_prctl()


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Get `sig` when the parent dies (kill -9 included); if it already died, raise it now.

    The check after prctl closes the race where the parent dies before the call: the process was
    then re-parented and would never get the signal.
    """
    if _PRCTL is None:
        return
    parent = os.getppid()
    _PRCTL(_PR_SET_PDEATHSIG, sig)  # type: ignore[operator]
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
