"""A pending review's handle keeps its final verdict even if it arrives before anyone waits."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, cast

import pytest

from producers import PendingVerdict, ReviewPending
from producers.reply_router import ReplyRouter
from producers.verdicts import Verdict


@dataclass
class FakeVerdict:
    action_id: str
    pending_review: bool
    raw: bytes = b""
    review_id: str = "rv-1"
    reason: str = "waiting"


class Router:
    """Like ReplyRouter: hands out the follow-up until the final verdict arrives, then forgets it."""

    def __init__(self) -> None:
        self.future: Future[bytes] | None = Future()

    def follow(self, correlation_id: str) -> Future[bytes] | None:
        return self.future

    def deliver(self, raw: bytes) -> None:
        assert self.future is not None
        future, self.future = self.future, None  # the router pops the entry as it answers
        future.set_result(raw)


def _handle(router: Router) -> PendingVerdict:
    first = cast(Verdict, FakeVerdict("a1", True))
    return PendingVerdict({"correlation_id": "c1", "action_id": "a1"}, first, cast(ReplyRouter, router),
                          lambda raw: cast(Verdict, FakeVerdict("a1", False, raw)))


def test_final_verdict_that_arrived_before_wait_is_returned() -> None:
    router = Router()
    handle = _handle(router)
    router.deliver(b"final")  # a fast approval: answered before the caller waits
    final: Any = handle.wait(1)
    assert final.raw == b"final" and handle.done


def test_final_verdict_that_arrived_before_poll_is_returned() -> None:
    router = Router()
    handle = _handle(router)
    assert handle.poll() is None
    router.deliver(b"final")
    final: Any = handle.poll()
    assert final is not None and final.raw == b"final"


def test_a_timed_out_await_does_not_cancel_the_follow_up() -> None:
    router = Router()
    handle = _handle(router)

    async def scenario() -> Any:
        with pytest.raises(ReviewPending):
            await handle.await_(0.01)
        asyncio.get_running_loop().call_later(0.01, router.deliver, b"final")
        return await handle.await_(5)

    assert asyncio.run(scenario()).raw == b"final"
