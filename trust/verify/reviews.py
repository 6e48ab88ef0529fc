"""Proof of review: every action allowed through a review had its approvals; break-glass is reviewed.

Works on decoded payloads, like :mod:`trust.verify.enforcement`, with the reviewer
registry (:class:`trust.reviewers.ReviewerRegistry`) for the reviewers' keys and groups.
Nothing the processor wrote about a vote is trusted: each approval is re-checked from its
signed bytes with the same rules the processor applies (:func:`trust.reviews.vote_problem`).

=======================================================================  ============================
Observation                                                              Finding
=======================================================================  ============================
a valid ``allow`` verdict with basis ``review_approved`` whose embedded  ``review_approvals_invalid``
approvals are fewer than its ``min_approvals`` distinct valid ones: a
vote that does not verify, by a key that is no reviewer's, by a reviewer
outside the approver groups, by the requester (canonical identity), for
another action or proposal, a deny, cast after the review expired or
after the verdict; or whose requirement (groups, count) is weaker than
the pending verdict's for the same action, or whose proposal is not on
the ledger
a committed outcome under such a verdict where an approval's ledger      ``approval_after_commit``
``review`` event is missing or was recorded after the commit, or the
vote claims a later time
a valid ``allow`` verdict with basis ``break_glass`` whose post-hoc      ``break_glass_unreviewed``
review has neither a valid denial nor ``min_approvals`` valid approvals
among the ledger's ``review`` events
a valid ``allow`` verdict with basis ``review_approved`` allowed by a    ``grant_invalid``
time-boxed grant (ReviewState ``grant`` = ``granted``) that the grant
does not cover: the granting review has no approving final verdict on
the ledger or its approvals do not hold (as above), the cited approvals
are not the granting ones, the verdict's policy (``policy_sha256``) is
not on the ledger or gives the rule no ``grant: window``, the rule is
not among the verdict's enforce review matches or a block matched, or
:func:`trust.grants.grant_covers` says no (another requester, tenant,
type or rule; a resource outside the prefix; decided before the
approval or after the window), or its ``expires_at`` is not the
window's end
=======================================================================  ============================

A grant-allowed action's commit is also checked against the granting approvals'
ledger times (``approval_after_commit``), like the reviewed action's own.

Group membership is judged against the registry as it is now (the registry is not
versioned on the ledger): removing a reviewer from a group makes their past approvals
fail here, which errs on the side of reporting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import get_codec
from schemas.errors import CodecError
from trust.bindings import policy_sha256, record_sha256
from trust.grants import GRANT_USED, grant_covers, grant_of, terms_in_policy
from trust.keys import Keyring
from trust.reviewers import ReviewerRegistry
from trust.reviews import vote_problem
from trust.signatures import verify_record
from trust.verify.findings import Event, Finding, FindingKind

__all__ = ["verify_reviews"]


@dataclass
class _Ledger:
    proposals: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdicts: list[tuple[Event, dict[str, Any]]] = field(default_factory=list)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # action id -> pending review state
    votes: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)  # review id -> (recorded_at, vote)
    vote_recorded: dict[str, int] = field(default_factory=dict)  # vote id -> recorded_at
    outcomes: list[tuple[Event, dict[str, Any]]] = field(default_factory=list)
    closures: dict[str, dict[str, Any]] = field(default_factory=dict)  # review id -> its first final verdict
    policies: dict[bytes, dict[str, Any]] = field(default_factory=dict)  # policy_sha256 -> PolicySet


def _read(events: Iterable[Event], keyring: Keyring) -> _Ledger:
    codec = get_codec()
    ledger = _Ledger()
    for ev in events:
        kind, payload = ev.get("kind"), ev.get("payload")
        if kind not in ("action", "verdict", "review", "outcome", "policy") or not isinstance(payload, bytes):
            continue
        try:
            if kind == "action":
                rec = codec.decode_as("ProposedAction", payload)
                ledger.proposals.setdefault(rec["action_id"], rec)
            elif kind == "verdict":
                rec = codec.decode_as("Verdict", payload)
                if not verify_record(rec, "signature", b"", keyring, at_us=rec["decided_at"]):
                    continue  # enforcement reports forged verdicts
                ledger.verdicts.append((ev, rec))
                state = rec.get("review")
                if rec["decision"] == "review" and state is not None:
                    ledger.pending.setdefault(rec["action_id"], state)
                elif (state is not None and str(rec["basis"]).startswith("review_")
                      and state.get("grant") != GRANT_USED):
                    ledger.closures.setdefault(str(state["review_id"]), rec)
            elif kind == "policy":
                ledger.policies.setdefault(policy_sha256(payload), codec.decode_as("PolicySet", payload))
            elif kind == "review":
                vote = codec.decode_as("ReviewVote", payload)
                at = int(ev.get("recorded_at") or 0)
                ledger.votes.setdefault(vote["review_id"], []).append((at, vote))
                ledger.vote_recorded.setdefault(vote["vote_id"], at)
            else:
                ledger.outcomes.append((ev, codec.decode_as("ActionOutcome", payload)))
        except CodecError:
            continue  # enforcement reports undecodable payloads
    return ledger


def _where(ev: Event) -> tuple[int | None, int | None, str | None]:
    part, seq, eid = ev.get("ledger_partition"), ev.get("sequence"), ev.get("event_id")
    return (part if type(part) is int else None, seq if type(seq) is int else None,
            eid if isinstance(eid, str) else None)


def _approval_problems(verdict: dict[str, Any], ledger: _Ledger, registry: ReviewerRegistry
                       ) -> tuple[list[str], list[dict[str, Any]]]:
    """Why ``verdict``'s approvals do not suffice (empty: they do), and its valid approvals."""
    state = verdict.get("review")
    aid = verdict["action_id"]
    if state is None:
        return [f"action {aid!r} was allowed through a review but its verdict carries no review state"], []
    problems: list[str] = []
    proposal = ledger.proposals.get(aid)
    if proposal is None:
        return [f"the proposal of action {aid!r} is not on the ledger, so its requester is unknown"], []
    if verdict.get("proposal_sha256") not in (None, record_sha256(proposal)):
        problems.append(f"the final verdict of {aid!r} is bound to another proposal than the ledger's")
    pending = ledger.pending.get(aid)
    if pending is not None and (int(state["min_approvals"]) < int(pending["min_approvals"])
                                or not set(state["approver_groups"]) <= set(pending["approver_groups"])):
        problems.append(f"the final verdict of {aid!r} asks for less ({state['min_approvals']} from "
                        f"{state['approver_groups']}) than its pending review did ({pending['min_approvals']} "
                        f"from {pending['approver_groups']})")
    requirement = pending or state
    codec = get_codec()
    valid: dict[str, dict[str, Any]] = {}
    for raw in state.get("approvals") or []:
        try:
            vote = codec.decode_as("ReviewVote", raw)
        except CodecError as exc:
            problems.append(f"an approval of {aid!r} does not decode: {exc}")
            continue
        problem, reviewer = vote_problem(
            vote, registry, review_id=state["review_id"], action_id=aid, tenant=verdict["tenant"],
            proposal_sha256=record_sha256(proposal), approver_groups=list(requirement["approver_groups"]),
            requester=str(proposal["actor"]["id"]), at_us=int(vote["voted_at"]))
        if problem is None and vote["vote"] != "approve":
            problem = f"vote {vote['vote_id']!r} by {vote['reviewer']!r} is a denial, counted as an approval"
        if problem is None and int(vote["voted_at"]) > int(state["expires_at"]):
            problem = f"vote {vote['vote_id']!r} by {vote['reviewer']!r} was cast after the review expired"
        if problem is None and int(vote["voted_at"]) > int(verdict["decided_at"]):
            problem = f"vote {vote['vote_id']!r} by {vote['reviewer']!r} is dated after the final verdict"
        if problem is not None:
            problems.append(problem)
        elif reviewer is not None:
            valid.setdefault(reviewer.name, vote)
    need = int(requirement["min_approvals"])
    if len(valid) < need:
        problems.append(f"action {aid!r} was allowed through review {state['review_id']} with {len(valid)} valid "
                        f"approval(s) from distinct eligible reviewers; it needs {need}")
    return problems, list(valid.values())


def _grant_problems(verdict: dict[str, Any], ledger: _Ledger, registry: ReviewerRegistry
                    ) -> tuple[list[str], list[dict[str, Any]]]:
    """Why the grant ``verdict`` cites does not cover it (empty: it does), and the granting valid approvals."""
    state = verdict["review"]
    aid, rid = verdict["action_id"], str(state["review_id"])
    proposal = ledger.proposals.get(aid)
    if proposal is None:
        return [f"the proposal of action {aid!r} is not on the ledger, so its requester is unknown"], []
    closure = ledger.closures.get(rid)
    granting = ledger.proposals.get(str(closure["action_id"])) if closure is not None else None
    grant = grant_of(closure, granting) if closure is not None and granting is not None else None
    if closure is None or granting is None or grant is None:
        why = ("has no final verdict on the ledger" if closure is None else
               "'s action has no proposal on the ledger" if granting is None else
               f"was not approved under a window grant (final verdict {closure['decision']}, basis "
               f"{closure['basis']}, grant {(closure.get('review') or {}).get('grant')!r})")
        return [f"action {aid!r} was allowed by the grant of review {rid}, which {why}"], []
    problems, valid = _approval_problems(closure, ledger, registry)
    problems = [f"the granting review {rid}'s approvals do not hold: {p}" for p in problems]
    if sorted(bytes(a) for a in state.get("approvals") or []) != sorted(
            bytes(a) for a in grant.state.get("approvals") or []):
        problems.append(f"action {aid!r} cites other approvals than those of granting review {rid}")
    if state.get("rule_id") != grant.rule_id:
        problems.append(f"action {aid!r} names rule {state.get('rule_id')!r}, but review {rid} was under "
                        f"rule {grant.rule_id!r}")
    bound = verdict.get("policy_sha256")
    policy = ledger.policies.get(bytes(bound)) if bound is not None else None
    terms = terms_in_policy(policy, grant.rule_id) if policy is not None else None
    if terms is None:
        problems.append(f"action {aid!r}'s policy ({'not on the ledger' if policy is None else 'on the ledger'}) "
                        f"gives rule {grant.rule_id!r} no window grant")
        return problems, valid
    matched = verdict.get("matched_rules") or []
    if not any(m["id"] == grant.rule_id and m["effect"] == "review" and m["mode"] == "enforce"
               and m.get("error") is None for m in matched):
        problems.append(f"rule {grant.rule_id!r} did not hold action {aid!r} for review, so no grant of it applies")
    if any(m["effect"] == "block" and m["mode"] == "enforce" for m in matched):
        problems.append(f"a block rule matched action {aid!r}; a block wins over any grant")
    uncovered = grant_covers(grant, terms, proposal, int(verdict["decided_at"]))
    if uncovered is not None:
        problems.append(f"action {aid!r}: {uncovered}")
    elif int(state["expires_at"]) != grant.expires_at(terms):
        problems.append(f"action {aid!r} claims grant {rid} lasts until {state['expires_at']} µs; it lasts until "
                        f"{grant.expires_at(terms)} µs")
    return problems, valid


def _post_hoc_complete(verdict: dict[str, Any], ledger: _Ledger, registry: ReviewerRegistry) -> bool:
    state = verdict.get("review")
    proposal = ledger.proposals.get(verdict["action_id"])
    if state is None or proposal is None:
        return False
    approvers: set[str] = set()
    for at, vote in ledger.votes.get(state["review_id"], []):
        problem, reviewer = vote_problem(
            vote, registry, review_id=state["review_id"], action_id=verdict["action_id"], tenant=verdict["tenant"],
            proposal_sha256=record_sha256(proposal), approver_groups=list(state["approver_groups"]),
            requester=str(proposal["actor"]["id"]), at_us=at)
        if problem is not None or reviewer is None:
            continue
        if vote["vote"] == "deny":
            return True  # reviewed, and found wanting: complete (and loud in the ledger)
        approvers.add(reviewer.name)
    return len(approvers) >= max(1, int(state["min_approvals"]))


def verify_reviews(events: Iterable[Event], keyring: Keyring, registry: ReviewerRegistry) -> list[Finding]:
    """The findings of the module's table, sorted like every verify pass."""
    ledger = _read(events, keyring)
    findings: list[Finding] = []
    approved: dict[str, list[dict[str, Any]]] = {}
    for ev, verdict in ledger.verdicts:
        aid = verdict["action_id"]
        if (verdict["decision"] == "allow" and verdict["basis"] == "review_approved"
                and (verdict.get("review") or {}).get("grant") == GRANT_USED):
            problems, valid = _grant_problems(verdict, ledger, registry)
            approved[aid] = valid
            if problems:
                findings.append(Finding(FindingKind.GRANT_INVALID, *_where(ev), "; ".join(problems), action_id=aid))
        elif verdict["decision"] == "allow" and verdict["basis"] == "review_approved":
            problems, valid = _approval_problems(verdict, ledger, registry)
            approved[aid] = valid
            if problems:
                findings.append(Finding(FindingKind.REVIEW_APPROVALS_INVALID, *_where(ev), "; ".join(problems),
                                        action_id=aid))
        elif (verdict["decision"] == "allow" and verdict["basis"] == "break_glass"
              and not _post_hoc_complete(verdict, ledger, registry)):
                review_id = (verdict.get("review") or {}).get("review_id", "?")
                findings.append(Finding(
                    FindingKind.BREAK_GLASS_UNREVIEWED, *_where(ev),
                    f"action {aid!r} ran under break-glass ({verdict['reason'][:200]}) and its post-hoc review "
                    f"{review_id} is not complete: approve or deny it (lockgate reviews list --all)",
                    action_id=aid))
    for ev, outcome in ledger.outcomes:
        aid = outcome["action_id"]
        if outcome["status"] != "committed" or aid not in approved:
            continue
        committed = int(outcome["recorded_at"])
        for vote in approved[aid]:
            recorded = ledger.vote_recorded.get(vote["vote_id"])
            if recorded is None or recorded > committed or int(vote["voted_at"]) > committed:
                when = "is not on the ledger" if recorded is None else f"was recorded at {recorded}"
                findings.append(Finding(
                    FindingKind.APPROVAL_AFTER_COMMIT, *_where(ev),
                    f"approval {vote['vote_id']!r} by {vote['reviewer']!r} of action {aid!r} {when}; the commit "
                    f"was recorded at {committed}", action_id=aid))
    findings.sort(key=Finding.sort_key)
    return findings
