"""Imported first by the load workers' fork server (load.runner preloads it): the fork server exits
with the process that started it.

Without it the fork server lives until every holder of its "alive" pipe has gone, and any process
forked from the study after the fork server started holds that pipe too: a study killed with
SIGKILL once left its fork server and a load worker running (see load.runner). The study names
itself in FORKSERVER_STARTER_ENV before each start; only a process whose parent is that study asks for the
signal, so importing this anywhere else does nothing.
"""

from __future__ import annotations

import os
import signal

from deploybench.lifetime import FORKSERVER_STARTER_ENV, die_with_parent

if os.environ.get(FORKSERVER_STARTER_ENV) == str(os.getppid()):
    die_with_parent(signal.SIGKILL)
