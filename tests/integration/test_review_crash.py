"""Review state survives ``kill -9`` of the processor: it is the reviews topic, not memory.

Two production DELETEs wait for review (``lockgate submit --wait-review``, each its own
process). The worker is killed with SIGKILL. One review is approved while no worker runs
(the vote waits in the reviews topic); a new worker starts, rebuilds the pending reviews
by reading the topic, and the other review is approved after the restart. Both waiting
submits exit 0 with basis ``review_approved``; each action has exactly one final verdict
and one accepted vote on the ledger, and ``verify`` finds nothing wrong with them.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from lockgate.kernel.home import Home
from lockgate.kernel.partition_reader import read_topic
from schemas.codec import get_codec
from tests.integration.conftest import Worker, wait_for
from tests.integration.held_submit import HeldSubmits
from trust.reviewers import ReviewerRegistry

pytestmark = pytest.mark.integration


def test_pending_reviews_are_approved_across_a_kill_9(worker: Worker, submit_held: HeldSubmits) -> None:
    tag = uuid.uuid4().hex[:6]
    dana = f"dana-{tag}"
    ReviewerRegistry(Home(worker.handle.home).keys).add_reviewer(dana, ["dba"])
    markers = {"during": f"approved while down {tag}", "after": f"approved after restart {tag}"}
    submits = {k: submit_held(worker.handle, actor=f"carol-{tag}", justification=m, wait_review_s=180)
               for k, m in markers.items()}
    rows = {k: held.pending_review(90) for k, held in submits.items()}
    worker.kill9()
    assert all(s.waiting() for s in submits.values())

    res = worker.cli("reviews", "approve", rows["during"]["review_id"], "--as", dana, "--reason", "ok", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["decided"] == "approved"
    assert submits["during"].waiting()  # no worker: nobody has answered yet

    worker.restart()
    res = worker.cli("reviews", "approve", rows["after"]["review_id"], "--as", dana, "--reason", "ok", "--json")
    assert res.returncode == 0, res.stdout + res.stderr

    for k, held in submits.items():
        result = held.wait_result(120)
        assert result.returncode == 0, f"{k}: {result.stderr}"
        assert result.verdict["basis"] == "review_approved" and dana in result.verdict["reason"]

    codec = get_codec()
    topics = worker.handle.topics

    def ledger_complete() -> list[dict[str, Any]] | None:
        events = [codec.decode_as("AuditEvent", r.value)
                  for r in read_topic(worker.handle.bootstrap, topics.audit, "test") if r.value]
        mine = [e for e in events if e["action_id"] in {r["action_id"] for r in rows.values()}]
        finals = [e for e in mine if e["kind"] == "verdict"]
        return mine if len(finals) >= 4 else None

    events = wait_for(ledger_complete, 60, "both final verdicts on the ledger")
    for row in rows.values():
        kinds = [e["kind"] for e in events if e["action_id"] == row["action_id"]]
        # the proposal, the pending verdict, one accepted vote, one final verdict: none doubled by the restart
        assert kinds.count("verdict") == 2 and kinds.count("review") == 1, kinds
    res = worker.cli("verify", "--from-topics", "--json")
    report = json.loads(res.stdout)
    mine = [f for f in report["findings"] if f["action_id"] in {r["action_id"] for r in rows.values()}]
    assert not mine, mine
