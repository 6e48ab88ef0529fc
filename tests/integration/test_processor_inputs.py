"""No input drops an action: null values, tombstones and a refused registry, against a real worker.

Every record on ``actions`` and ``outcomes`` must end in a signed verdict, or in a dead
letter plus a ledger event saying why — and the worker must keep deciding afterwards.
The worker has its own ``LOCKGATE_HOME`` here: one test makes its ``services.json``
group-writable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from lockgate.kernel.partition_reader import committed_reader, read_partition
from producers import Action, Actor
from schemas.codec import get_codec
from schemas.topics import DEAD_LETTER_MAX_BYTES
from tests.integration.conftest import (
    ProcessorHandle,
    running_processor,
    wait_for,
)
from tests.integration.ledger_readback import Ledger

pytestmark = pytest.mark.integration

READER = get_codec(DEAD_LETTER_MAX_BYTES)


@pytest.fixture(scope="module")
def own_processor(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessorHandle]:
    state = tmp_path_factory.mktemp("inputs")
    with running_processor(kafka_bootstrap, state / "home", state / "processor.log", "i") as handle:
        yield handle


def _dead_letters(handle: ProcessorHandle) -> list[dict[str, Any]]:
    consumer = committed_reader(handle.bootstrap, "test-dead-letters")
    try:
        return [READER.decode_as("DeadLetter", r.value or b"")
                for r in read_partition(consumer, handle.topics.deadletter, 0)]
    finally:
        consumer.close()


def _produce(handle: ProcessorHandle, topic: str, key: bytes | None) -> tuple[int, int]:
    """A record with a null value; returns its (partition, offset)."""
    where: list[tuple[int, int]] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            where.append((msg.partition(), msg.offset()))

    producer = Producer({"bootstrap.servers": handle.bootstrap})
    producer.produce(topic, None, key=key, on_delivery=delivered)
    assert producer.flush(10) == 0 and where
    return where[0]


@pytest.mark.parametrize("topic_name", ["actions", "outcomes"])
@pytest.mark.parametrize("key", [b"tombstone-key", None], ids=["tombstone", "null-value"])
def test_null_values_and_tombstones_end_in_a_dead_letter_and_a_ledger_event(
        own_processor: ProcessorHandle, topic_name: str, key: bytes | None) -> None:
    handle = own_processor
    topic = handle.topics.name(topic_name)
    partition, offset = _produce(handle, topic, key)

    def dead_letter() -> dict[str, Any] | None:
        return next((d for d in _dead_letters(handle) if (d["source_topic"], d["source_partition"],
                                                          d["source_offset"]) == (topic, partition, offset)), None)

    dl = wait_for(dead_letter, 30, f"a dead letter for {topic}[{partition}]@{offset}")
    assert dl["error_type"] == "NullRecord" and dl["key"] == key
    assert dl["stage"] == ("processor" if topic_name == "actions" else "outcomes")

    def ledgered() -> list[dict[str, Any]]:
        return [e for e in Ledger.read(handle.bootstrap, handle.topics.prefix).of_kind("dead_letter")
                if f"{topic}[{partition}]@{offset}" in (e["detail"] or "")]

    (event,) = wait_for(ledgered, 30, "the dead_letter ledger event")
    assert "NullRecord" in event["detail"]
    with handle.guard() as guard:  # and the worker keeps deciding
        assert guard.check(Action(Actor("alice"), "deploy", "svc/staging/api")).allowed


def test_a_refused_registry_reload_is_ledgered_each_time_and_the_last_good_registry_kept(
        own_processor: ProcessorHandle) -> None:
    handle = own_processor
    path = handle.home / "keys" / "services.json"
    action = Action(Actor("alice"), "deploy", "svc/staging/api")

    def refusals() -> list[dict[str, Any]]:
        return [e for e in Ledger.read(handle.bootstrap, handle.topics.prefix).of_kind("security")
                if str(path) in (e["detail"] or "")]

    try:
        path.chmod(0o660)  # group-writable: whoever is in the group could register keys
        (first,) = wait_for(refusals, 30, "a security event for the group-writable registry")
        assert "last good registry stays in force" in first["detail"] and "KeyFileUnsafe" in first["detail"]
        os.utime(path)  # touched while still unsafe: refused again, recorded again
        both = wait_for(lambda: len(refusals()) >= 2 and refusals(), 30, "a second security event")
        assert len({e["event_id"] for e in both}) == len(both) == 2
        with handle.guard() as guard:  # the CLI service is still known: decided, not "unauthenticated"
            verdict = guard.check(action)
        assert verdict.allowed and verdict.basis != "unauthenticated"
    finally:
        path.chmod(0o600)


def test_a_proposal_past_its_deadline_gets_a_signed_expired_block_on_the_ledger(
        own_processor: ProcessorHandle) -> None:
    """Shedding: a late proposal is answered without evaluation, and still recorded."""
    handle = own_processor
    action = Action(Actor("alice"), "deploy", "svc/staging/api")  # the example policy allows it
    with handle.guard() as guard:
        fresh = guard.check(action, timeout_s=7.0)
        core = guard._core  # a proposal whose deadline passed before it was sent (a clock or queue that late)
        late_rec, future = core.propose(action, time.time_ns() // 1000 - 2_000_000)
        late = core.settle(late_rec, future.result(timeout=30))  # signature and binding verified here
    assert fresh.allowed and fresh.basis != "expired"
    assert not late.allowed and late.basis == "expired" and not late.matched_rules
    assert "after its deadline" in late.reason

    def recorded() -> dict[str, list[dict[str, Any]]] | None:
        ledger = Ledger.read(handle.bootstrap, handle.topics.prefix)
        found = {kind: [e for e in ledger.of_kind(kind) if e["action_id"] in (fresh.action_id, late.action_id)]
                 for kind in ("action", "verdict")}
        return found if all(len(v) == 2 for v in found.values()) else None

    found = wait_for(recorded, 30, "both proposals and both verdicts on the ledger")
    codec = get_codec()
    proposals = {e["action_id"]: codec.decode_as("ProposedAction", e["payload"]) for e in found["action"]}
    fresh_rec = proposals[fresh.action_id]
    # the Guard sets it from its timeout, counted from when the call began (just before proposed_at)
    assert 0 <= fresh_rec["proposed_at"] + 7_000_000 - fresh_rec["deadline"] < 1_000_000
    assert proposals[late.action_id]["deadline"] < proposals[late.action_id]["proposed_at"]
    verdicts = {e["action_id"]: codec.decode_as("Verdict", e["payload"]) for e in found["verdict"]}
    assert verdicts[late.action_id]["basis"] == "expired" and verdicts[late.action_id]["decision"] == "block"
    assert verdicts[late.action_id]["signature"] == codec.decode_as("Verdict", late.raw)["signature"]
