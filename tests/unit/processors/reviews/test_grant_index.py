"""The grant index folds every reviews partition; the decide stage allows a covered proposal by grant.

Fail closed: before every partition was read to its end, after a feed failure, or without an
index at all (``verify --decisions``), no grant is found and the action is held for review.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from processors.reviews.grants import GrantIndex
from processors.reviews.requests import hold_for_review
from tests.unit.trust.review_fixtures import NOW, WINDOW_RULE, World, decision, proposal, reviews_topic, world
from trust.grants import GRANT_USED, GrantTerms
from trust.reviewers import ReviewerRegistry

HOUR = 3600 * 1_000_000
TERMS = GrantTerms("prod-delete", HOUR, "db/prod/")


@pytest.fixture
def w(tmp_path: Path) -> World:
    return world(tmp_path)


def _index(w: World, *reviews: list[bytes], partitions: int = 2, ready: bool = True) -> GrantIndex:
    index = GrantIndex(w.ring, w.registry)
    index.reset(range(partitions))
    for i, records in enumerate(reviews):
        for raw in records:
            index.apply(i % partitions, raw, NOW + 5)
    if ready:
        for p in range(partitions):
            index.at_end(p)
    return index


def _next(rec: dict[str, Any], resource: str = "db/prod/orders") -> dict[str, Any]:
    return {**proposal(), "actor": dict(rec["actor"]), "resource": resource, "justification": "same job"}


def test_an_approval_on_one_partition_allows_the_requesters_next_action(w: World) -> None:
    rec = proposal()
    records, final = reviews_topic(w, rec)
    index = _index(w, [], records)  # the review sits on partition 1
    later = _next(rec)
    grant = index.find(later, TERMS, NOW + 60)
    assert grant is not None and grant.review_id == final["review"]["review_id"]

    held = hold_for_review(later, decision(rule=WINDOW_RULE), NOW + 60, index)
    assert (held.decision.decision, held.decision.basis) == ("allow", "review_approved")
    assert held.review is not None and held.review["grant"] == GRANT_USED
    assert held.review["review_id"] == grant.review_id
    assert held.review["approvals"] == final["review"]["approvals"] and held.review["approvals"]
    assert held.review["expires_at"] == final["decided_at"] + HOUR
    assert grant.review_id in held.decision.reason and held.security is None


def test_not_ready_or_failed_finds_nothing_and_holds(w: World) -> None:
    rec = proposal()
    records, _ = reviews_topic(w, rec)
    index = _index(w, records, partitions=2, ready=False)
    index.at_end(0)  # partition 1 not read to its end yet
    assert index.find(_next(rec), TERMS, NOW + 60) is None
    assert hold_for_review(_next(rec), decision(rule=WINDOW_RULE), NOW + 60, index).decision.decision == "review"
    index.at_end(1)
    assert index.find(_next(rec), TERMS, NOW + 60) is not None
    index.failed("broker gone")
    assert index.find(_next(rec), TERMS, NOW + 60) is None
    assert not index.status()["ready"] and index.status()["failed"] == "broker gone"


def test_other_actor_outside_prefix_or_after_the_window_is_held(w: World) -> None:
    rec = proposal()
    records, _ = reviews_topic(w, rec)
    index = _index(w, records)
    other = {**_next(rec), "actor": {"id": "carol", "roles": [], "attributes": {}}}
    for later, at in ((other, NOW + 60), (_next(rec, "db/production/x"), NOW + 60), (_next(rec), NOW + 21 + HOUR)):
        held = hold_for_review(later, decision(rule=WINDOW_RULE), at, index)
        assert held.decision.decision == "review" and held.review is not None and held.review["grant"] == "window"


@pytest.mark.parametrize("outcome", ["deny", "expire"])
def test_a_denied_or_expired_review_grants_nothing(w: World, outcome: str) -> None:
    rec = proposal()
    records, _ = reviews_topic(w, rec, outcome=outcome)
    index = _index(w, records)
    assert index.grants() == [] and index.find(_next(rec), TERMS, NOW + 60) is None


def test_the_first_closure_wins(w: World) -> None:
    """An approval closure logged after an expiry closure of the same review opens nothing."""
    rec = proposal()
    expired, _ = reviews_topic(w, rec, outcome="expire")
    approved, _ = reviews_topic(w, rec)
    index = _index(w, [*expired, approved[-1]], partitions=1)
    assert index.grants() == []


def test_a_block_or_a_one_action_rule_is_never_granted(w: World) -> None:
    rec = proposal()
    records, _ = reviews_topic(w, rec)
    index = _index(w, records)
    assert hold_for_review(_next(rec), decision("block"), NOW + 60, index).decision.decision == "block"
    one = {**WINDOW_RULE, "grant": "action"}
    assert hold_for_review(_next(rec), decision(rule=one), NOW + 60, index).decision.decision == "review"


def test_require_reason_still_applies_under_a_grant(w: World) -> None:
    rec = proposal()
    records, _ = reviews_topic(w, rec)
    held = hold_for_review({**_next(rec), "justification": None}, decision(rule=WINDOW_RULE), NOW + 60,
                           _index(w, records))
    assert held.decision.decision == "block" and "requires a justification" in held.decision.reason


def test_a_forged_closure_opens_no_grant(w: World) -> None:
    """A final verdict not signed by the processor's key is ignored by the fold."""
    from schemas.codec import get_codec
    from trust.keys import SigningKey
    from trust.signatures import sign_record

    rec = proposal()
    records, final = reviews_topic(w, rec)
    forged = sign_record({**final, "signature": b""}, "signature", b"", SigningKey.generate())
    index = _index(w, [*records[:-1], get_codec().encode("Verdict", forged)], partitions=1)
    assert index.grants() == []


def test_the_latest_covering_grant_is_used(w: World) -> None:
    rec = proposal()
    first, _ = reviews_topic(w, rec, closed_at=NOW + 20)
    second, final = reviews_topic(w, {**proposal(), "actor": dict(rec["actor"])}, closed_at=NOW + 40)
    index = _index(w, first, second)
    grant = index.find(_next(rec), TERMS, NOW + 60)
    assert grant is not None and grant.review_id == final["review"]["review_id"]
    # a policy that narrows the window narrows existing grants at once
    narrowed = index.find(_next(rec), replace(TERMS, window_us=25), NOW + 60)
    assert narrowed is not None and narrowed.review_id == grant.review_id
    assert index.find(_next(rec), replace(TERMS, window_us=10), NOW + 60) is None


# -- the index's own reviewer registry follows reviewers.json ---------------------------------


def _fresh_index(w: World, partitions: int = 1) -> GrantIndex:
    """An index over its own registry of ``w``'s file, as the worker builds it at start."""
    index = GrantIndex(w.ring, ReviewerRegistry(w.registry.directory))
    index.reset(range(partitions))
    for p in range(partitions):
        index.at_end(p)
    return index


def test_a_reviewer_added_after_start_is_known_to_the_fold_and_its_approval_grants(w: World) -> None:
    """``keys add-reviewer`` while the worker runs: the index's registry picks nina up before it
    folds her vote (without the reload it never would), and her approval opens the grant."""
    index = _fresh_index(w)
    w.keys["nina"], _ = w.registry.add_reviewer("nina", ["dba"])  # another process writes the file
    assert index.registry.get("nina") is None  # loaded at start, not yet looked again
    rec = proposal()
    records, final = reviews_topic(w, rec, voter="nina")
    opened = [index.apply(0, raw, NOW + 5) for raw in records]
    nina = index.registry.get("nina")
    assert nina is not None and index.registry.by_key(nina.keys[0].key_id) == nina
    assert opened[-1] is not None and opened[-1].review_id == final["review"]["review_id"]
    grant = index.find(_next(rec), TERMS, NOW + 60)
    assert grant is not None and grant.review_id == final["review"]["review_id"]
    assert index.status()["registry_refused"] is None


def test_a_refused_reviewer_registry_keeps_the_last_good_one_and_the_feed_folding(
        w: World, caplog: pytest.LogCaptureFixture) -> None:
    """A bad edit of reviewers.json must not break the feed (that would fail every grant closed
    on every worker): the index warns once per refused state, shows it, and keeps folding."""
    index = _fresh_index(w)
    path = w.registry.path
    good = path.read_bytes()
    path.write_bytes(b'{"dana": [')
    rec = proposal()
    records, _ = reviews_topic(w, rec)
    with caplog.at_level(logging.WARNING, logger="lockgate.processor.grants"):
        for raw in records:
            index.apply(0, raw, NOW + 5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "not valid JSON" in warnings[0]
    status = index.status()
    assert status["ready"] and status["failed"] is None and status["grants"] == 1
    refused = status["registry_refused"]
    assert refused["file"] == str(path) and refused["reason"].startswith("RegistryError: ")
    assert "not valid JSON" in refused["reason"]
    assert [r.name for r in index.registry.reviewers()] == ["bob", "dana", "eve", "omar"]  # the last good one
    assert index.find(_next(rec), TERMS, NOW + 60) is not None

    path.chmod(0o660)  # a new refused state: warned again
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lockgate.processor.grants"):
        index.apply(0, None, NOW + 6)
    assert ["KeyFileUnsafe" in r.getMessage() for r in caplog.records] == [True]

    path.write_bytes(good)
    path.chmod(0o600)
    index.apply(0, None, NOW + 7)
    assert index.status()["registry_refused"] is None


def test_a_removed_reviewer_takes_no_folded_grant_back(w: World) -> None:
    """Grants come from processor-signed closures: removing the approving reviewer later (or
    restarting, and folding the topic again under the new registry) leaves the grant standing."""
    index = _fresh_index(w)
    rec = proposal()
    records, final = reviews_topic(w, rec)
    for raw in records:
        index.apply(0, raw, NOW + 5)
    entries = json.loads(w.registry.path.read_text())
    del entries["dana"]
    w.registry.path.write_text(json.dumps(entries))
    index.apply(0, None, NOW + 6)  # the next record: the index reloads first
    assert index.registry.get("dana") is None
    grant = index.find(_next(rec), TERMS, NOW + 60)
    assert grant is not None and grant.review_id == final["review"]["review_id"]

    restarted = _fresh_index(w)
    assert restarted.registry.get("dana") is None
    for raw in records:
        restarted.apply(0, raw, NOW + 5)
    again = restarted.find(_next(rec), TERMS, NOW + 60)
    assert again is not None and again.review_id == grant.review_id
