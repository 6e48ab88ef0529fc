"""A review a vote decided but that has no closure in the log is closed by the next worker.

The desk acts on a vote when it is handed it; a worker that takes a partition folds the
records before its first one as handled (:meth:`ReviewDesk.rebuild`). If the deciding vote
is among them and no closure follows it, nobody would ever answer the requester: the worker
publishes the closure then (:meth:`ReviewDesk.unclosed`), and a second closure of a review
is harmless (the first wins).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.reviews.desk import ReviewDesk
from processors.stage import Source
from schemas.codec import get_codec
from tests.unit.trust.review_fixtures import NOW, REVIEW_RULE, World, decision, proposal, reviews_topic, world

TOPIC = "lockgate.reviews"


@pytest.fixture
def w(tmp_path: Path) -> World:
    return world(tmp_path)


def _desk(w: World, records: list[bytes]) -> ReviewDesk:
    desk = ReviewDesk(w.key, "p2", w.registry)
    desk.rebuild(0, len(records), [(raw, NOW + 10) for raw in records])
    return desk


@pytest.mark.parametrize("outcome, decision_, basis", [("approve", "allow", "review_approved"),
                                                        ("deny", "block", "review_denied")])
def test_a_decided_review_without_closure_is_closed_once(w: World, outcome: str, decision_: str, basis: str) -> None:
    records, _final = reviews_topic(w, proposal(), outcome=outcome, rule=REVIEW_RULE)
    desk = _desk(w, records[:-1])  # the vote is folded, its closure never reached the log
    [(review_id, raw)] = desk.unclosed(0)
    closure = get_codec().decode_as("Verdict", raw)
    assert (closure["decision"], closure["basis"]) == (decision_, basis)
    assert closure["review"]["review_id"] == review_id
    assert desk.unclosed(0) == []  # once: it is being closed
    out = desk.handle(raw, Source(TOPIC, 0, len(records) - 1), NOW + 20)  # the agent reads it back
    assert out.reply is not None and out.reply[3] == raw
    assert [e["kind"] for e in out.audit] == ["verdict"]


def test_a_closed_open_or_expired_review_needs_nothing(w: World) -> None:
    closed, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    expired, _ = reviews_topic(w, proposal(), outcome="expire", rule=REVIEW_RULE)
    opened, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk = _desk(w, closed + expired + opened[:2])  # the last one has no vote yet
    assert desk.unclosed(0) == []


def test_a_second_closure_after_the_republished_one_changes_nothing(w: World) -> None:
    records, final = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk = _desk(w, records[:-1])
    [(_rid, raw)] = desk.unclosed(0)
    codec = get_codec()
    first = desk.handle(raw, Source(TOPIC, 0, 3), NOW + 20)
    late = desk.handle(codec.encode("Verdict", final), Source(TOPIC, 0, 4), NOW + 21)  # the original, late
    assert first.reply is not None
    assert late.reply is None and late.audit == [] and late.closures == []


def test_a_post_hoc_break_glass_review_gets_no_closure(w: World) -> None:
    rec = proposal(break_glass=True, roles=("oncall",))
    codec = get_codec()
    _book, review = w.open(rec, decision("block"))
    assert review.post_hoc
    vote = w.vote(review, "dana", at=NOW + 10)
    desk = _desk(w, [codec.encode("ProposedAction", rec), review.verdict_raw, vote])
    assert desk.unclosed(0) == []
