"""A broker of a test's own, for tests that kill it: the session broker stays untouched.

:func:`own_stack` starts a single-node KRaft broker under a scratch ``LOCKGATE_HOME`` on
free ports (the same code path as ``lockgate up``); :func:`kill_broker` sends it SIGKILL
and reaps it; ``stack.broker.start()`` brings it back on the same ports and data.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deploy.settings import StackSettings
from deploy.stack import Stack
from tests.conftest import free_port

__all__ = ["kill_broker", "own_stack"]


@contextmanager
def own_stack(home: Path, prefix: str = "own.") -> Iterator[Stack]:
    """A running broker with the catalogue's topics under ``prefix``; stopped on exit."""
    settings = StackSettings(home=home, kafka_port=free_port(), controller_port=free_port(),
                             api_port=free_port(), processor_port=free_port(), topic_prefix=prefix,
                             kafka_heap="512m", start_processor=False, start_sink=False)
    stack = Stack(settings, progress=lambda _m: None)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def kill_broker(stack: Stack, timeout_s: float = 30.0) -> None:
    """SIGKILL the broker JVM (no shutdown hook, no flush) and wait until it is reaped."""
    proc = stack.broker.process
    pid = proc.pid()
    assert pid is not None, "the broker is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while proc.exited() is None:
        assert time.monotonic() < deadline, f"broker pid {pid} survived SIGKILL for {timeout_s}s"
        time.sleep(0.05)
    assert not proc.running()
