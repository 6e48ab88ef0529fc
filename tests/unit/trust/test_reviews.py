"""The review fold's rules that cannot be bent, each attacked directly."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from schemas.codec import get_codec
from tests.unit.trust.review_fixtures import NOW, World, proposal, world
from trust.errors import RegistryError
from trust.reviewers import ReviewerRegistry, canonical_identity
from trust.reviews import ReviewStatus, VoteOutcome, make_vote


@pytest.fixture
def w(tmp_path: Path) -> World:
    return world(tmp_path)


def test_reviewer_key_is_private_and_identity_is_unique(w: World, tmp_path: Path) -> None:
    path = w.registry.private_key_path("dana")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(w.registry.path.stat().st_mode) == 0o600
    with pytest.raises(RegistryError, match="already belongs to reviewer 'bob'"):
        w.registry.add_reviewer("robert", ["dba"], ["BOB.SMITH@corp.example"])
    assert ReviewerRegistry(tmp_path / "keys").get("bob") is not None  # persisted


def test_one_approval_from_an_eligible_reviewer_decides(w: World) -> None:
    book, review = w.open()
    j = book.judge(w.vote(review, "dana"), NOW + 1)
    assert j.outcome is VoteOutcome.ACCEPTED and j.decided is ReviewStatus.APPROVED
    assert review.approvers == ["dana"]


@pytest.mark.parametrize("actor", ["bob", "BOB", "Bob.Smith@corp.example", "\uff42\uff4f\uff42", " bob "])
def test_self_approval_is_refused_by_identity_not_name_string(w: World, actor: str) -> None:
    book, review = w.open(proposal(actor))
    j = book.judge(w.vote(review, "bob"), NOW + 1)
    assert j.outcome is VoteOutcome.SECURITY and "self-approval" in j.reason
    assert review.status is ReviewStatus.OPEN and not review.approvals
    assert canonical_identity(actor) in w.registry.get("bob").canonical  # type: ignore[union-attr]


def test_vote_by_a_key_outside_the_groups_is_a_security_refusal(w: World) -> None:
    book, review = w.open()
    j = book.judge(w.vote(review, "eve"), NOW + 1)
    assert j.outcome is VoteOutcome.SECURITY and "none of the approver groups" in j.reason


def test_vote_claiming_another_reviewers_name_is_attributed_to_its_key(w: World) -> None:
    book, review = w.open()
    j = book.judge(w.vote(review, "dana", signer="eve"), NOW + 1)  # eve signs a vote that says "dana"
    assert j.outcome is VoteOutcome.SECURITY and "signed by 'eve'" in j.reason


def test_forged_signature_is_refused(w: World) -> None:
    book, review = w.open()
    codec = get_codec()
    vote = codec.decode_as("ReviewVote", w.vote(review, "dana"))
    vote["reason"] = "edited after signing"
    j = book.judge(codec.encode("ReviewVote", vote), NOW + 1)
    assert j.outcome is VoteOutcome.SECURITY and "does not verify" in j.reason


def test_vote_after_expiry_is_refused(w: World) -> None:
    book, review = w.open()
    j = book.judge(w.vote(review, "dana"), review.expires_at + 1)
    assert j.outcome is VoteOutcome.REFUSED and "expired" in j.reason
    assert book.due(review.expires_at + 1) == [review]


def test_a_denial_is_final(w: World) -> None:
    book, review = w.open()
    assert book.judge(w.vote(review, "dana", "deny"), NOW + 1).decided is ReviewStatus.DENIED
    j = book.judge(w.vote(review, "omar"), NOW + 2)
    assert j.outcome is VoteOutcome.REFUSED and "a denial is final" in j.reason
    assert not review.approvals


def test_double_vote_counts_once(w: World) -> None:
    rule = {"approvers": ["dba"], "min_approvals": 2, "require_reason": False, "expires_after_s": 600,
            "grant": "action", "grant_window_s": 0}
    from tests.unit.trust.review_fixtures import decision

    book, review = w.open(d=decision(rule=rule))
    assert book.judge(w.vote(review, "dana"), NOW + 1).outcome is VoteOutcome.ACCEPTED
    again = book.judge(w.vote(review, "dana"), NOW + 2)
    assert again.outcome is VoteOutcome.REFUSED and "one vote per reviewer" in again.reason
    assert review.status is ReviewStatus.OPEN and len(review.approvals) == 1
    assert book.judge(w.vote(review, "omar"), NOW + 3).decided is ReviewStatus.APPROVED


def test_vote_for_another_proposal_is_refused(w: World) -> None:
    book, review = w.open()
    record = make_vote(review, "dana", w.keys["dana"], "approve", "ok", NOW)
    record = {**record, "proposal_sha256": b"\x00" * 32, "signature": b""}
    from trust.signatures import sign_record

    forged = get_codec().encode("ReviewVote", sign_record(record, "signature", b"", w.keys["dana"]))
    j = book.judge(forged, NOW + 1)
    assert j.outcome is VoteOutcome.SECURITY and "different proposal" in j.reason


def test_unsigned_verdict_cannot_open_a_review(w: World) -> None:
    from trust.keys import SigningKey

    rec = proposal()
    intruder = World(SigningKey.generate(), w.registry, w.keys)
    book = w.open()[0]
    codec = get_codec()
    book.apply(codec.encode("ProposedAction", rec), NOW)
    applied = book.apply(codec.encode("Verdict", intruder.verdict(rec)), NOW)
    assert applied.kind == "ignored" and "not processor-signed" in applied.note
