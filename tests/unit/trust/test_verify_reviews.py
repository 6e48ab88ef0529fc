"""verify proves reviewed commits had their approvals; tampering with them is named by action id.

The attacker here holds the processor key (the strongest case: a forged verdict without it
is already ``forged_verdict``) and edits or injects records into the ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from processors.reviews.desk import final_verdict
from schemas.codec import get_codec
from tests.factories.ledger import outcome
from tests.unit.trust.review_fixtures import NOW, World, decision, proposal, world
from trust.reviews import Review
from trust.verify import FindingKind, verify_reviews


@pytest.fixture
def w(tmp_path: Path) -> World:
    return world(tmp_path)


def _ev(kind: str, payload: bytes, action_id: str, at: int, seq: int) -> dict[str, Any]:
    return {"event_id": f"e{seq}", "kind": kind, "recorded_at": at, "tenant": "default", "action_id": action_id,
            "payload": payload, "ledger_partition": 0, "sequence": seq}


def _reviewed(w: World, voters: list[str], *, vote_at: int = NOW + 10, commit_at: int = NOW + 100,
              tamper: Any = None) -> tuple[list[dict[str, Any]], Review]:
    """A reviewed action's ledger: proposal, pending verdict, votes, final allow, outcome."""
    codec = get_codec()
    rec = proposal()
    book, review = w.open(rec)
    events = [_ev("action", codec.encode("ProposedAction", rec), rec["action_id"], NOW, 0),
              _ev("verdict", review.verdict_raw, rec["action_id"], NOW, 1)]
    for i, who in enumerate(voters):
        raw = w.vote(review, who, at=vote_at)
        book.judge(raw, vote_at)
        review.approvals = [*review.approvals, raw] if raw not in review.approvals else review.approvals
        events.append(_ev("review", raw, rec["action_id"], vote_at + 1, 2 + i))
    final = final_verdict(review, "allow", "review_approved", "approved", w.key, "p1", vote_at + 2)
    if tamper is not None:
        final = tamper(final, w)
    encoded = codec.encode("Verdict", final)
    events.append(_ev("verdict", encoded, rec["action_id"], vote_at + 2, 10))
    events.append(_ev("outcome", codec.encode("ActionOutcome", outcome(rec["action_id"], commit_at, encoded)),
                      rec["action_id"], commit_at, 11))
    return events, review


def _kinds(w: World, events: list[dict[str, Any]]) -> list[FindingKind]:
    return [f.kind for f in verify_reviews(events, w.ring, w.registry)]


def test_a_properly_reviewed_commit_verifies(w: World) -> None:
    events, _ = _reviewed(w, ["dana"])
    assert _kinds(w, events) == []


def test_allow_through_review_without_approvals_is_named_by_action(w: World) -> None:
    events, review = _reviewed(w, [])
    found = verify_reviews(events, w.ring, w.registry)
    assert [f.kind for f in found] == [FindingKind.REVIEW_APPROVALS_INVALID]
    assert found[0].action_id == review.action_id and "0 valid approval" in found[0].message


def test_requesters_own_approval_does_not_count(w: World) -> None:
    events, _ = _reviewed(w, ["bob"])  # the requester is Bob.Smith@corp.example, reviewer bob's identity
    found = verify_reviews(events, w.ring, w.registry)
    assert [f.kind for f in found] == [FindingKind.REVIEW_APPROVALS_INVALID]
    assert "self-approval" in found[0].message


def test_ineligible_approval_does_not_count(w: World) -> None:
    events, _ = _reviewed(w, ["eve"])
    assert _kinds(w, events) == [FindingKind.REVIEW_APPROVALS_INVALID]


def test_weakened_requirement_in_the_final_verdict_is_found(w: World) -> None:
    def weaken(final: dict[str, Any], world_: World) -> dict[str, Any]:
        from trust.signatures import sign_record

        state = {**final["review"], "approver_groups": ["finance"]}
        return sign_record({**final, "review": state, "signature": b""}, "signature", b"", world_.key)

    events, _ = _reviewed(w, ["eve"], tamper=weaken)
    found = verify_reviews(events, w.ring, w.registry)
    assert [f.kind for f in found] == [FindingKind.REVIEW_APPROVALS_INVALID]
    assert "asks for less" in found[0].message


def test_approval_recorded_after_the_commit_is_found(w: World) -> None:
    events, review = _reviewed(w, ["dana"], vote_at=NOW + 10, commit_at=NOW + 5)
    found = verify_reviews(events, w.ring, w.registry)
    assert FindingKind.APPROVAL_AFTER_COMMIT in [f.kind for f in found]
    assert all(f.action_id == review.action_id for f in found)


def test_approval_event_deleted_from_the_ledger_is_found(w: World) -> None:
    events, _ = _reviewed(w, ["dana"])
    kept = [e for e in events if e["kind"] != "review"]
    assert _kinds(w, kept) == [FindingKind.APPROVAL_AFTER_COMMIT]


def test_break_glass_is_listed_until_its_post_hoc_review_completes(w: World) -> None:
    codec = get_codec()
    rec = proposal("ops", break_glass=True, roles=("oncall",), justification="incident 42")
    verdict = w.verdict(rec, decision("block"))
    assert verdict["basis"] == "break_glass" and "BREAK-GLASS" in verdict["reason"]
    events = [_ev("action", codec.encode("ProposedAction", rec), rec["action_id"], NOW, 0),
              _ev("verdict", codec.encode("Verdict", verdict), rec["action_id"], NOW, 1)]
    found = verify_reviews(events, w.ring, w.registry)
    assert [f.kind for f in found] == [FindingKind.BREAK_GLASS_UNREVIEWED]
    assert found[0].action_id == rec["action_id"]
    _book, review = w.open(rec, decision("block"))
    assert review.post_hoc
    events.append(_ev("review", w.vote(review, "dana"), rec["action_id"], NOW + 5, 2))
    assert _kinds(w, events) == []


def test_break_glass_without_the_role_changes_nothing_but_is_recorded(w: World) -> None:
    from processors.reviews.requests import hold_for_review

    held = hold_for_review(proposal("mallory", break_glass=True, justification="because"), decision("block"), NOW)
    assert held.decision.decision == "block" and held.security is not None and "refused" in held.security
