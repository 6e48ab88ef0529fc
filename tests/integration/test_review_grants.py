"""Time-boxed review grants end to end: a real broker, a real Faust worker, the CLI, kill -9.

One production DELETE under a ``grant: window`` rule waits and is approved by a second
person; the same actor's next DELETE under the grant's prefix is allowed at once, citing
the grant; another actor's is held; after ``kill -9`` and a restart the worker rebuilds its
grants from the reviews topic and still allows an in-window action by grant. ``verify``
finds nothing wrong with any of it — until a forged allow citing the grant for an action
it does not cover is put on the ledger with the processor's own key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from deploy.identity import processor_key_path
from lockgate.kernel.home import Home
from lockgate.kernel.partition_reader import read_topic
from lockgate.kernel.topic_admin import ensure_topics
from processors.policy.files import load_policy_text
from processors.policy.store import publish_policy
from producers import Action, Actor, ReviewPending
from schemas.codec import get_codec
from schemas.records import AuditKind, audit_event
from schemas.topics import Topics
from tests.integration.conftest import (
    ProcessorHandle,
    Worker,
    get_json,
    running_worker,
    start_processor,
    stop_processor,
    wait_for,
    wait_until_deciding,
)
from tests.integration.held_submit import HeldSubmits
from trust.bindings import record_sha256
from trust.grants import GRANT_USED
from trust.keys import SigningKey
from trust.reviewers import ReviewerRegistry
from trust.signatures import sign_record

pytestmark = pytest.mark.integration

SQL = "DELETE FROM orders WHERE id = 7"
POLICY = """\
name: grants
default: allow
rules:
  - id: prod-delete-grant
    match:
      types: ["db.*"]
      resources: ["db/*"]
    when: sql.kinds.exists(k, k == "DELETE")
    effect: review
    review:
      approvers: [dba]
      grant: window
      grant_window: 1h
      grant_resource_prefix: db/prod/
  - id: no-drop
    match:
      types: ["db.*"]
    when: sql.kinds.exists(k, k == "DROP")
    effect: block
"""


@pytest.fixture
def worker(kafka_bootstrap: str, test_home: Path, tmp_path: Path) -> Iterator[Worker]:
    policy = load_policy_text(POLICY, source="grants.yaml")
    with running_worker(kafka_bootstrap, test_home, tmp_path / "processor.log", "g", policy) as w:
        yield w


def _submit(worker: Worker, actor: str, resource: str, *extra: str, sql: str = SQL) -> tuple[int, dict[str, Any]]:
    res = worker.cli("submit", "--actor", actor, "--type", "db.query", "--resource", resource, "--sql", sql,
                     "--json", *extra)
    assert res.returncode in (0, 1), res.stdout + res.stderr
    verdict: dict[str, Any] = json.loads(res.stdout)
    return res.returncode, verdict


def _grants_page(worker: Worker | ProcessorHandle, review_id: str) -> dict[str, Any]:
    """The worker's own view of its grants, once it is rebuilt and holds ``review_id``'s."""
    port = worker.handle.port if isinstance(worker, Worker) else worker.port

    def ready() -> dict[str, Any] | None:
        page = get_json(f"http://127.0.0.1:{port}/grants", None)
        if not page or not page["ready"]:
            return None
        return next((g for g in page["items"] if g["review_id"] == review_id), None)

    row: dict[str, Any] = wait_for(ready, 60, f"the worker to hold grant {review_id}")
    return row


def _audit(worker: Worker) -> list[dict[str, Any]]:
    codec = get_codec()
    return [codec.decode_as("AuditEvent", r.value)
            for r in read_topic(worker.handle.bootstrap, worker.handle.topics.audit, "test") if r.value]


def _verify(worker: Worker) -> dict[str, Any]:
    res = worker.cli("verify", "--from-topics", "--decisions", "--json")
    assert res.returncode in (0, 1), res.stderr
    report: dict[str, Any] = json.loads(res.stdout)
    return report


def test_an_approval_grants_the_requester_a_window_that_survives_kill_9(worker: Worker,
                                                                        submit_held: HeldSubmits) -> None:
    tag = uuid.uuid4().hex[:6]
    dana, carol, dave = f"dana-{tag}", f"carol-{tag}", f"dave-{tag}"
    # dana is registered after the worker started: the desk and the grant index both reload for her
    ReviewerRegistry(Home(worker.handle.home).keys).add_reviewer(dana, ["dba"])

    # 1. held, then approved by a second person
    first = submit_held(worker.handle, actor=carol, sql=SQL, wait_review_s=120)
    row = first.pending_review(60)
    res = worker.cli("reviews", "approve", row["review_id"], "--as", dana, "--reason", "ok", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    result = first.wait_result(120)
    assert result.returncode == 0, result.stderr
    assert result.verdict["basis"] == "review_approved"
    review_id = row["review_id"]
    grant = _grants_page(worker, review_id)
    assert (grant["actor"], grant["resource_prefix"], grant["grants_now"]) == (carol, "db/prod/", True)
    assert grant["expires_at_us"] - grant["approved_at_us"] == 3600 * 1_000_000
    res = worker.cli("reviews", "grants", "--json")
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)
    assert [(g["review_id"], g["active"], g["resource_prefix"]) for g in listed] == [(review_id, True, "db/prod/")]

    # 2. the same actor, type and prefix, inside the window: allowed at once, citing the grant
    code, second = _submit(worker, carol, "db/prod/orders")
    assert (code, second["decision"], second["basis"]) == (0, "allow", "review_approved"), second
    assert second["review"]["grant"] == GRANT_USED and second["review"]["review_id"] == review_id
    assert second["review"]["approvals"] == 1 and review_id in second["reason"]

    # 3. another actor, the same prefix: held; the same actor outside the prefix: held; a DROP: blocked
    code, third = _submit(worker, dave, "db/prod/orders")
    assert (code, third["decision"]) == (1, "review") and third["review"]["grant"] == "window"
    code, outside = _submit(worker, carol, "db/production/orders")
    assert (code, outside["decision"]) == (1, "review")
    code, dropped = _submit(worker, carol, "db/prod/orders", sql="DROP TABLE orders")
    assert (code, dropped["decision"]) == (1, "block")

    # 4. kill -9, restart: the grant is rebuilt from the reviews topic
    worker.kill9()
    worker.restart()
    _grants_page(worker, review_id)
    code, fourth = _submit(worker, carol, "db/prod/invoices")
    assert (code, fourth["basis"], fourth["review"]["review_id"]) == (0, "review_approved", review_id), fourth

    # 5. verify: nothing wrong, and the grant allows reproduce under --decisions
    mine = {second["action_id"], third["action_id"], fourth["action_id"], outside["action_id"]}
    wait_for(lambda: mine <= {e["action_id"] for e in _audit(worker) if e["kind"] == "verdict"}, 60,
             "the verdicts on the ledger")
    report = _verify(worker)
    assert report["events"]
    assert not [f for f in report["findings"] if f["kind"] in ("grant_invalid", "irreproducible_decision")
                or f["action_id"] in mine], report["findings"]

    # 6. adversarial: an allow citing carol's grant for dave's held action, signed with the processor key
    forged_id = _forge_grant_allow(worker, third["action_id"], second)
    found = wait_for(lambda: [f for f in _verify(worker)["findings"]
                              if f["kind"] == "grant_invalid" and f["action_id"] == forged_id], 60,
                     "verify to name the forged grant allow")
    assert "for actor" in found[0]["message"]


def _forge_grant_allow(worker: Worker, held_action: str, honest: dict[str, Any]) -> str:
    """Put a processor-signed allow for ``held_action`` on the ledger that cites the grant
    ``honest`` (a real grant allow) used — what a leaked processor key could do."""
    codec = get_codec()
    events = _audit(worker)
    proposal = next(codec.decode_as("ProposedAction", e["payload"]) for e in events
                    if e["kind"] == "action" and e["action_id"] == held_action)
    real = next(codec.decode_as("Verdict", e["payload"]) for e in events
                if e["kind"] == "verdict" and e["action_id"] == honest["action_id"])
    pending = next(codec.decode_as("Verdict", e["payload"]) for e in events
                   if e["kind"] == "verdict" and e["action_id"] == held_action)
    forged = {**pending, "decision": "allow", "basis": "review_approved", "review": real["review"],
              "reason": "allowed by grant", "proposal_sha256": record_sha256(proposal), "signature": b""}
    forged = sign_record(forged, "signature", b"", SigningKey.load(processor_key_path(worker.handle.home)))
    event = audit_event(AuditKind.VERDICT, proposal["tenant"], held_action, codec.encode("Verdict", forged))
    producer = Producer({"bootstrap.servers": worker.handle.bootstrap})
    producer.produce(worker.handle.topics.audit_intake, codec.encode("AuditEvent", event), key=held_action.encode())
    assert producer.flush(10) == 0
    return held_action


def test_every_worker_allows_by_a_grant_whose_review_another_worker_owns(kafka_bootstrap: str,
                                                                          tmp_path: Path) -> None:
    """Two workers split ``actions`` and ``reviews``; one requester's actions land on both, and
    both allow them by the one grant (each folds every reviews partition)."""
    prefix = f"gw{uuid.uuid4().hex[:8]}."
    home = tmp_path / "home"
    topics = Topics(prefix)
    ensure_topics(kafka_bootstrap, topics)
    publish_policy(load_policy_text(POLICY, source="grants.yaml"), kafka_bootstrap, topics, published_by="tests")
    workers = [start_processor(kafka_bootstrap, home, prefix, tmp_path / f"processor-{i}.log",
                               extra_env={"LOCKGATE_PROCESSOR_ID": f"grant-worker-{i}"}) for i in (1, 2)]
    dana = "dana"
    ReviewerRegistry(Home(home).keys).add_reviewer(dana, ["dba"])
    try:
        wait_until_deciding(workers[0])
        with workers[0].guard(service="cli", timeout_s=5.0) as guard:
            seen: set[str] = set()

            def both_deciding() -> bool:
                seen.add(guard.check(Action(Actor("probe"), "probe", "probe")).processor_id)
                return len(seen) == 2

            wait_for(both_deciding, 120, "both workers deciding actions")
            pending = guard.request(Action(Actor("carol"), "db.query", "db/prod/customers", {"sql": SQL}))
            assert pending.verdict.decision == "review"
            review_id = str(pending.verdict.review_id)
            res = workers[0].cli("reviews", "approve", review_id, "--as", dana, "--reason", "ok", "--json")
            assert res.returncode == 0, res.stdout + res.stderr
            assert pending.wait(60).basis == "review_approved"
            for handle in workers:
                _grants_page(handle, review_id)
            deciders: set[str] = set()
            for i in range(12):
                try:
                    v = guard.check(Action(Actor("carol"), "db.query", f"db/prod/t{i}", {"sql": SQL}))
                except ReviewPending as exc:
                    raise AssertionError(f"action {i} was held, not allowed by grant {review_id}") from exc
                assert (v.decision, v.basis) == ("allow", "review_approved") and v.review is not None
                assert (v.review["grant"], v.review["review_id"]) == (GRANT_USED, review_id)
                deciders.add(v.processor_id)
            assert deciders == {"grant-worker-1", "grant-worker-2"}, deciders
    finally:
        for handle in workers:
            stop_processor(handle)
