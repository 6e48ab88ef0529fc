"""Exit the worker at once, like a crash, so the supervisor restarts it from committed state.

Used where carrying on would break a guarantee (an input would count as processed while one
of its outputs is missing) or where a thread is stuck in a client library call that cannot
be interrupted. :mod:`processors.supervisor` starts a fresh worker, which resumes from what
Kafka committed; nothing in memory is trusted across the restart.
"""

from __future__ import annotations

import logging
import os

__all__ = ["CRASH_STATUS", "crash_worker"]

CRASH_STATUS = 70  # EX_SOFTWARE: not a configuration error, so the supervisor restarts the worker

log = logging.getLogger("lockgate.processor")


def crash_worker(reason: str) -> None:
    """Log ``reason`` and exit the process at once (no cleanup, no Faust commit)."""
    log.critical("%s; exiting so the worker restarts from committed state", reason)
    logging.shutdown()
    os._exit(CRASH_STATUS)
