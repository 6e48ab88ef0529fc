"""A review expires after a ``kill -9`` even when nothing more reaches its partition.

The adversary is silence: the worker is killed with SIGKILL while a review waits, a new
worker starts, and nothing is ever written to the ``reviews`` topic again — no vote, no
other review. The restarted worker must rebuild the partition's state when the group
assigns it the partition (not when its next record comes, which never happens) and expire
the review on time: the waiting ``submit`` gets the final block verdict (basis
``review_expired``, exit 2), the closure is on the reviews topic, the final verdict is on
the ledger once, and ``verify`` finds nothing wrong.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockgate.kernel.partition_reader import read_topic
from processors.policy.files import load_policy_text
from schemas.codec import get_codec
from tests.integration.conftest import EXAMPLE_POLICY, Worker, running_worker, wait_for
from tests.integration.held_submit import HeldSubmits

pytestmark = pytest.mark.integration

EXPIRY_S = 30  # long enough to kill the first worker before it expires the review itself


@pytest.fixture
def worker(kafka_bootstrap: str, test_home: Path, tmp_path: Path) -> Iterator[Worker]:
    text = EXAMPLE_POLICY.read_text()
    assert "expires_after: 1h" in text
    policy = load_policy_text(text.replace("expires_after: 1h", f"expires_after: {EXPIRY_S}s"), source="expiry.yaml")
    with running_worker(kafka_bootstrap, test_home, tmp_path / "processor.log", "x", policy) as w:
        yield w


def _verdicts_on_reviews(worker: Worker) -> list[tuple[int, dict[str, Any]]]:
    """(partition, Verdict) of every verdict on the reviews topic: pending ones and closures."""
    codec = get_codec()
    return [(r.partition, codec.decode_as("Verdict", r.value))
            for r in read_topic(worker.handle.bootstrap, worker.handle.topics.reviews, "test")
            if r.value and codec.peek_schema(r.value) == "Verdict"]


def test_a_review_expires_after_a_kill_9_with_no_more_traffic(worker: Worker, submit_held: HeldSubmits) -> None:
    tag = uuid.uuid4().hex[:6]
    marker = f"expires unattended {tag}"
    submit = submit_held(worker.handle, actor=f"carol-{tag}", justification=marker, wait_review_s=240)
    row = submit.pending_review(90)
    worker.kill9()
    # The first worker did not get to expire it: only the pending verdict is on the topic.
    [(partition, opened)] = _verdicts_on_reviews(worker)
    assert opened["decision"] == "review"
    assert submit.waiting()

    before = len(worker.handle.log.read_text())
    worker.restart()  # from here on nothing is written to the reviews topic but the expiry
    result = submit.wait_result(EXPIRY_S + 120)
    final = result.verdict
    assert result.returncode == 2, result.stderr
    assert (final["decision"], final["basis"]) == ("block", "review_expired"), final
    assert final["action_id"] == row["action_id"]

    closures = [v for _p, v in _verdicts_on_reviews(worker) if v["decision"] != "review"]
    assert [(v["basis"], v["review"]["review_id"]) for v in closures] == [("review_expired", row["review_id"])]
    restarted = worker.handle.log.read_text()[before:]
    # Rebuilt up to where the group resumes (2 once the first worker committed the opening
    # records; 0 if it died first, and then the agent handles them again), with no vote to wake it.
    assert re.search(rf"reviews\[{partition}\]: state rebuilt from (\d+) record\(s\) before offset \1\b",
                     restarted), restarted[-4000:]

    codec = get_codec()

    def finals() -> list[dict[str, Any]] | None:
        events = [codec.decode_as("AuditEvent", r.value)
                  for r in read_topic(worker.handle.bootstrap, worker.handle.topics.audit, "test") if r.value]
        mine = [e for e in events if e["action_id"] == row["action_id"] and e["kind"] == "verdict"]
        return mine if len(mine) >= 2 else None

    verdicts = wait_for(finals, 60, "the final verdict on the ledger")
    assert len(verdicts) == 2  # the pending verdict and the expiry, once
    assert codec.decode_as("Verdict", verdicts[1]["payload"])["basis"] == "review_expired"
    res = worker.cli("verify", "--from-topics", "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 0 and report["findings"] == [], report
