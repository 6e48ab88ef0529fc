"""The load both kill -9 tests run: guarded actions with outcomes, many in flight.

Every fifth action is a ``DELETE`` without ``WHERE`` that the example policy blocks; the
others are allowed and record a before/after change. ``after(done)`` is called after each
action finishes (the tests start their kill from there). Returns the action ids whose body
ran, and how each action ended; ``timeline``, when given, gets ``(finished at, how it ended,
seconds until the verdict or the refusal)`` per action, in the order they finished
(``time.monotonic``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

from producers import ActionBlocked, AsyncGuard, GuardSettings, GuardUnavailable, VerdictTimeout

__all__ = ["guarded_load"]


async def guarded_load(settings: GuardSettings, actions: int, in_flight: int, after: Callable[[int], None],
                       timeline: list[tuple[float, str, float]] | None = None) -> tuple[list[str], Counter[str]]:
    executed: list[str] = []
    results: Counter[str] = Counter()
    sem = asyncio.Semaphore(in_flight)
    done = 0

    async def one(i: int, guard: AsyncGuard) -> None:
        nonlocal done
        async with sem:
            sql = "DELETE FROM orders" if i % 5 == 0 else f"UPDATE orders SET paid = 1 WHERE id = {i}"
            started = time.monotonic()
            ended, waited = "allowed", 0.0
            try:
                async with guard.action(actor=f"user{i % 7}", roles=["dba"], type="db.query",
                                        resource="db/prod/orders", attributes={"sql": sql}) as act:
                    waited = time.monotonic() - started
                    act.record_change(before={"id": i, "paid": 0}, after={"id": i, "paid": 1})
                    executed.append(act.action_id)
                results[f"allowed, outcome {act.recorded}"] += 1
            except ActionBlocked:
                results[ended := "blocked"] += 1
                waited = time.monotonic() - started
            except (VerdictTimeout, GuardUnavailable):
                results[ended := "refused: no verdict (fail-closed)"] += 1
                waited = time.monotonic() - started
            if timeline is not None:
                timeline.append((time.monotonic(), ended, waited))
            done += 1
            after(done)

    async with AsyncGuard(settings) as guard:
        await asyncio.gather(*(one(i, guard) for i in range(actions)))
    return executed, results
