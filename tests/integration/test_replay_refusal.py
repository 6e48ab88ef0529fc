"""One decision per action id, against the real broker and a real Faust worker: the same signed
proposal bytes sent three times get one allow and two signed replay blocks, the ledger records the
refusals as security events, and verify is clean — until a second allow is injected."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer

from lockgate.kernel.home import Home
from producers import Action, Actor
from schemas.codec import get_codec
from schemas.records import AuditKind, audit_event
from tests.integration.conftest import ProcessorHandle, wait_for
from tests.integration.ledger_readback import Ledger
from trust.bindings import policy_sha256, record_sha256
from trust.chain import Chain
from trust.keys import SigningKey
from trust.signatures import sign_record, verify_record
from trust.verify import FindingKind

CODEC = get_codec()


def _ledger_with(processor: ProcessorHandle, action_id: str, verdicts: int) -> Ledger:
    def read() -> Ledger | None:
        ledger = Ledger.read(processor.bootstrap, processor.topics.prefix)
        mine = [e for e in ledger.of_kind("verdict") if e["action_id"] == action_id]
        return ledger if len(mine) >= verdicts and not ledger.uncovered() else None

    found: Ledger = wait_for(read, what=f"{verdicts} verdicts for {action_id} on the ledger, checkpointed")
    return found


def test_the_same_signed_proposal_three_times_gets_one_allow(processor: ProcessorHandle) -> None:
    with processor.guard() as guard:
        core = guard._core
        rec = core.build(Action(Actor("alice", ("dba",)), "db.query", "db/prod/orders",
                                {"sql": "UPDATE orders SET status = 'x' WHERE id = 1"}))
        raw = CODEC.encode("ProposedAction", rec)
        sent = CODEC.decode_as("ProposedAction", raw)
        aid = rec["action_id"]
        first = core.router.expect(rec["correlation_id"], aid)
        for _ in range(2):  # the Guard's own producer: the action id's home partition
            core.producer.produce(processor.topics.actions, raw, key=aid.encode())
        assert core.producer.flush(10) == 0
        # The Guard takes the first verdict for its correlation id. Wait for it before the
        # attacker's copy: on another partition, that copy's block could be decided first.
        verdict = core.settle(sent, first.result(timeout=20))
        # An attacker's producer with librdkafka's default partitioner: maybe another partition.
        attacker = Producer({"bootstrap.servers": processor.bootstrap})
        attacker.produce(processor.topics.actions, raw, key=aid.encode())
        assert attacker.flush(10) == 0
    assert verdict.allowed

    ledger = _ledger_with(processor, aid, 3)
    verdicts = [CODEC.decode_as("Verdict", e["payload"]) for e in ledger.of_kind("verdict") if e["action_id"] == aid]
    public = SigningKey.load(Home(processor.home).processor_key).public()
    assert sorted((v["decision"], v["basis"]) for v in verdicts) == [
        ("allow", "default"), ("block", "replay"), ("block", "replay")]
    assert all(verify_record(v, "signature", b"", public) for v in verdicts)
    assert all(v["proposal_sha256"] == record_sha256(sent) for v in verdicts)
    allow = next(v for v in verdicts if v["decision"] == "allow")
    policy_events = ledger.of_kind("policy")
    assert allow["policy_sha256"] in {policy_sha256(e["payload"]) for e in policy_events}
    security = [e for e in ledger.of_kind("security") if e["action_id"] == aid]
    assert len(security) == 2 and all(e["payload"] == raw for e in security)
    assert all(e["detail"].startswith("replay refused:") for e in security)
    assert len([e for e in ledger.of_kind("action") if e["action_id"] == aid]) == 1

    assert ledger.verify(processor.home, interval_s=1.0) == []

    # Inject a second allow, validly signed with the processor's own key and correctly bound:
    # only the one-decision rule can tell.
    key = SigningKey.load(Home(processor.home).processor_key)
    second = sign_record({**allow, "decided_at": allow["decided_at"] + 1}, "signature", b"", key)
    # The allow's own partition (a replay published to another partition is chained on that one).
    home_event = next(e for e in ledger.of_kind("verdict") if e["action_id"] == aid
                      and CODEC.decode_as("Verdict", e["payload"])["decision"] == "allow")
    part = home_event["ledger_partition"]
    chain = Chain()
    chain.resume_from(max((e for e in ledger.events if e["ledger_partition"] == part), key=lambda e: e["sequence"]))
    injected: dict[str, Any] = chain.append(
        audit_event(AuditKind.VERDICT, allow["tenant"], aid, CODEC.encode("Verdict", second)), part)
    injected["_position"] = (part, 10**9)
    tampered = Ledger([*ledger.events, injected], ledger.checkpoints)
    found = [f for f in tampered.verify(processor.home, interval_s=1.0) if f.action_id == aid]
    assert [(f.kind, f.sequence) for f in found] == [(FindingKind.DUPLICATE_DECISION, injected["sequence"])]


def test_a_guarded_action_binds_proposal_verdict_and_outcome(processor: ProcessorHandle) -> None:
    with processor.guard() as guard, guard.action(actor=Actor("alice", ("dba",)), type="db.query",
                                                  resource="db/prod/orders",
                                                  attributes={"sql": "UPDATE t SET a = 1 WHERE id = 2"}) as act:
        act.record_change(before={"a": 0}, after={"a": 1})
        aid = act.action_id
    def settled() -> Ledger | None:
        ledger = Ledger.read(processor.bootstrap, processor.topics.prefix)
        landed = any(e["action_id"] == aid for e in ledger.of_kind("outcome"))
        return ledger if landed and not ledger.uncovered() else None

    ledger: Ledger = wait_for(settled, what="the outcome on the ledger, checkpointed")
    outcome = next(CODEC.decode_as("ActionOutcome", e["payload"]) for e in ledger.of_kind("outcome")
                   if e["action_id"] == aid)
    verdict = next(CODEC.decode_as("Verdict", e["payload"]) for e in ledger.of_kind("verdict")
                   if e["action_id"] == aid)
    assert outcome["signed_schema"] == 2 and outcome["verdict_sha256"] == record_sha256(verdict)
    assert ledger.verify(processor.home, interval_s=1.0) == []
