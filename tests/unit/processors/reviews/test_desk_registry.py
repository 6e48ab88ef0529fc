"""A bad edit of ``reviewers.json`` while votes arrive: the last good registry judges them.

An unreadable registry (bad JSON, group- or world-writable) used to make every vote's
handling raise, so the votes were dead-lettered — lost for their reviews. Now the desk
keeps the last good registry, judges the votes against it, and ledgers one ``security``
event per refused state of the file, like the service registry.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from processors.reviews.desk import ReviewDesk
from processors.stage import Source
from tests.unit.trust.review_fixtures import NOW, REVIEW_RULE, World, proposal, reviews_topic, world
from trust.reviewers import ReviewerRegistry

TOPIC = "lockgate.reviews"


@pytest.fixture
def w(tmp_path: Path) -> World:
    return world(tmp_path)


def _desk_with_two_open_reviews(w: World) -> tuple[ReviewDesk, list[bytes], list[bytes]]:
    first, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    second, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE, outcome="deny")
    desk = ReviewDesk(w.key, "p2", w.registry)
    desk.rebuild(0, 4, [(raw, NOW) for raw in first[:2] + second[:2]])
    return desk, first, second


def _kinds(events: list[dict[str, object]]) -> list[object]:
    return [e["kind"] for e in events]


def test_bad_json_keeps_the_last_good_registry_and_is_ledgered_once(w: World) -> None:
    desk, first, second = _desk_with_two_open_reviews(w)
    w.registry.path.write_text('{"dana": [')

    out = desk.handle(first[2], Source(TOPIC, 0, 4), NOW + 10)  # dana's approval
    assert _kinds(out.audit) == ["security", "review"]
    refusal, vote = out.audit
    assert "reviewer registry" in str(refusal["detail"]) and "not valid JSON" in str(refusal["detail"])
    assert refusal["payload"] == b'{"dana": ['
    assert str(vote["detail"]).startswith("accepted") and len(out.closures) == 1

    again = desk.handle(second[2], Source(TOPIC, 0, 5), NOW + 11)  # dana's denial: judged, no second refusal
    assert _kinds(again.audit) == ["review"] and len(again.closures) == 1
    assert desk.refusals() == []


def test_an_unsafe_registry_is_refused_on_each_change_and_votes_still_count(w: World) -> None:
    desk, first, second = _desk_with_two_open_reviews(w)
    path = w.registry.path
    path.chmod(0o666)  # anyone could make themselves a reviewer
    desk.refresh_registry()  # the worker's timer, with no vote arriving
    [refusal] = desk.refusals()
    assert refusal["kind"] == "security" and "KeyFileUnsafe" in str(refusal["detail"])

    os.utime(path, ns=(1, 2))  # touched while still unsafe: a new state, refused and ledgered again
    out = desk.handle(first[2], Source(TOPIC, 0, 4), NOW + 10)
    assert _kinds(out.audit) == ["security", "review"] and out.audit[0]["event_id"] != refusal["event_id"]
    assert str(out.audit[1]["detail"]).startswith("accepted")

    path.chmod(0o600)  # repaired: reloaded, nothing to report
    fine = desk.handle(second[2], Source(TOPIC, 0, 5), NOW + 11)
    assert _kinds(fine.audit) == ["review"] and len(fine.closures) == 1


def test_a_reviewer_added_a_moment_ago_counts_at_once(w: World) -> None:
    desk, first, _ = _desk_with_two_open_reviews(w)
    ReviewerRegistry(w.registry.directory).add_reviewer("nadia", ["dba"])  # `keys add-reviewer`, elsewhere
    out = desk.handle(first[2], Source(TOPIC, 0, 4), NOW + 10)
    assert _kinds(out.audit) == ["review"]  # a good reload reports nothing
    assert w.registry.get("nadia") is not None  # picked up before the vote, with no wait
