"""How the benchmarks time a step: best of a few runs, wall-clock and CPU apart.

The best run, not the mean, because other work on a shared box only ever adds time;
CPU seconds beside wall seconds, because a step that waits on I/O is told apart that way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["best_of"]

T = TypeVar("T")


def best_of(fn: Callable[[], T], rounds: int = 3) -> tuple[float, float, T]:
    """Best wall-clock and best CPU seconds of ``rounds`` calls of ``fn``, and its last result."""
    if rounds < 1:
        raise ValueError("best_of needs at least one round")
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    for _ in range(rounds - 1):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu, result
