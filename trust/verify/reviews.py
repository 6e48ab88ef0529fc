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
=======================================================================  ============================

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
from trust.bindings import record_sha256
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


def _read(events: Iterable[Event], keyring: Keyring) -> _Ledger:
    codec = get_codec()
    ledger = _Ledger()
    for ev in events:
        kind, payload = ev.get("kind"), ev.get("payload")
        if kind not in ("action", "verdict", "review", "outcome") or not isinstance(payload, bytes):
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
                if rec["decision"] == "review" and rec.get("review") is not None:
                    ledger.pending.setdefault(rec["action_id"], rec["review"])
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
        if verdict["decision"] == "allow" and verdict["basis"] == "review_approved":
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
