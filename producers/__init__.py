"""The Lockgate producer SDK: ask before acting.

Public API (kept small on purpose; ``tests/unit/producers/test_public_api.py`` pins it)::

    Guard, AsyncGuard          sync and asyncio clients
    Action, Actor              what is proposed, and by whom
    GuardedAction              the handle inside ``with guard.action(...)``
    Verdict, MatchedRule       a verified decision
    GuardSettings              configuration (arguments or LOCKGATE_* env)
    PendingVerdict             an action held for review: wait for or poll its final verdict
    GuardError and subclasses  ActionBlocked, VerdictTimeout, VerdictRejected (VerdictMisbound),
                               GuardUnavailable, ReviewPending, GuardOverloaded (more than
                               max_in_flight requests waiting)
    SpoolError                 an outcome could be neither confirmed by Kafka nor spooled
"""

from producers.errors import (
    ActionBlocked,
    GuardError,
    GuardOverloaded,
    GuardUnavailable,
    ReviewPending,
    SpoolError,
    VerdictMisbound,
    VerdictRejected,
    VerdictTimeout,
)
from producers.guard import Action, Actor, AsyncGuard, Guard, GuardedAction
from producers.pending import PendingVerdict
from producers.settings import GuardSettings
from producers.verdicts import MatchedRule, Verdict

__all__ = [
    "Action",
    "ActionBlocked",
    "Actor",
    "AsyncGuard",
    "Guard",
    "GuardError",
    "GuardOverloaded",
    "GuardSettings",
    "GuardUnavailable",
    "GuardedAction",
    "MatchedRule",
    "PendingVerdict",
    "ReviewPending",
    "SpoolError",
    "Verdict",
    "VerdictMisbound",
    "VerdictRejected",
    "VerdictTimeout",
]
