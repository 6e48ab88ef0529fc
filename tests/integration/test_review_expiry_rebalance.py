"""With two workers, a review expires on the survivor after its owner's ``kill -9``.

The review desk rebuilds a ``reviews`` partition when the group *assigns* it
(:mod:`processors.reviews.rebuilds`). ``test_review_expiry_restart`` covers the assignment at
a worker's start; this covers the other way a partition arrives: a rebalance inside a running
worker, after the other member died. The adversary is again silence — nothing is written to
``reviews`` after the kill but what the survivor writes itself: it must take the partition,
rebuild its open review and expire it on time (the waiting ``submit`` gets the final block,
exit 2), with the final verdict on the ledger once and ``verify`` clean.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from lockgate.kernel.partition_reader import read_topic
from processors.app import _app_id, faust_instance_id
from processors.policy.files import load_policy_text
from schemas.codec import get_codec
from tests.integration.conftest import (
    EXAMPLE_POLICY,
    ProcessorHandle,
    fresh_topics,
    start_processor,
    stop_processor,
    wait_for,
    wait_until_deciding,
)
from tests.integration.held_submit import HeldSubmits

pytestmark = pytest.mark.integration

EXPIRY_S = 30
SESSION_TIMEOUT_S = 6  # the broker's minimum: the dead member's partitions move after it
WORKERS = ("processor-1", "processor-2")


def _owners(bootstrap: str, group: str, topic: str) -> dict[int, str]:
    """``partition of topic -> processor id`` of the member the group assigned it to."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    ids = {faust_instance_id(w): w for w in WORKERS}
    return {tp.partition: ids.get(m.group_instance_id or "", m.member_id)
            for m in described.members for tp in m.assignment.topic_partitions if tp.topic == topic}


@pytest.fixture
def workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[dict[str, ProcessorHandle]]:
    text = EXAMPLE_POLICY.read_text()
    assert "expires_after: 1h" in text
    policy = load_policy_text(text.replace("expires_after: 1h", f"expires_after: {EXPIRY_S}s"), source="expiry.yaml")
    prefix = fresh_topics(kafka_bootstrap, "e", policy).prefix
    handles: dict[str, ProcessorHandle] = {}
    try:
        for w in WORKERS:
            handles[w] = start_processor(kafka_bootstrap, tmp_path / "home", prefix, tmp_path / f"{w}.log", {
                "LOCKGATE_PROCESSOR_ID": w, "LOCKGATE_PROCESSOR_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S)})
        reviews = handles[WORKERS[0]].topics.reviews
        wait_for(lambda: set(_owners(kafka_bootstrap, _app_id(prefix), reviews).values()) == set(WORKERS), 90,
                 "both workers holding reviews partitions")
        for handle in handles.values():
            wait_until_deciding(handle)
        yield handles
    finally:
        for handle in handles.values():
            stop_processor(handle)


def test_a_review_expires_on_the_survivor_after_its_owner_is_killed(
        kafka_bootstrap: str, workers: dict[str, ProcessorHandle], submit_held: HeldSubmits) -> None:
    any_worker = workers[WORKERS[0]]
    topics = any_worker.topics
    codec = get_codec()
    tag = uuid.uuid4().hex[:6]
    submit = submit_held(any_worker, actor=f"carol-{tag}", justification=f"owner dies {tag}", wait_review_s=240)
    row = submit.pending_review(90)
    [opened] = [r for r in read_topic(kafka_bootstrap, topics.reviews, "test")
                if r.value and codec.peek_schema(r.value) == "Verdict"
                and codec.decode_as("Verdict", r.value)["action_id"] == row["action_id"]]
    owner = _owners(kafka_bootstrap, _app_id(topics.prefix), topics.reviews)[opened.partition]
    [survivor] = [w for w in WORKERS if w != owner]
    before = len(workers[survivor].log.read_text())
    workers[owner].proc.kill()  # from here on nothing is written to reviews but by the survivor
    workers[owner].proc.wait(30)

    result = submit.wait_result(EXPIRY_S + 120)
    final = result.verdict
    assert result.returncode == 2, result.stderr
    assert (final["decision"], final["basis"], final["action_id"]) == ("block", "review_expired", row["action_id"])
    assert final["processor_id"] == survivor, final
    taken = workers[survivor].log.read_text()[before:]
    assert re.search(rf"reviews\[{opened.partition}\]: state rebuilt from \d+ record\(s\)", taken), taken[-4000:]

    def finals() -> list[dict[str, Any]] | None:
        events = [codec.decode_as("AuditEvent", r.value)
                  for r in read_topic(kafka_bootstrap, topics.audit, "test") if r.value]
        mine = [e for e in events if e["action_id"] == row["action_id"] and e["kind"] == "verdict"]
        return mine if len(mine) >= 2 else None

    verdicts = wait_for(finals, 60, "the final verdict on the ledger")
    assert len(verdicts) == 2  # the pending verdict and the expiry, once
    assert codec.decode_as("Verdict", verdicts[1]["payload"])["basis"] == "review_expired"
    res = workers[survivor].cli("verify", "--from-topics", "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 0 and report["findings"] == [], report
