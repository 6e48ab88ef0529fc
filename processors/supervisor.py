"""Keep one worker process running: restart it from committed state when it exits on its own.

The worker exits hard on purpose when it cannot keep a guarantee (Kafka refused an output it
must not lose, the ledger stage was fenced or broke): an input must never count as processed
while one of its outputs is missing, so the only safe recovery is a fresh process that
resumes from committed offsets. Something must start that process again, or one broker
restart would stop deciding for good; ``python -m processors.worker`` is that something.

Contract:

* The supervisor runs the worker as a child (``LOCKGATE_WORKER_CHILD=1``) and restarts it
  whenever it exits while the supervisor was not asked to stop, with a backoff that doubles
  from 0.5 s up to 30 s and resets after a child has run for a minute.
* Exit status 2 (bad configuration: a missing key, invalid settings) is final: restarting
  cannot fix it; the supervisor exits 2 too.
* SIGTERM/SIGINT to the supervisor (``lockgate down``) go to the child, and the supervisor
  exits with the child's status. The child is tied to the supervisor's life
  (``PR_SET_PDEATHSIG``): a kill -9 of the supervisor takes the worker with it, so a pid
  file never names a process whose worker lives on unseen.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

__all__ = ["CHILD_ENV", "CONFIG_ERROR", "supervise"]

CHILD_ENV = "LOCKGATE_WORKER_CHILD"
CONFIG_ERROR = 2
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("lockgate.supervisor")


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def supervise(command: Sequence[str], *, sleep: Callable[[float], None] = time.sleep,
              max_backoff_s: float = 30.0, healthy_after_s: float = 60.0) -> int:
    """Run ``command`` as the worker child until asked to stop; returns the exit status."""
    stop = threading.Event()  # set by the signal handler
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    env = {**os.environ, CHILD_ENV: "1"}
    backoff = 0.5
    while True:
        started = time.monotonic()
        child = subprocess.Popen(list(command), env=env, preexec_fn=_die_with_parent)  # noqa: PLW1509
        code = child.wait()
        if stop.is_set():
            return code
        if code == CONFIG_ERROR:
            log.critical("worker exited with status %d (configuration); not restarting", code)
            return code
        if time.monotonic() - started >= healthy_after_s:
            backoff = 0.5
        log.warning("worker exited with status %d; restarting it from committed state in %.1fs", code, backoff)
        print(f"lockgate processor: worker exited with status {code}; restarting in {backoff:.1f}s",
              file=sys.stderr, flush=True)
        sleep(backoff)
        if stop.is_set():
            return code
        backoff = min(max_backoff_s, backoff * 2)
