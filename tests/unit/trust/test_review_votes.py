"""Casting a vote (the code the CLI and the dashboard share), over an in-memory reviews log."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.codec import get_codec
from tests.unit.trust.review_fixtures import NOW, World, proposal, world
from trust.errors import RegistryError, ReviewNotFound
from trust.review_votes import Folded, cast_vote, fold_records


class Log:
    """The reviews topic as a list; ``deaf`` drops appends (a reader that never sees the vote)."""

    def __init__(self, w: World, deaf: bool = False) -> None:
        self.w = w
        self.deaf = deaf
        self.records: list[tuple[bytes | None, int]] = []
        self.keys: list[bytes] = []

    def open(self, rec: dict[str, object]) -> str:
        codec = get_codec()
        verdict = codec.encode("Verdict", self.w.verdict(rec))
        self.records += [(codec.encode("ProposedAction", rec), NOW), (verdict, NOW)]
        return str(self.w.verdict(rec)["review"]["review_id"])

    def read(self) -> Folded:
        return fold_records(self.records, self.w.ring, self.w.registry)

    def append(self, key: bytes, value: bytes) -> None:
        self.keys.append(key)
        if not self.deaf:
            self.records.append((value, NOW + 1))


@pytest.fixture
def w(tmp_path: Path) -> World:
    return world(tmp_path)


def test_an_eligible_reviewer_approves_and_the_judgement_is_read_back(w: World) -> None:
    log = Log(w)
    review_id = log.open(proposal())
    result = cast_vote(log.read, log.append, w.registry, "dana", review_id[:8], "approve", "ticket 42")
    assert (result.outcome, result.decided, result.reviewer) == ("accepted", "approved", "dana")
    assert log.keys == [review_id.encode()]  # keyed by review id: same partition as the review
    vote = get_codec().decode_as("ReviewVote", log.records[-1][0] or b"")
    assert vote["reviewer"] == "dana" and vote["key_id"] == w.keys["dana"].key_id and vote["reason"] == "ticket 42"


def test_the_requester_cannot_approve_their_own_action(w: World) -> None:
    log = Log(w)
    review_id = log.open(proposal("BOB.smith@corp.example"))
    result = cast_vote(log.read, log.append, w.registry, "bob", review_id, "approve", "mine")
    assert result.outcome == "security" and "self-approval" in result.detail and not result.accepted
    assert log.read().judgements[result.vote_id].review is not None  # recorded, not counted
    assert [r.status.value for r in log.read().reviews] == ["open"]


def test_unknown_reviewer_unknown_review_and_hidden_review_are_typed_errors(w: World) -> None:
    log = Log(w)
    review_id = log.open(proposal())
    with pytest.raises(RegistryError, match="no reviewer 'zoe'"):
        cast_vote(log.read, log.append, w.registry, "zoe", review_id, "approve", "x")
    with pytest.raises(ReviewNotFound, match="no review"):
        cast_vote(log.read, log.append, w.registry, "dana", "rv-nope", "approve", "x")
    with pytest.raises(ReviewNotFound):  # another tenant's review is as if it did not exist
        cast_vote(log.read, log.append, w.registry, "dana", review_id, "approve", "x",
                  visible=lambda r: r.tenant == "acme")
    with pytest.raises(ValueError, match="approve or deny"):
        cast_vote(log.read, log.append, w.registry, "dana", review_id, "maybe", "x")
    w.registry.private_key_path("omar").unlink()  # registered, but its key is not on this host
    with pytest.raises(RegistryError, match="private key is not at"):
        cast_vote(log.read, log.append, w.registry, "omar", review_id, "approve", "x")
    assert log.keys == []  # nothing was published


def test_a_vote_not_read_back_says_so(w: World) -> None:
    log = Log(w, deaf=True)
    review_id = log.open(proposal())
    result = cast_vote(log.read, log.append, w.registry, "dana", review_id, "deny", "no", wait_s=0.05, poll_s=0.01)
    assert result.outcome == "unknown" and "not read back" in result.detail and log.keys
