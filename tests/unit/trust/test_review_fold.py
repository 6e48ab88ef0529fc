"""The processor's review desk and the sink's review inbox judge every vote alike.

Both fold the reviews topic through :func:`trust.review_fold.judge_record`; these tests feed
one reviews log, record by record, to a real :class:`ReviewDesk` and a real
:class:`ReviewInbox` (its fold, without the Kafka follower) and to ``lockgate reviews``'
fold, and pin that the judgement each shows for each vote is the one the desk ledgers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from processors.reviews.desk import ReviewDesk
from processors.stage import Source
from schemas.codec import get_codec
from sinks.review_inbox import ReviewInbox
from tests.unit.trust.review_fixtures import NOW, REVIEW_RULE, World, decision, proposal, world
from trust.keys import SigningKey
from trust.review_votes import fold_records
from trust.reviewers import ReviewerRegistry
from trust.reviews import Judgement, Review, make_vote

TOPIC = "lockgate.reviews"


@pytest.fixture
def w(tmp_path: Path) -> World:
    return world(tmp_path)  # its registry is tmp_path/keys: an inbox on home tmp_path reads the same file


class Log:
    """One reviews partition fed to the desk and the inbox as it grows; the desk's closures join it."""

    def __init__(self, w: World, home: Path) -> None:
        self.w = w
        self.records: list[tuple[bytes | None, int]] = []
        self.desk = ReviewDesk(w.key, "p1", w.registry)
        w.key.public().save(home / "keys" / "processor.pub.pem")
        self.inbox = ReviewInbox("127.0.0.1:1", TOPIC, home)
        self.inbox.stop()  # a stopped inbox never starts its follower: no broker, the records come from add()
        self.inbox._refold()  # what the follower does first: a book over the processor key
        self.ledgered: dict[str, tuple[str, str]] = {}  # vote id -> (audit kind, detail) the desk ledgers
        self.refusals: list[dict[str, Any]] = []  # the desk's security events of refused registry reloads

    def add(self, raw: bytes, at_us: int) -> None:
        source = Source(TOPIC, 0, len(self.records))
        self.records.append((raw, at_us))
        self.inbox.fold(raw, at_us)
        out = self.desk.handle(raw, source, at_us)
        if get_codec().peek_schema(raw) == "ReviewVote":
            vote_id = str(get_codec().decode_as("ReviewVote", raw)["vote_id"])
            *refusals, event = out.audit  # a refused registry reload goes out first
            self.refusals += refusals
            self.ledgered[vote_id] = (event["kind"], event["detail"])
        for _review_id, closure in out.closures:  # the closure lands on the topic after the vote
            self.add(closure, at_us + 1)

    def open(self, actor: str = "Bob.Smith@corp.example", rule: dict[str, Any] | None = None) -> Review:
        rec = proposal(actor)
        _book, review = self.w.open(rec, decision(rule=rule))
        self.add(get_codec().encode("ProposedAction", rec), NOW)
        self.add(review.verdict_raw, NOW)
        return review

    def vote(self, review: Review, who: str, vote: str = "approve", *, at: int = NOW + 1,
             signer: SigningKey | None = None) -> str:
        record = make_vote(review, who, signer or self.w.keys[who], vote, "ok", at)
        self.add(get_codec().encode("ReviewVote", record), at)
        return str(record["vote_id"])


def ledger_form(j: Judgement) -> tuple[str, str]:
    """The audit event (kind, detail) the desk writes for judgement ``j`` (its handle())."""
    if j.outcome.value == "security":
        return "security", f"review vote refused: {j.reason}"
    return "review", f"{j.outcome.value}: {j.reason}"


def test_inbox_cli_and_desk_give_every_vote_the_same_judgement(w: World, tmp_path: Path) -> None:
    log = Log(w, tmp_path)
    two = {**REVIEW_RULE, "min_approvals": 2}
    approved, denied, own, wrong_role, twice, late, claimed = (
        log.open(), log.open(), log.open("BOB.smith@corp.example"), log.open(), log.open(rule=two), log.open(),
        log.open())
    votes = {
        "approve": log.vote(approved, "dana"),
        "deny": log.vote(denied, "dana", "deny"),
        "after the denial": log.vote(denied, "omar", at=NOW + 5),
        "self-approval": log.vote(own, "bob"),
        "wrong role": log.vote(wrong_role, "eve"),
        "first of two": log.vote(twice, "dana"),
        "duplicate voter": log.vote(twice, "dana", at=NOW + 2),
        "second voter decides": log.vote(twice, "omar", at=NOW + 3),
        "expired": log.vote(late, "dana", at=late.expires_at + 1),
        "claims another's name": log.vote(claimed, "omar", signer=w.keys["dana"]),
    }
    inbox = log.inbox.folded().judgements
    cli = fold_records(log.records, w.ring, w.registry).judgements
    for what, vote_id in votes.items():
        assert ledger_form(inbox[vote_id]) == log.ledgered[vote_id], what
        assert ledger_form(cli[vote_id]) == log.ledgered[vote_id], what
    # and what that judgement is, so an agreement on a wrong answer still fails
    expected = {
        "approve": ("accepted", "approved"), "deny": ("accepted", "denied"),
        "after the denial": ("refused", None), "self-approval": ("security", None),
        "wrong role": ("security", None), "first of two": ("accepted", None),
        "duplicate voter": ("refused", None), "second voter decides": ("accepted", "approved"),
        "expired": ("refused", None), "claims another's name": ("security", None),
    }
    got = {what: (inbox[v].outcome.value, getattr(inbox[v].decided, "value", None)) for what, v in votes.items()}
    assert got == expected
    assert "self-approval refused" in inbox[votes["self-approval"]].reason
    assert "none of the approver groups" in inbox[votes["wrong role"]].reason
    assert "one vote per reviewer" in inbox[votes["duplicate voter"]].reason
    assert "a late vote is not counted" in inbox[votes["expired"]].reason
    # the closures the desk published are folded by the inbox too: both see the same review states
    statuses = {r.review_id: r.status.value for r in log.inbox.folded().reviews}
    assert [statuses[r.review_id] for r in (approved, denied, own, twice, late)] == [
        "approved", "denied", "open", "approved", "open"]


def test_a_refold_judges_the_held_records_as_the_live_fold_did(w: World, tmp_path: Path) -> None:
    log = Log(w, tmp_path)
    review = log.open()
    denied = log.vote(review, "dana", "deny")
    after = log.vote(review, "omar", at=NOW + 2)
    live = {k: ledger_form(j) for k, j in log.inbox.folded().judgements.items()}
    log.inbox._refold()  # what a registry change makes the follower do
    assert {k: ledger_form(j) for k, j in log.inbox.folded().judgements.items()} == live
    assert live[denied] == log.ledgered[denied] and live[after] == log.ledgered[after]


def test_a_reviewer_registered_by_another_process_counts_once_the_file_changed(w: World, tmp_path: Path) -> None:
    log = Log(w, tmp_path)
    review = log.open()
    assert not log.inbox._registry_changed()
    other = ReviewerRegistry(tmp_path / "keys")  # `lockgate keys add-reviewer` in another process
    w.keys["nina"], _ = other.add_reviewer("nina", ["dba"])
    assert w.registry.get("nina") is None  # the desk's registry object has not read the file yet
    vote_id = log.vote(review, "nina")
    assert log.ledgered[vote_id] == ("review", "accepted: approved by nina (1 of 1)")
    assert log.inbox.folded().judgements[vote_id].outcome.value == "security"  # nina unknown to the inbox yet
    assert log.inbox._registry_changed() and not log.inbox._registry_changed()  # what the follower looks at
    log.inbox._refold()  # and does when the file changed
    assert ledger_form(log.inbox.folded().judgements[vote_id]) == log.ledgered[vote_id]


def test_a_bad_registry_edit_keeps_the_inbox_serving_with_the_last_good_one(
        w: World, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A broken reviewers.json under a running sink is refused, not retried: the inbox still
    judges as the processor does (both keep the last good registry), warns once per refused
    state and names the file and why in its listing, until a good file is back."""
    log = Log(w, tmp_path)
    review = log.open()
    path = tmp_path / "keys" / "reviewers.json"
    good = path.read_bytes()
    path.write_bytes(b'{"dana": [')
    with caplog.at_level(logging.WARNING, logger="lockgate.sink.reviews"):
        assert not log.inbox._registry_changed() and not log.inbox._registry_changed()
    [warning] = caplog.records  # once per refused state, however often the follower looks
    assert str(path) in warning.getMessage() and "not valid JSON" in warning.getMessage()
    refused = log.inbox.listing(None)["registry_refused"]
    assert refused is not None and refused["file"] == str(path) and "not valid JSON" in refused["reason"]
    vote_id = log.vote(review, "dana")  # the desk refuses the same file and judges with its last good one
    assert log.ledgered[vote_id] == ("review", "accepted: approved by dana (1 of 1)")
    assert [(e["kind"], str(path) in e["detail"]) for e in log.refusals] == [("security", True)]
    assert ledger_form(log.inbox.folded().judgements[vote_id]) == log.ledgered[vote_id]
    assert log.inbox.listing(None)["decided"][0]["status"] == "approved"
    path.write_bytes(good)
    assert log.inbox._registry_changed()
    assert log.inbox.listing(None)["registry_refused"] is None
