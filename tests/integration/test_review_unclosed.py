"""A vote the group's position passed unhandled still reaches its requester.

The adversary here is the consumer group's committed position: the worker is killed with
SIGKILL while a review waits, a reviewer approves meanwhile, and the review agent's
committed offset is then moved past that vote (as if a worker had handled it and died
before publishing anything, or Faust had skipped it and committed past the gap, as
:mod:`processors.reviews.rebuilds` describes). The restarted worker
folds the vote as handled when it rebuilds the partition — which it does when the group
assigns it the partition. It must notice that the review the first vote decided has no
closure in the log and close it, so the waiting ``submit`` gets its final allow and the
ledger holds exactly one final verdict; a second reviewer's vote on the same review (same
key, same partition) is refused: the review is already approved.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from lockgate.kernel.home import Home
from lockgate.kernel.partition_reader import read_topic
from processors.app import _app_id
from schemas.codec import get_codec
from tests.integration.conftest import Worker, wait_for
from tests.integration.held_submit import HeldSubmits
from trust.reviewers import ReviewerRegistry

pytestmark = pytest.mark.integration


def _move_past(admin: AdminClient, group: str, tp: TopicPartition) -> None:
    """Commit ``tp`` for ``group`` once the killed worker's static membership has expired."""
    def empty() -> bool:
        [desc] = admin.describe_consumer_groups([group]).values()
        return bool(desc.result(10).state == ConsumerGroupState.EMPTY)

    wait_for(empty, 60, f"group {group} empty after the kill")
    [done] = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [tp])]).values()
    done.result(10)


def test_a_vote_the_group_skipped_is_still_answered(worker: Worker, submit_held: HeldSubmits) -> None:
    tag = uuid.uuid4().hex[:6]
    dana, omar = f"dana-{tag}", f"omar-{tag}"
    registry = ReviewerRegistry(Home(worker.handle.home).keys)
    registry.add_reviewer(dana, ["dba"])
    registry.add_reviewer(omar, ["dba"])
    topics = worker.handle.topics
    submit = submit_held(worker.handle, actor=f"carol-{tag}", justification=f"skipped vote {tag}", wait_review_s=180)
    row = submit.pending_review(90)
    worker.kill9()
    res = worker.cli("reviews", "approve", row["review_id"], "--as", dana, "--reason", "ok", "--json")
    assert res.returncode == 0, res.stdout + res.stderr

    codec = get_codec()
    [vote] = [r for r in read_topic(worker.handle.bootstrap, topics.reviews, "test")
              if r.value and codec.peek_schema(r.value) == "ReviewVote"]
    admin = AdminClient({"bootstrap.servers": worker.handle.bootstrap})
    _move_past(admin, _app_id(topics.prefix), TopicPartition(topics.reviews, vote.partition, vote.offset + 1))

    worker.restart()
    res = worker.cli("reviews", "approve", row["review_id"], "--as", omar, "--reason", "me too", "--json")
    second = json.loads(res.stdout)  # refused (exit 1): dana's vote already decided the review
    assert res.returncode == 1 and second["outcome"] == "refused" and "already approved" in second["detail"], second
    result = submit.wait_result(120)
    assert result.returncode == 0, result.stderr
    final = result.verdict
    assert final["basis"] == "review_approved" and dana in final["reason"], final

    log = worker.handle.log.read_text()
    assert "have no closure in the log; closing them now" in log

    def finals() -> list[dict[str, Any]] | None:
        events = [codec.decode_as("AuditEvent", r.value)
                  for r in read_topic(worker.handle.bootstrap, topics.audit, "test") if r.value]
        mine = [e for e in events if e["action_id"] == row["action_id"] and e["kind"] == "verdict"]
        return mine if len(mine) >= 2 else None

    verdicts = wait_for(finals, 60, "the final verdict on the ledger")
    assert len(verdicts) == 2  # the pending verdict and one final verdict, not two
