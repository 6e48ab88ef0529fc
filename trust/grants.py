"""Time-boxed review grants: what one approval under ``grant: window`` covers, and for how long.

A review rule with ``grant: window`` (policy YAML: ``grant_window``, ``grant_resource_prefix``)
turns an **approved** review into a grant. The grant is keyed by

* the requester: the proposal's authenticated ``service`` and its actor id in canonical form
  (:func:`trust.reviewers.canonical_identity`, the form the self-approval check compares), so
  ``Bob.Smith@corp`` and ``bob.smith@corp`` are one requester, and the same person through
  another service is not;
* the action ``type``, the ``tenant`` and the review rule's id;
* the resource prefix the rule declares (``grant_resource_prefix``, always ending with ``/``):
  the approved action's own resource must start with it, else the approval grants nothing
  beyond its action;

and is valid from the approving final verdict's ``decided_at`` (the window start) to
``decided_at + grant_window`` inclusive. A later proposal with the same key, whose resource
starts with the prefix, matched by the same review rule (so a block rule still wins) and
decided inside the window, is allowed at once: its verdict has basis ``review_approved`` and
a ReviewState whose ``grant`` is :data:`GRANT_USED`, ``review_id`` the granting review,
``expires_at`` the window's end and ``approvals`` the granting review's approvals. A denied,
expired or still open review grants nothing; a break-glass (post-hoc) review grants nothing.

The window length and prefix are those of the policy version the later proposal is decided
under (its verdict's ``policy_sha256``): narrowing them, or switching the rule back to
``grant: action``, shrinks or ends every existing grant at once; so does raising the rule's
``min_approvals`` above, or narrowing its ``approvers`` below, what the granting review asked.

This module holds the pure predicate (:func:`grant_covers`) the processor applies and
``verify`` re-applies, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trust.reviewers import canonical_identity
from trust.reviews import Review, ReviewStatus

__all__ = ["GRANT_USED", "GRANT_WINDOW", "Grant", "GrantTerms", "grant_covers", "grant_from_review", "grant_of",
           "requester_of", "terms_in_policy", "under_prefix"]

GRANT_WINDOW = "window"
"""The ReviewRule / ReviewState ``grant`` of a review whose approval opens a time-boxed grant."""

GRANT_USED = "granted"
"""The ReviewState ``grant`` of a verdict allowed by an earlier review's grant (not by its own review)."""


def requester_of(proposal: dict[str, Any]) -> tuple[str, str]:
    """The grant's requester key of a ProposedAction: (service, canonical actor id)."""
    return str(proposal.get("service", "")), canonical_identity(str(proposal["actor"]["id"]))


def under_prefix(resource: str, prefix: str) -> bool:
    """Whether ``resource`` lies under ``prefix`` (a plain prefix ending with ``/``; empty covers nothing)."""
    return bool(prefix) and prefix.endswith("/") and resource.startswith(prefix) and len(resource) > len(prefix)


@dataclass(frozen=True)
class GrantTerms:
    """A review rule's grant terms in one policy version."""

    rule_id: str
    window_us: int
    prefix: str
    min_approvals: int = 1
    approvers: frozenset[str] = frozenset()  # empty: any group

    @classmethod
    def of_rule(cls, rule_id: str, review_rule: dict[str, Any] | None) -> GrantTerms | None:
        """The terms of a ReviewRule record, or ``None`` when it grants one action only."""
        if not review_rule or review_rule.get("grant") != GRANT_WINDOW:
            return None
        window_us = int(review_rule.get("grant_window_s") or 0) * 1_000_000
        prefix = str(review_rule.get("grant_resource_prefix") or "")
        if window_us <= 0 or not prefix:
            return None  # validation refuses both; a record that has them anyway grants nothing
        return cls(rule_id, window_us, prefix, max(1, int(review_rule.get("min_approvals", 1))),
                   frozenset(review_rule.get("approvers") or ()))


def terms_in_policy(policy: dict[str, Any], rule_id: str) -> GrantTerms | None:
    """The grant terms of rule ``rule_id`` in a PolicySet record (``None``: no window grant there)."""
    for rule in policy.get("rules") or []:
        if rule.get("id") == rule_id and rule.get("effect") == "review" and rule.get("mode") == "enforce":
            return GrantTerms.of_rule(rule_id, rule.get("review"))
    return None


@dataclass(frozen=True)
class Grant:
    """One approved ``grant: window`` review, as the fold of the reviews topic sees it."""

    review_id: str
    action_id: str  # the approved action's
    rule_id: str
    tenant: str
    service: str
    actor: str  # canonical identity
    type: str
    resource: str  # the approved action's
    approved_at: int  # the approving final verdict's decided_at, µs
    state: dict[str, Any]  # the approving final verdict's ReviewState (approvals included)

    def expires_at(self, terms: GrantTerms) -> int:
        return self.approved_at + terms.window_us

    def summary(self, terms: GrantTerms | None = None) -> dict[str, Any]:
        """JSON-safe view for ``lockgate reviews grants`` and the worker's ``/grants`` page."""
        out: dict[str, Any] = {
            "review_id": self.review_id, "action_id": self.action_id, "rule_id": self.rule_id,
            "tenant": self.tenant, "service": self.service, "actor": self.actor, "type": self.type,
            "resource": self.resource, "approved_at_us": self.approved_at,
            "approvals": len(self.state.get("approvals") or []),
        }
        if terms is not None:
            out.update(resource_prefix=terms.prefix, expires_at_us=self.expires_at(terms))
        return out


def grant_from_review(review: Review) -> Grant | None:
    """The grant an approved ``grant: window`` review opens; ``None`` for any other review."""
    if review.status is not ReviewStatus.APPROVED or review.closure is None:
        return None
    return grant_of(review.closure, review.proposal)


def grant_of(closure: dict[str, Any], proposal: dict[str, Any]) -> Grant | None:
    """The grant opened by ``closure`` (a review's final Verdict) of ``proposal`` (the approved
    action): ``None`` unless it approved a ``grant: window`` review (a denial, an expiry, a
    break-glass review or a one-action review grants nothing)."""
    state = closure.get("review")
    if (state is None or state.get("grant") != GRANT_WINDOW or closure.get("decision") != "allow"
            or closure.get("basis") != "review_approved" or proposal.get("action_id") != closure.get("action_id")):
        return None
    service, actor = requester_of(proposal)
    return Grant(str(state["review_id"]), str(closure["action_id"]), str(state["rule_id"]), str(closure["tenant"]),
                 service, actor, str(proposal["type"]), str(proposal["resource"]), int(closure["decided_at"]),
                 dict(state))


def grant_covers(grant: Grant, terms: GrantTerms, proposal: dict[str, Any], now_us: int) -> str | None:
    """Why ``grant`` does not cover ``proposal`` decided at ``now_us`` under ``terms`` (``None``: it does)."""
    service, actor = requester_of(proposal)
    if grant.rule_id != terms.rule_id:
        return f"grant {grant.review_id} is of rule {grant.rule_id!r}, not {terms.rule_id!r}"
    if (grant.service, grant.actor) != (service, actor):
        return (f"grant {grant.review_id} is for actor {grant.actor!r} via service {grant.service!r}, not "
                f"{actor!r} via {service!r}")
    if grant.tenant != proposal.get("tenant", ""):
        return f"grant {grant.review_id} is for tenant {grant.tenant!r}, not {proposal.get('tenant')!r}"
    if grant.type != proposal["type"]:
        return f"grant {grant.review_id} is for action type {grant.type!r}, not {proposal['type']!r}"
    if not under_prefix(grant.resource, terms.prefix):
        return (f"grant {grant.review_id}'s approved resource {grant.resource!r} is not under the prefix "
                f"{terms.prefix!r}, so its approval covers only its own action")
    if not under_prefix(str(proposal["resource"]), terms.prefix):
        return f"resource {proposal['resource']!r} is not under grant {grant.review_id}'s prefix {terms.prefix!r}"
    groups = set(grant.state.get("approver_groups") or [])
    weaker = int(grant.state.get("min_approvals", 1)) < terms.min_approvals
    if weaker or (terms.approvers and not groups <= terms.approvers):
        return (f"grant {grant.review_id} was approved under a weaker requirement ({grant.state.get('min_approvals')} "
                f"from {sorted(groups)}) than rule {terms.rule_id!r} now asks ({terms.min_approvals} from "
                f"{sorted(terms.approvers)})")
    if now_us < grant.approved_at:
        return f"grant {grant.review_id} starts at {grant.approved_at} µs, after this decision ({now_us} µs)"
    if now_us > grant.expires_at(terms):
        return f"grant {grant.review_id} expired at {grant.expires_at(terms)} µs, before this decision ({now_us} µs)"
    return None
