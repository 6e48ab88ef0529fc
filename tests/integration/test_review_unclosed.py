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
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from lockgate.kernel.home import Home
from lockgate.kernel.partition_reader import read_topic
from processors.app import _app_id
from schemas.codec import get_codec
from tests.integration.conftest import Worker, running_worker, wait_for
from trust.reviewers import ReviewerRegistry

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(kafka_bootstrap: str, test_home: Path, tmp_path: Path) -> Iterator[Worker]:
    with running_worker(kafka_bootstrap, test_home, tmp_path / "processor.log", "u") as w:
        yield w


def _move_past(admin: AdminClient, group: str, tp: TopicPartition) -> None:
    """Commit ``tp`` for ``group`` once the killed worker's static membership has expired."""
    def empty() -> bool:
        [desc] = admin.describe_consumer_groups([group]).values()
        return bool(desc.result(10).state == ConsumerGroupState.EMPTY)

    wait_for(empty, 60, f"group {group} empty after the kill")
    [done] = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [tp])]).values()
    done.result(10)


def test_a_vote_the_group_skipped_is_still_answered(worker: Worker) -> None:
    tag = uuid.uuid4().hex[:6]
    dana, omar = f"dana-{tag}", f"omar-{tag}"
    registry = ReviewerRegistry(Home(worker.handle.home).keys)
    registry.add_reviewer(dana, ["dba"])
    registry.add_reviewer(omar, ["dba"])
    topics = worker.handle.topics
    submit = subprocess.Popen(
        [sys.executable, "-m", "lockgate.cli", "submit", "--actor", f"carol-{tag}", "--type", "db.query",
         "--resource", "db/prod/customers", "--sql", "DELETE FROM customers WHERE id = 7",
         "--justification", f"skipped vote {tag}", "--wait-review", "180", "--json"],
        env=worker.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def pending() -> dict[str, Any] | None:
            res = worker.cli("reviews", "list", "--json")
            assert res.returncode == 0, res.stderr
            return next((r for r in json.loads(res.stdout) if r["justification"] == f"skipped vote {tag}"), None)

        row: dict[str, Any] = wait_for(pending, 90, "the review pending")
        worker.kill9()
        res = worker.cli("reviews", "approve", row["review_id"], "--as", dana, "--reason", "ok", "--json")
        assert res.returncode == 0, res.stdout + res.stderr

        codec = get_codec()
        [vote] = [r for r in read_topic(worker.handle.bootstrap, topics.reviews, "test")
                  if r.value and codec.peek_schema(r.value) == "ReviewVote"]
        admin = AdminClient({"bootstrap.servers": worker.handle.bootstrap})
        _move_past(admin, _app_id(topics.prefix), TopicPartition(topics.reviews, vote.partition, vote.offset + 1))

        started = time.monotonic()
        worker.restart()
        res = worker.cli("reviews", "approve", row["review_id"], "--as", omar, "--reason", "me too", "--json")
        second = json.loads(res.stdout)  # refused (exit 1): dana's vote already decided the review
        assert res.returncode == 1 and second["outcome"] == "refused" and "already approved" in second["detail"], second
        stdout, stderr = submit.communicate(timeout=120)
        assert submit.returncode == 0, stderr
        final = json.loads(stdout)
        assert final["basis"] == "review_approved" and dana in final["reason"], final
        assert time.monotonic() - started < 120
    finally:
        if submit.poll() is None:
            submit.kill()
            submit.wait(10)

    log = worker.handle.log.read_text()
    assert "have no closure in the log; closing them now" in log

    def finals() -> list[dict[str, Any]] | None:
        events = [codec.decode_as("AuditEvent", r.value)
                  for r in read_topic(worker.handle.bootstrap, topics.audit, "test") if r.value]
        mine = [e for e in events if e["action_id"] == row["action_id"] and e["kind"] == "verdict"]
        return mine if len(mine) >= 2 else None

    verdicts = wait_for(finals, 60, "the final verdict on the ledger")
    assert len(verdicts) == 2  # the pending verdict and one final verdict, not two
