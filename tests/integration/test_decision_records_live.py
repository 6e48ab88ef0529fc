"""A decision's audit events travel in its stored ``decisions`` record — against a real worker.

The decide agent stores each decision, with its audit events, on ``decisions`` before it
answers, and the ledger stage chains the events from there (:mod:`processors.decisions`).
Checked here, with real Kafka and real worker processes:

* **upgrade**: a stored decision in the format written before this change (the verdict as
  the value, no events in it), whose input is re-delivered to a new worker, is answered
  with the stored verdict and its events still reach the ledger — exactly once, with the
  stored verdict's bytes (had the worker taken it for a record that carries its events,
  they would never be chained);
* **a forged stored decision**: a ``DecisionRecord`` for an input's offset whose verdict
  decodes but is signed by another key is not read back as that input's decision: the
  input is decided anew and its requester gets the processor's verdict, not the forgery;
* **bad records on ``decisions``**: a null value, bytes that are not Avro, a record of
  another type, a ``DecisionRecord`` whose event has no id — each ends in a dead letter
  (stage ``ledger``) and a ``dead_letter`` ledger event naming it, and the worker keeps
  deciding.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from deploy.identity import ensure_processor_key
from lockgate.kernel.partition_reader import committed_reader, read_partition
from processors.decider import Decider
from processors.decisions import decision_headers, decision_record
from processors.replay import home_partition
from processors.stage import Source
from producers import Action, Actor
from schemas.codec import get_codec
from schemas.records import AuditKind, audit_event, event_id_for
from schemas.topics import CATALOGUE, DEAD_LETTER_MAX_BYTES
from tests.integration.conftest import (
    ProcessorHandle,
    fresh_topics,
    running_processor,
    start_processor,
    stop_processor,
    wait_for,
    wait_until_deciding,
)
from tests.integration.ledger_readback import Ledger
from trust.keys import SigningKey
from trust.signatures import verify_record

pytestmark = pytest.mark.integration

CODEC = get_codec()
READER = get_codec(DEAD_LETTER_MAX_BYTES)
ACTIONS = next(t.partitions for t in CATALOGUE if t.name == "actions")


def _produce(bootstrap: str, topic: str, value: bytes | None, key: bytes | None, partition: int,
             headers: list[tuple[str, str | bytes | None]] | None = None) -> int:
    """Produce one record; its offset."""
    offsets: list[int] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            offsets.append(msg.offset())

    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value, key=key, partition=partition, headers=headers, on_delivery=delivered)
    assert producer.flush(10) == 0 and offsets
    return offsets[0]


def test_a_stored_decision_of_the_older_format_is_resent_and_its_events_chained_once(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = fresh_topics(kafka_bootstrap, "u")
    home = tmp_path / "home"
    key, _ = ensure_processor_key(home)
    action_id = "upgrade-1"
    part = home_partition(action_id, ACTIONS)
    proposal = CODEC.encode("ProposedAction", {
        "action_id": action_id, "correlation_id": "c-upgrade", "proposed_at": 1, "tenant": "default",
        "service": "billing", "actor": {"id": "alice", "roles": [], "attributes": {}},
        "type": "deploy", "resource": "svc/staging/api", "attributes": {}, "change_json": None,
        "reply_topic": topics.verdicts, "reply_partition": 0, "reply_instance": "gone",
        "service_key_id": None, "service_signature": None,
    })
    # What a worker of the previous version decided and stored before it was killed (its
    # verdict and audit events never sent): the verdict as the value, offset and auth in headers.
    offset = _produce(kafka_bootstrap, topics.actions, proposal, action_id.encode(), part)
    decided = Decider(CODEC, key, "processor-old", lambda _t: None, None).decide(
        proposal, Source(topics.actions, part, offset, action_id.encode()))
    stored = decided.stored
    assert stored is not None and decided.verdict is not None
    headers: list[tuple[str, str | bytes | None]] = list(decision_headers(offset, stored))
    _produce(kafka_bootstrap, topics.decisions, stored.verdict, action_id.encode(), part, headers)

    log = tmp_path / "processor.log"
    handle = start_processor(kafka_bootstrap, home, topics.prefix, log)
    try:
        wait_until_deciding(handle)

        def chained() -> list[dict[str, Any]] | None:
            events = [e for e in Ledger.read(kafka_bootstrap, topics.prefix).events if e["action_id"] == action_id]
            return events if {e["kind"] for e in events} >= {"action", "verdict"} else None

        events = wait_for(chained, 60, "the re-sent decision's events on the ledger")
        assert sorted(e["kind"] for e in events) == ["action", "security", "verdict"]
        (verdict_event,) = [e for e in events if e["kind"] == "verdict"]
        assert verdict_event["payload"] == stored.verdict  # the stored verdict, not a second decision
        assert {e["event_id"] for e in events} == {e["event_id"] for e in decided.audit}
        resent = sum(int(n) for n in re.findall(r"(\d+) stored decision\(s\) to re-send", log.read_text()))
        assert resent >= 1
    finally:
        stop_processor(handle)


def test_a_forged_stored_decision_is_not_resent_the_input_is_decided_anew(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = fresh_topics(kafka_bootstrap, "f")
    home = tmp_path / "home"
    key, _ = ensure_processor_key(home)
    action_id = f"forged-stored-{uuid.uuid4().hex[:6]}"
    part = home_partition(action_id, ACTIONS)
    proposal = CODEC.encode("ProposedAction", {
        "action_id": action_id, "correlation_id": "c-forged", "proposed_at": time.time_ns() // 1000,
        "tenant": "default", "service": "billing", "actor": {"id": "alice", "roles": [], "attributes": {}},
        "type": "deploy", "resource": "svc/staging/api", "attributes": {}, "change_json": None,
        "reply_topic": topics.verdicts, "reply_partition": 0, "reply_instance": "test",
        "service_key_id": None, "service_signature": None,
    })
    offset = _produce(kafka_bootstrap, topics.actions, proposal, action_id.encode(), part)
    # Someone who can write to ``decisions`` stores a decision of their own for that input,
    # before any worker read it: a well-formed record, a verdict that decodes, a wrong signer.
    forged = Decider(CODEC, SigningKey.generate(), "processor-forger", lambda _t: None, None).decide(
        proposal, Source(topics.actions, part, offset, action_id.encode()))
    assert forged.stored is not None and forged.verdict_bytes is not None
    _produce(kafka_bootstrap, topics.decisions, decision_record(CODEC, offset, forged.stored, forged.audit),
             action_id.encode(), part)

    handle = start_processor(kafka_bootstrap, home, topics.prefix, tmp_path / "processor.log")
    try:
        wait_until_deciding(handle)

        def replies() -> list[bytes] | None:
            consumer = committed_reader(kafka_bootstrap, "test-forged-replies")
            try:
                found = [r.value for r in read_partition(consumer, topics.verdicts, 0)
                         if r.value and CODEC.decode_as("Verdict", r.value)["action_id"] == action_id]
            finally:
                consumer.close()
            return found or None

        (reply,) = wait_for(replies, 60, f"a reply to {action_id}")
        verdict = CODEC.decode_as("Verdict", reply)
        assert reply != forged.verdict_bytes
        assert verify_record(verdict, "signature", b"", key.public())  # the processor's own decision
        assert verdict["processor_id"] != "processor-forger"
    finally:
        stop_processor(handle)


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessorHandle]:
    state = tmp_path_factory.mktemp("decisions")
    with running_processor(kafka_bootstrap, state / "home", state / "processor.log", "d") as handle:
        yield handle


def _no_id_record() -> bytes:
    event = {**audit_event("action", "default", "forged-1", b"p"), "event_id": ""}
    return CODEC.encode("DecisionRecord", {"input_offset": 0, "auth": "", "verdict": b"v", "events": [event]})


@pytest.mark.parametrize(("value", "named"), [
    (None, "NullRecord"),
    (b"\x00not avro", "MalformedRecord"),
    (CODEC.encode("AuditEvent", audit_event("verdict", "default", "forged-2", b"p", event_id="forged-2")),
     "got a AuditEvent"),
    (_no_id_record(), "empty event_id"),
], ids=["null", "not-avro", "another-type", "event-without-id"])
def test_a_bad_decisions_record_ends_in_a_dead_letter_and_a_ledger_event(
        worker: ProcessorHandle, value: bytes | None, named: str) -> None:
    topic = worker.topics.decisions
    partition = 1
    offset = _produce(worker.bootstrap, topic, value, b"forged", partition)

    def dead_letter() -> dict[str, Any] | None:
        consumer = committed_reader(worker.bootstrap, "test-decisions-dl")
        try:
            letters = [READER.decode_as("DeadLetter", r.value or b"")
                       for r in read_partition(consumer, worker.topics.deadletter, 0)]
        finally:
            consumer.close()
        return next((d for d in letters if (d["source_topic"], d["source_partition"], d["source_offset"])
                     == (topic, partition, offset)), None)

    dl = wait_for(dead_letter, 30, f"a dead letter for {topic}[{partition}]@{offset}")
    assert dl["stage"] == "ledger" and named in f"{dl['error_type']}: {dl['error']}"
    assert dl["raw"] == (value or b"")

    wanted = event_id_for(AuditKind.DEAD_LETTER, topic, partition, offset)

    def ledgered() -> list[dict[str, Any]]:
        return [e for e in Ledger.read(worker.bootstrap, worker.topics.prefix).of_kind("dead_letter")
                if e["event_id"] == wanted]

    (event,) = wait_for(ledgered, 30, "the dead_letter ledger event")
    assert event["ledger_partition"] == partition and named in event["detail"]
    assert not [e for e in Ledger.read(worker.bootstrap, worker.topics.prefix).events
                if e["action_id"] in ("forged-1", "forged-2")]  # nothing of a refused record is chained
    with worker.guard() as guard:  # and the worker keeps deciding
        assert guard.check(Action(Actor("alice"), "deploy", "svc/staging/api")).allowed
