"""A pending review: the handle a Guard returns while an action waits for reviewers.

A proposal matched by a review rule gets a signed verdict with decision ``review``; the
final verdict (allow ``review_approved``; block ``review_denied`` or ``review_expired``)
follows on the same reply partition and correlation id once reviewers decided or the
review expired. :class:`PendingVerdict` waits for it (:meth:`~PendingVerdict.wait`,
:meth:`~PendingVerdict.await_`) or checks without waiting (:meth:`~PendingVerdict.poll`),
as often as the caller likes, while its Guard is open. Every verdict it hands back was
verified like any other (:func:`producers.verdicts.accept_verdict`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

from producers.errors import ReviewPending, VerdictRejected
from producers.reply_router import ReplyRouter
from producers.verdicts import Verdict

__all__ = ["PendingVerdict"]


class PendingVerdict:
    """The pending verdict of one action and the way to its final one."""

    def __init__(self, proposal: dict[str, Any], verdict: Verdict, router: ReplyRouter,
                 settle: Callable[[bytes], Verdict]) -> None:
        self.proposal = proposal
        self.verdict = verdict
        self._router = router
        self._settle = settle
        # Hold the follow-up now: the router lets go of it once the final verdict arrives,
        # which may be before anyone waits or polls (a fast approval).
        self._followed = router.follow(str(proposal["correlation_id"])) if verdict.pending_review else None

    @property
    def action_id(self) -> str:
        return self.verdict.action_id

    @property
    def review_id(self) -> str | None:
        return self.verdict.review_id

    @property
    def done(self) -> bool:
        return not self.verdict.pending_review

    def _future(self) -> concurrent.futures.Future[bytes]:
        future = self._followed or self._router.follow(str(self.proposal["correlation_id"]))
        self._followed = future
        if future is None:
            raise VerdictRejected(f"action {self.action_id}: nothing awaits its final verdict any more "
                                  "(the Guard forgot it or was closed)")
        return future

    def _take(self, raw: bytes) -> Verdict:
        self.verdict = self._settle(raw)
        self._followed = None
        return self.verdict

    def poll(self) -> Verdict | None:
        """The final verdict if it has arrived, else ``None``; never waits."""
        while not self.done:
            future = self._future()
            if not future.done():
                return None
            self._take(future.result())
        return self.verdict

    def wait(self, timeout_s: float) -> Verdict:
        """The final verdict, waiting up to ``timeout_s``; :class:`ReviewPending` if it does not come."""
        deadline = time.monotonic() + timeout_s
        while not self.done:
            try:
                raw = self._future().result(timeout=max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                raise ReviewPending(self.verdict, self, timeout_s) from None
            self._take(raw)
        return self.verdict

    async def await_(self, timeout_s: float) -> Verdict:
        """Like :meth:`wait`, without blocking the event loop."""
        deadline = time.monotonic() + timeout_s
        while not self.done:
            try:
                # shield: a timed-out wait must not cancel the follow-up a later wait needs
                raw = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self._future())),
                                             max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise ReviewPending(self.verdict, self, timeout_s) from None
            self._take(raw)
        return self.verdict
