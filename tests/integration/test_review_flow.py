"""Reviews end to end: a real broker, a real Faust worker, the CLI as reviewers use it.

A production DELETE matched by the example policy's review rule waits; the requester's own
approval (under another spelling of their identity) and an ineligible reviewer's are
refused and recorded as security events; a second person approves from the CLI; the
guarded body then runs and its commit verifies. A denial makes ``submit --wait-review``
exit 1; break-glass is allowed loudly and listed by ``verify`` until its post-hoc review.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lockgate.kernel.home import Home
from lockgate.kernel.partition_reader import read_topic
from producers import Action, Actor, ReviewPending
from schemas.codec import get_codec
from tests.integration.conftest import ProcessorHandle, wait_for
from tests.integration.held_submit import HeldSubmits
from trust.reviewers import ReviewerRegistry

SQL = "DELETE FROM customers WHERE id = 7"


@pytest.fixture(scope="module")
def people(processor: ProcessorHandle) -> Iterator[dict[str, str]]:
    """Reviewers with unique names (the test home is shared): a DBA, the requester (also a DBA), an outsider."""
    tag = uuid.uuid4().hex[:6]
    names = {"dba": f"dana-{tag}", "requester": f"bob-{tag}", "outsider": f"eve-{tag}",
             "requester_actor": f"Bob.Smith-{tag}@corp.example"}
    registry = ReviewerRegistry(Home(processor.home).keys)
    registry.add_reviewer(names["dba"], ["dba"])
    registry.add_reviewer(names["requester"], ["dba"], [names["requester_actor"].lower()])
    registry.add_reviewer(names["outsider"], ["finance"])
    yield names


def _open_review(processor: ProcessorHandle, action_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        res = processor.cli("reviews", "list", "--json")
        assert res.returncode == 0, res.stderr
        return next((r for r in json.loads(res.stdout) if r["action_id"] == action_id), None)

    row: dict[str, Any] = wait_for(found, 60, "the review in `reviews list`")
    return row


def _vote(processor: ProcessorHandle, verb: str, review_id: str, who: str) -> tuple[int, dict[str, Any]]:
    res = processor.cli("reviews", verb, review_id, "--as", who, "--reason", "checked", "--json")
    assert res.returncode in (0, 1), res.stderr
    return res.returncode, json.loads(res.stdout)


def _ledger(processor: ProcessorHandle, action_id: str) -> list[dict[str, Any]]:
    codec = get_codec()
    events = [codec.decode_as("AuditEvent", r.value) for r in read_topic(processor.bootstrap,
                                                                          processor.topics.audit, "test")
              if r.value]
    return [e for e in events if e["action_id"] == action_id]


def _ledger_with(processor: ProcessorHandle, action_id: str, kind: str) -> list[dict[str, Any]]:
    """The action's ledger events, once one of ``kind`` is among them."""
    def ready() -> list[dict[str, Any]] | None:
        events = _ledger(processor, action_id)
        return events if any(e["kind"] == kind for e in events) else None

    found: list[dict[str, Any]] = wait_for(ready, 60, f"a {kind} event of {action_id} on the ledger")
    return found


def _verify(processor: ProcessorHandle) -> dict[str, Any]:
    res = processor.cli("verify", "--from-topics", "--json")
    assert res.returncode in (0, 1), res.stderr
    report: dict[str, Any] = json.loads(res.stdout)
    return report


def test_prod_delete_waits_refuses_self_approval_and_runs_after_a_second_person_approves(
        processor: ProcessorHandle, people: dict[str, str]) -> None:
    ran: list[str] = []
    result: dict[str, Any] = {}
    with processor.guard(service="cli") as guard:
        pending = guard.request(Action(Actor(people["requester_actor"], ("dev",)), "db.query", "db/prod/customers",
                                       {"sql": SQL}, justification="GDPR erasure request 881"))
        assert pending.verdict.decision == "review" and not pending.done
        assert pending.poll() is None  # nothing decided yet
        with pytest.raises(ReviewPending):
            guard.check(Action(Actor("someone", ()), "db.query", "db/prod/customers", {"sql": SQL},
                               justification="x"), wait_for_review=0.5)

        def guarded() -> None:
            try:
                with guard.action(actor=people["requester_actor"], roles=["dev"], type="db.query",
                                  resource="db/prod/customers", attributes={"sql": SQL},
                                  justification="GDPR erasure request 882", wait_for_review=90) as act:
                    ran.append(act.verdict.basis)
                    act.record_change(before={"id": 7}, after=None)
                result["verdict"] = act.verdict
            except Exception as exc:  # surfaced by the assertions below
                result["error"] = exc

        body = threading.Thread(target=guarded)
        body.start()
        row = wait_for(lambda: next((r for r in json.loads(processor.cli("reviews", "list", "--json").stdout)
                                     if r["justification"] == "GDPR erasure request 882"), None),
                       60, "the guarded action's review")
        assert row["requester"] == people["requester_actor"] and row["rule_id"] == "prod-customer-delete-review"
        assert not ran, "the body ran before any approval"

        # The requester approves their own request under another spelling: refused, security event.
        code, out = _vote(processor, "approve", row["review_id"], people["requester"])
        assert (code, out["outcome"]) == (1, "security") and "self-approval" in out["detail"]
        code, out = _vote(processor, "approve", row["review_id"], people["outsider"])
        assert (code, out["outcome"]) == (1, "security") and "approver groups" in out["detail"]
        assert not ran
        code, out = _vote(processor, "approve", row["review_id"], people["dba"])
        assert (code, out["outcome"], out["decided"]) == (0, "accepted", "approved")
        body.join(90)
        assert "error" not in result, result.get("error")
        assert ran == ["review_approved"]
        # the first request is still pending: the handle waits for it
        assert pending.poll() is None

    events = _ledger_with(processor, row["action_id"], "outcome")
    kinds = [e["kind"] for e in events]
    assert kinds.count("security") == 2 and kinds.count("review") == 1 and kinds.count("verdict") == 2
    details = " ".join(str(e["detail"]) for e in events if e["kind"] == "security")
    assert "self-approval" in details and "approver groups" in details
    report = _verify(processor)
    assert report["events"] and not [f for f in report["findings"] if f["action_id"] == row["action_id"]]
    assert not [f for f in report["findings"] if f["kind"].startswith(("review", "approval"))]


def test_denied_review_makes_submit_exit_1_and_a_denial_is_final(processor: ProcessorHandle, people: dict[str, str],
                                                                  submit_held: HeldSubmits) -> None:
    marker = f"deny-{uuid.uuid4().hex[:6]}"
    submit = submit_held(processor, actor="carol", sql=SQL, justification=marker, wait_review_s=90)
    row = submit.pending_review(60)
    code, out = _vote(processor, "deny", row["review_id"], people["dba"])
    assert (code, out["decided"]) == (0, "denied")
    result = submit.wait_result(90)
    assert result.returncode == 1, result.stderr
    assert result.verdict["basis"] == "review_denied"
    code, out = _vote(processor, "approve", row["review_id"], people["requester"])  # another DBA, too late
    assert (code, out["outcome"]) == (1, "refused") and "a denial is final" in out["detail"]


def test_missing_justification_blocks(processor: ProcessorHandle) -> None:
    res = processor.cli("submit", "--actor", "carol", "--type", "db.query", "--resource", "db/prod/customers",
                        "--sql", SQL, "--json")
    assert res.returncode == 1, res.stderr
    assert "requires a justification" in json.loads(res.stdout)["reason"]


def test_break_glass_is_loud_and_in_verify_until_reviewed(processor: ProcessorHandle,
                                                          people: dict[str, str]) -> None:
    res = processor.cli("submit", "--actor", "ops", "--role", "oncall", "--type", "db.query", "--resource",
                        "db/prod/customers", "--sql", SQL, "--justification", "incident 42: runaway job",
                        "--break-glass", "--json")
    assert res.returncode == 0, res.stderr
    verdict = json.loads(res.stdout)
    assert verdict["basis"] == "break_glass" and "BREAK-GLASS" in verdict["reason"]
    aid = verdict["action_id"]
    events = _ledger_with(processor, aid, "verdict")
    assert any("BREAK-GLASS" in str(e["detail"]) for e in events if e["kind"] == "security")
    report = _verify(processor)
    assert [f["kind"] for f in report["findings"] if f["action_id"] == aid] == ["break_glass_unreviewed"]
    code, out = _vote(processor, "approve", verdict["review"]["review_id"], people["dba"])
    assert (code, out["outcome"]) == (0, "accepted")
    wait_for(lambda: not any(f["action_id"] == aid for f in _verify(processor)["findings"]), 60,
             "verify to drop the reviewed break-glass action")


def test_break_glass_without_the_role_is_refused_and_recorded(processor: ProcessorHandle) -> None:
    res = processor.cli("submit", "--actor", "mallory", "--role", "dev", "--type", "db.query", "--resource",
                        "db/prod/invoices", "--sql", "DROP TABLE invoices", "--justification", "trust me",
                        "--break-glass", "--json")
    assert res.returncode == 1, res.stderr
    aid = json.loads(res.stdout)["action_id"]
    events = _ledger_with(processor, aid, "security")
    assert any("break-glass refused" in str(e["detail"]) for e in events)
