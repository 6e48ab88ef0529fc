"""Bound blocking client calls that promise a timeout but may not keep it.

librdkafka's transactional API takes a timeout, yet some of its calls can block forever:
``send_offsets_to_transaction`` waits for the consumer group's coordinator, and when that
coordinator's broker dies and drops out of the cluster metadata, the request is only
re-examined on the next broker state change in the client (librdkafka issues #5456 and
#5511, open at 2.16). A stage thread stuck like that never returns to its loop, so nothing
it owns makes progress and nothing says why.

:class:`CallWatchdog` watches such calls from a thread of its own: code wraps each call in
``with watchdog.bounded(name, limit_s):`` and, when a call is still running ``limit_s``
after it started, the watchdog calls ``on_overrun`` with a description (the processor
crashes the worker: a fresh process resumes from committed state). The watchdog never
interrupts a call that returns in time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["CallWatchdog"]


class CallWatchdog:
    """One watched call at a time (the stage's thread is sequential)."""

    def __init__(self, on_overrun: Callable[[str], None], *, check_every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._on_overrun = on_overrun
        self._check_every_s = check_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._current: tuple[str, float, float] | None = None  # (name, started, limit_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lockgate-call-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._check_every_s * 2)

    @contextmanager
    def bounded(self, name: str, limit_s: float) -> Iterator[None]:
        """Watch the call made inside the block; it overruns after ``limit_s`` seconds."""
        with self._lock:
            self._current = (name, self._clock(), limit_s)
        try:
            yield
        finally:
            with self._lock:
                self._current = None

    def overrun(self) -> str | None:
        """The description of the watched call if it has run past its limit, else ``None``."""
        with self._lock:
            current = self._current
        if current is None:
            return None
        name, started, limit_s = current
        ran = self._clock() - started
        if ran <= limit_s:
            return None
        return f"{name} still blocked after {ran:.0f}s (limit {limit_s:.0f}s)"

    def _run(self) -> None:
        while not self._stop.wait(self._check_every_s):
            found = self.overrun()
            if found is not None:
                self._on_overrun(found)
                return
