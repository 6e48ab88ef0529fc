"""The Guard's bound on requests in flight: wait or fail fast, typed, and never leak a slot."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from producers import GuardOverloaded, GuardUnavailable
from producers.guard import _Slots


def test_fail_mode_refuses_at_once_over_the_bound() -> None:
    slots = _Slots(2, wait=False)
    slots.acquire(5.0)
    slots.acquire(5.0)
    started = time.monotonic()
    with pytest.raises(GuardOverloaded, match="2 requests waiting") as err:
        slots.acquire(5.0)
    assert time.monotonic() - started < 1.0  # did not wait for the 5 s
    assert isinstance(err.value, GuardUnavailable)  # callers catching GuardUnavailable keep working
    slots.release()
    slots.acquire(5.0)  # a released slot is usable again


def test_wait_mode_takes_the_slot_another_request_frees() -> None:
    slots = _Slots(1, wait=True)
    slots.acquire(1.0)
    freed = threading.Event()

    def free_later() -> None:
        freed.wait(5)
        slots.release()

    t = threading.Thread(target=free_later)
    t.start()
    freed.set()
    slots.acquire(5.0)
    t.join()


def test_wait_mode_gives_up_after_the_timeout() -> None:
    slots = _Slots(1, wait=True)
    slots.acquire(1.0)
    with pytest.raises(GuardOverloaded, match=r"no slot freed within 0\.05s"):
        slots.acquire(0.05)


def test_async_wait_does_not_block_the_loop() -> None:
    slots = _Slots(1, wait=True)
    slots.acquire(1.0)

    async def run() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        ticker = asyncio.ensure_future(tick())
        waiter = asyncio.ensure_future(slots.aacquire(5.0))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        slots.release()
        await asyncio.wait_for(waiter, 5)
        ticker.cancel()
        return ticks

    assert asyncio.run(run()) > 5


def test_releasing_more_than_acquired_is_an_error() -> None:
    slots = _Slots(1, wait=False)
    with pytest.raises(ValueError):
        slots.release()
