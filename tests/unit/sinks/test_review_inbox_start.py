"""A sink whose ``reviewers.json`` is bad at start still starts; its review inbox knows nobody.

The adversary leaves the reviewer registry group-writable (or broken) on the sink's host before
the sink starts. The sink must not stop over it (its recording path has nothing to do with
reviewers), but the inbox must fail closed: no vote judged as a reviewer's, no vote cast from
it, the refusal shown — and the fixed file picked up at the follower's next look. These tests
drive a real :class:`ReviewInbox`'s fold without the Kafka follower (as the follower would:
``_registry_changed`` then ``_refold``); the integration test runs the sink process.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from schemas.codec import get_codec
from sinks.review_inbox import ReviewInbox
from tests.unit.trust.review_fixtures import NOW, World, proposal, world
from trust.errors import RegistryError

TOPIC = "lockgate.reviews"


@pytest.fixture
def w(tmp_path: Path) -> World:
    w = world(tmp_path)  # its registry is tmp_path/keys: an inbox on home tmp_path reads the same file
    w.key.public().save(tmp_path / "keys" / "processor.pub.pem")
    return w


def _inbox(home: Path) -> ReviewInbox:
    inbox = ReviewInbox("127.0.0.1:1", TOPIC, home)
    inbox.stop()  # a stopped inbox never starts its follower: no broker, records come from fold()
    inbox._refold()  # what the follower does first
    return inbox


def _open_and_vote(w: World, inbox: ReviewInbox, who: str = "dana") -> str:
    """Fold a review and ``who``'s approval of it; the vote's id."""
    rec = proposal()
    _book, review = w.open(rec)
    inbox.fold(get_codec().encode("ProposedAction", rec), NOW)
    inbox.fold(review.verdict_raw, NOW)
    raw = w.vote(review, who)
    inbox.fold(raw, NOW + 1)
    return str(get_codec().decode_as("ReviewVote", raw)["vote_id"])


def test_a_group_writable_registry_at_start_judges_no_vote_until_it_is_fixed(
        w: World, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = w.registry.path
    path.chmod(0o660)
    with caplog.at_level(logging.WARNING, logger="lockgate.sink.reviews"):
        inbox = _inbox(tmp_path)  # the constructor the sink calls at start: it must not raise
        vote_id = _open_and_vote(w, inbox)
        assert not inbox._registry_changed()  # the follower looks again: same file, no new report
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "KeyFileUnsafe" in warnings[0]

    refused = inbox.listing(None)["registry_refused"]
    assert refused is not None and refused["file"] == str(path) and refused["serving"] == "none"
    assert refused["reason"].startswith("KeyFileUnsafe")
    judged = inbox.folded().judgements[vote_id]
    assert judged.outcome.value == "security" and "no registered reviewer's" in judged.reason
    with pytest.raises(RegistryError, match=r"no vote can be accepted.*reviewer registry"):
        inbox.vote("dana", None, "anything", "approve", "ok")  # refused before it is signed or sent

    path.chmod(0o600)
    assert inbox._registry_changed()  # the follower's next look loads it...
    inbox._refold()  # ...and folds everything again
    assert inbox.listing(None)["registry_refused"] is None
    judged = inbox.folded().judgements[vote_id]
    assert (judged.outcome.value, judged.decided.value if judged.decided else None) == ("accepted", "approved")


def test_broken_json_at_start_is_refused_and_the_inbox_still_constructs(w: World, tmp_path: Path) -> None:
    w.registry.path.write_bytes(b'{"dana": [')
    inbox = _inbox(tmp_path)
    vote_id = _open_and_vote(w, inbox)
    refused = inbox.listing(None)["registry_refused"]
    assert refused is not None and "not valid JSON" in refused["reason"] and refused["serving"] == "none"
    assert inbox.folded().judgements[vote_id].outcome.value == "security"


def test_a_good_registry_at_start_shows_no_refusal_and_judges_votes(w: World, tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    vote_id = _open_and_vote(w, inbox)
    assert inbox.listing(None)["registry_refused"] is None
    assert inbox.folded().judgements[vote_id].outcome.value == "accepted"
