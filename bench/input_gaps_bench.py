"""What watching for records the consumer never handed costs the decide agent.

Times, best of ``ROUNDS``, per handed record and per timer tick, with no Kafka:

* baseline: what the agent did before :mod:`processors.input_gaps` for a record that is the
  expected one (``DecisionMemory.needs_recovery`` then ``take``, inside a coroutine);
* fast path: ``await InputGaps.handed`` then ``take``, the same records;
* stall tick: :meth:`InputGaps.check_stalls` over 12 assigned partitions that keep up (no
  read is due: the expected offset moved since the last tick).

Run: ``.venv/bin/python -m bench.input_gaps_bench [records]`` from the repository root.
Not part of the test suite.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

from lockgate.kernel.partition_reader import StoredRecord
from processors.decisions import DecisionMemory
from processors.input_gaps import InputGaps

ROUNDS = 3
PARTITIONS = 12


def _unused(*_args: object) -> int:
    raise AssertionError("the fast path must not read")


def _decide(_record: StoredRecord) -> Awaitable[None]:
    raise AssertionError("the fast path must not decide here")


async def _per_record(n: int, handed: Callable[[DecisionMemory], Callable[[int], Awaitable[bool]]]) -> float:
    """Seconds for ``n`` expected records: ``handed(memory)(offset)`` must say "decide it"."""
    memory = DecisionMemory()
    memory.recovered(0, 0, [])
    check = handed(memory)
    t = time.perf_counter()
    for offset in range(n):
        if not await check(offset):
            raise AssertionError
        memory.take(0, offset)
    return time.perf_counter() - t


def _baseline(memory: DecisionMemory) -> Callable[[int], Awaitable[bool]]:
    """Before :mod:`processors.input_gaps`: one comparison inside the agent's coroutine."""
    async def check(offset: int) -> bool:
        return not memory.needs_recovery(0, offset)
    return check


def _fast_path(memory: DecisionMemory) -> Callable[[int], Awaitable[bool]]:
    """Now: ``await InputGaps.handed``, which finds nothing skipped."""
    gaps = InputGaps(memory, _unused, _unused, _unused, _unused, _decide, print)  # type: ignore[arg-type]

    async def check(offset: int) -> bool:
        return await gaps.handed(0, offset) == []
    return check


async def _ticks(n: int) -> float:
    memory = DecisionMemory()
    for p in range(PARTITIONS):
        memory.recovered(p, 0, [])
    now = [0.0]
    gaps = InputGaps(memory, _unused, _unused, _unused, _unused, _decide, print,  # type: ignore[arg-type]
                     clock=lambda: now[0])
    gaps.assigned(range(PARTITIONS))
    t = time.perf_counter()
    for tick in range(n):
        for p in range(PARTITIONS):
            memory.take(p, tick)  # every partition moved since the last tick
        now[0] += 1.0
        await gaps.check_stalls()
    return time.perf_counter() - t


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    base = min(asyncio.run(_per_record(n, _baseline)) for _ in range(ROUNDS))
    fast = min(asyncio.run(_per_record(n, _fast_path)) for _ in range(ROUNDS))
    ticks = n // 100
    tick = min(asyncio.run(_ticks(ticks)) for _ in range(ROUNDS))
    print(f"{n} handed records, best of {ROUNDS}:")
    print(f"  baseline (needs_recovery + take):   {base / n * 1e6:.2f} µs per record")
    print(f"  fast path (await handed + take):    {fast / n * 1e6:.2f} µs per record "
          f"(+{(fast - base) / n * 1e6:.2f} µs)")
    print(f"  stall tick, {PARTITIONS} partitions keeping up: {tick / ticks * 1e6:.1f} µs per tick "
          f"(includes {PARTITIONS} takes)")


if __name__ == "__main__":
    main()
