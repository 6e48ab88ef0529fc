"""Errors of the decision path (every one stops the guarded body: fail-closed), and of recording."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockgate.kernel.errors import LockgateError

if TYPE_CHECKING:
    from producers.verdicts import Verdict

__all__ = [
    "ActionBlocked",
    "GuardError",
    "GuardOverloaded",
    "GuardUnavailable",
    "ReviewPending",
    "SpoolError",
    "VerdictMisbound",
    "VerdictRejected",
    "VerdictTimeout",
]


class GuardError(LockgateError):
    """The action may not proceed. The guarded code did not run."""


class ActionBlocked(GuardError):
    """A valid, signed verdict blocked the action. ``verdict`` carries the rules and reason."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        rules = ", ".join(r.id for r in verdict.enforced_rules) or "no rule (policy default)"
        super().__init__(f"action {verdict.action_id} blocked by {rules}: {verdict.reason}")


class ReviewPending(GuardError):
    """The action waits for reviewers and no final verdict came in the time given.

    ``verdict`` is the signed pending verdict (its ``review_id`` names the review);
    ``handle`` (a :class:`producers.pending.PendingVerdict`) can be waited on or polled again.
    """

    def __init__(self, verdict: Verdict, handle: object, waited_s: float) -> None:
        self.verdict = verdict
        self.handle = handle
        super().__init__(f"action {verdict.action_id} is waiting for review {verdict.review_id} "
                         f"(no final verdict within {waited_s:.3g}s); the action did not run. {verdict.reason}")


class VerdictTimeout(GuardError):
    """No verdict arrived in time; the processor may be down or overloaded."""


class VerdictRejected(GuardError):
    """A verdict arrived but cannot be trusted: unsigned, forged, unknown key, or for another action."""


class VerdictMisbound(VerdictRejected):
    """A validly signed verdict that does not commit to the proposal this Guard sent: its
    ``proposal_sha256`` differs (a verdict made for another proposal under the same action
    id — a leaked processor key, or a replay), or an allow commits to none at all."""


class GuardUnavailable(GuardError):
    """The proposed action could not be published (broker unreachable, queue full)."""


class GuardOverloaded(GuardUnavailable):
    """This Guard already has ``max_in_flight`` requests waiting for verdicts and no slot
    freed up in time (``when_full="wait"``: within the request's timeout; ``"fail"``: at
    once). Nothing was published; the action did not run. Retry later or raise the bound."""


class SpoolError(LockgateError):
    """An outcome could be neither confirmed by Kafka nor written to the local spool.

    Not a :class:`GuardError`: the guarded code has already run. The message names the
    outcome, the spool directory and the cause (typically space or permissions).
    """
