"""A vote that arrives while ``reviewers.json`` is unreadable still decides its review.

The adversary is a bad edit of the reviewer registry on the worker's host: the file is
overwritten with broken JSON while a review waits, and the reviewer's signed vote arrives
right after (published here, since ``reviews approve`` itself reads that file). The worker
must keep the last good registry, judge the vote against it — the waiting ``submit`` gets
its final allow — and put exactly one ``security`` event about the refused reload on the
ledger; nothing is dead-lettered. The worker's grant index, which folds the same vote with
a registry of its own, refuses the file too and shows it on ``/grants`` while its feed
keeps folding (it does not ledger the refusal a second time).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from lockgate.cli.reviews import fold_topic
from lockgate.kernel.home import Home
from lockgate.kernel.keyed_publish import publish_keyed
from lockgate.kernel.partition_reader import read_topic
from schemas.codec import get_codec
from tests.integration.conftest import Worker, get_json, wait_for
from tests.integration.held_submit import HeldSubmits
from trust.keys import write_key_file
from trust.review_votes import reviewer_key
from trust.reviewers import ReviewerRegistry
from trust.reviews import make_vote

pytestmark = pytest.mark.integration


def test_a_vote_during_a_bad_registry_edit_is_judged_against_the_last_good_one(worker: Worker,
                                                                               submit_held: HeldSubmits) -> None:
    tag = uuid.uuid4().hex[:6]
    dana = f"dana-{tag}"
    home = worker.handle.home
    topics = worker.handle.topics
    registry = ReviewerRegistry(Home(home).keys)
    registry.add_reviewer(dana, ["dba"])
    marker = f"vote during a bad edit {tag}"
    submit = submit_held(worker.handle, actor=f"carol-{tag}", justification=marker, wait_review_s=180)
    good = registry.path.read_bytes()
    try:
        def pending() -> Any:
            folded = fold_topic(worker.handle.bootstrap, topics.reviews, registry, home)
            return next((r for r in folded.reviews if r.proposal.get("justification") == marker), None)

        review = wait_for(pending, 90, "the review pending")
        vote = make_vote(review, dana, reviewer_key(registry, dana), "approve", "ok", time.time_ns() // 1000)
        write_key_file(registry.path, b'{"' + dana.encode() + b'": [', 0o600, overwrite=True)  # whole, 0600, not JSON
        publish_keyed(worker.handle.bootstrap, topics.reviews, review.review_id.encode(),
                      get_codec().encode("ReviewVote", vote))

        result = submit.wait_result(120)
        assert result.returncode == 0, result.stderr
        final = result.verdict
        assert final["basis"] == "review_approved" and dana in final["reason"], final

        def grants_refused() -> Any:  # the grant index folds the same vote: it refuses the file too
            page = get_json(f"http://127.0.0.1:{worker.handle.port}/grants", None)
            return page if page["registry_refused"] is not None else None

        page = wait_for(grants_refused, 30, "the grant index showing the refused registry")
        assert page["ready"] and page["failed"] is None, page  # the feed kept folding: not ledgered twice
        assert page["registry_refused"]["file"] == str(registry.path)
        assert "not valid JSON" in page["registry_refused"]["reason"]
    finally:
        write_key_file(registry.path, good, 0o600, overwrite=True)

    codec = get_codec()

    def ledgered() -> list[dict[str, Any]] | None:
        events = [codec.decode_as("AuditEvent", r.value)
                  for r in read_topic(worker.handle.bootstrap, topics.audit, "test") if r.value]
        finals = [e for e in events if e["action_id"] == review.action_id and e["kind"] == "verdict"]
        return events if len(finals) >= 2 else None

    events = wait_for(ledgered, 60, "the final verdict on the ledger")
    refusals = [e for e in events if e["kind"] == "security" and "reviewer registry" in e["detail"]]
    assert len(refusals) == 1, refusals
    assert "not valid JSON" in refusals[0]["detail"] and refusals[0]["payload"].startswith(b'{"dana-')
    votes = [e for e in events if e["action_id"] == review.action_id and e["kind"] == "review"]
    assert [v["detail"].split(":")[0] for v in votes] == ["accepted"]
    assert not [e for e in events if e["kind"] == "dead_letter"]
    assert not [r for r in read_topic(worker.handle.bootstrap, topics.deadletter, "test") if r.value]
