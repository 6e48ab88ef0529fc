"""The decide stage's review hook: hold, refuse for want of a reason, or break the glass.

:func:`hold_for_review` takes the policy's :class:`~processors.policy.engine.Decision`
for an authenticated action and returns what the verdict says:

* decision ``review`` → a pending verdict with a :class:`ReviewState` (review id derived
  from the action id, the rule's approvers, count, expiry and grant). A rule with
  ``require_reason`` and a proposal without ``justification`` → ``block`` instead, the
  reason saying to resubmit with one;
* decision ``review`` under a rule with ``grant: window`` whose earlier approval covers
  this proposal (``grants``, a :class:`GrantLookup`; see :mod:`trust.grants`) → ``allow``,
  basis ``review_approved``, with a ReviewState naming the granting review (``grant``
  :data:`~trust.grants.GRANT_USED`, ``expires_at`` the window's end, the granting
  approvals). ``require_reason`` still applies first: every action under such a rule says
  why. No lookup (``grants`` is ``None``, as in ``verify --decisions``), or a lookup that
  is not ready, finds no grant: the action is held (fail closed);
* ``break_glass`` asked by an actor holding one of the policy's ``break_glass_roles``,
  with a justification, over a ``block`` or ``review`` → ``allow``, basis
  ``break_glass``, a loud reason, a ``security`` event, and a post-hoc review (grant
  ``post_hoc``, approvers from the review rule that matched, else any reviewer);
* ``break_glass`` asked without the role or the justification → the decision stands
  and a ``security`` event says who tried.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any, Protocol

from processors.policy.engine import Decision
from trust.grants import GRANT_USED, Grant, GrantTerms
from trust.reviewers import ANY_GROUP
from trust.reviews import POST_HOC

__all__ = ["BREAK_GLASS_RULE", "POST_HOC_REVIEW_S", "GrantLookup", "Held", "hold_for_review", "review_id_for"]


class GrantLookup(Protocol):
    """Finds the grant covering a proposal (:class:`processors.reviews.grants.GrantIndex`)."""

    def find(self, proposal: dict[str, Any], terms: GrantTerms, now_us: int) -> Grant | None: ...

BREAK_GLASS_RULE = "break-glass"
POST_HOC_REVIEW_S = 30 * 24 * 3600
"""How long a break-glass action's post-hoc review stays open for votes (30 days)."""

_REVIEW_NAMESPACE = uuid.UUID("0b3c6a52-6f7e-5a0e-8f4e-7f2d2b9e51c3")


def review_id_for(action_id: str) -> str:
    """A review's id: derived from its action's, so deciding again yields the same review."""
    return "rv-" + uuid.uuid5(_REVIEW_NAMESPACE, action_id).hex[:16]


@dataclass(frozen=True)
class Held:
    """The decision as the verdict states it, its review state, and a security note."""

    decision: Decision
    review: dict[str, Any] | None = None
    security: str | None = None


def _state(action_id: str, rule_id: str, rule: dict[str, Any], expires_at: int, grant: str) -> dict[str, Any]:
    return {
        "review_id": review_id_for(action_id),
        "rule_id": rule_id,
        "approver_groups": list(rule.get("approvers") or [ANY_GROUP]),
        "min_approvals": int(rule.get("min_approvals", 1)),
        "require_reason": bool(rule.get("require_reason", False)),
        "expires_at": expires_at,
        "grant": grant,
        "approvals": [],
    }


def hold_for_review(rec: dict[str, Any], decision: Decision, now_us: int,
                    grants: GrantLookup | None = None) -> Held:
    """See the module docstring. ``rec`` is the decoded ProposedAction."""
    justification = (rec.get("justification") or "").strip()
    actor = rec["actor"]
    if rec.get("break_glass") and decision.decision in ("block", "review"):
        roles = sorted(set(actor.get("roles") or []) & set(decision.break_glass_roles))
        if not roles or not justification:
            missing = "a break-glass role" if not roles else "a justification"
            return replace(_pending(rec, decision, now_us),
                           security=(f"break-glass refused for actor {actor['id']!r}: no {missing} "
                                     f"(policy roles: {', '.join(decision.break_glass_roles) or 'none'})"))
        rule = decision.review[1] if decision.review else {"approvers": [ANY_GROUP], "min_approvals": 1}
        rule_id = decision.review[0] if decision.review else BREAK_GLASS_RULE
        overridden = f"{decision.decision} ({decision.reason})"
        loud = (f"BREAK-GLASS: actor {actor['id']!r} (role {roles[0]}) overrode {overridden}; "
                f"justification: {justification}; this action is queued for post-hoc review")
        held = replace(decision, decision="allow", basis="break_glass", reason=loud)
        state = _state(rec["action_id"], rule_id, rule, now_us + POST_HOC_REVIEW_S * 1_000_000, POST_HOC)
        return Held(held, state, security=loud)
    return _pending(rec, decision, now_us, grants)


def _pending(rec: dict[str, Any], decision: Decision, now_us: int, grants: GrantLookup | None = None) -> Held:
    if decision.decision != "review" or decision.review is None:
        return Held(decision)
    rule_id, rule = decision.review
    if rule.get("require_reason") and not (rec.get("justification") or "").strip():
        return Held(replace(decision, decision="block", reason=(
            f"rule {rule_id} holds this action for review and requires a justification; none was given. "
            "Resubmit with one (Guard: justification=..., CLI: --justification TEXT)")))
    terms = GrantTerms.of_rule(rule_id, rule)
    grant = grants.find(rec, terms, now_us) if grants is not None and terms is not None else None
    if grant is not None and terms is not None:
        return _granted(decision, grant, terms)
    expires = now_us + int(rule.get("expires_after_s", 3600)) * 1_000_000
    state = _state(rec["action_id"], rule_id, rule, expires, str(rule.get("grant", "action")))
    reason = (f"{decision.reason}; waiting for {state['min_approvals']} approval(s) from "
              f"{', '.join(state['approver_groups'])} (review {state['review_id']})")
    return Held(replace(decision, reason=reason), state)


def _granted(decision: Decision, grant: Grant, terms: GrantTerms) -> Held:
    """Allowed by ``grant``: the verdict names the granting review and carries its approvals."""
    until = grant.expires_at(terms)
    state = {**grant.state, "expires_at": until, "grant": GRANT_USED}
    reason = (f"{decision.reason}; allowed by the time-boxed grant of review {grant.review_id} (action "
              f"{grant.action_id}, approved at {grant.approved_at} µs) for {grant.actor!r} {grant.type} on "
              f"{terms.prefix}*, valid until {until} µs")
    return Held(replace(decision, decision="allow", basis="review_approved", reason=reason), state)
