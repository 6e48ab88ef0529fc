"""The small cores without Kafka: decision memory, outcome recorder, registry watcher."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from processors.decider import StoredDecision
from processors.decisions import DecisionMemory, decision_headers, parse_decision
from processors.outcomes import OutcomeRecorder
from processors.registry_watch import RegistryWatcher
from processors.stage import Source
from schemas.codec import get_codec
from tests.unit.schemas.codec_samples import samples
from trust.keys import SigningKey
from trust.registry import ServiceRegistry, ServiceVerification
from trust.signatures import sign_record

CODEC = get_codec()
SOURCE = Source("lockgate.outcomes", 1, 17, b"a-1")


# -- decision memory -------------------------------------------------------------------


def _d(tag: str) -> StoredDecision:
    return StoredDecision(tag.encode(), ServiceVerification.OK)


def test_decision_records_round_trip_through_their_headers() -> None:
    verdict = CODEC.encode("Verdict", next(s.record for s in samples(CODEC) if s.name == "Verdict"))
    stored = StoredDecision(verdict, ServiceVerification.UNSIGNED)
    assert parse_decision(stored.verdict, decision_headers(41, stored)) == (41, stored)
    assert parse_decision(b"x", [("lockgate.input-offset", b"nope")]) is None
    assert parse_decision(None, decision_headers(1, stored)) is None
    assert parse_decision(b"x", []) is None


def test_memory_reads_back_only_when_delivery_is_not_contiguous() -> None:
    memory = DecisionMemory()
    assert memory.needs_recovery(0, 10)  # first delivery after start
    memory.recovered(0, 10, [])
    assert memory.take(0, 10) is None
    assert not memory.needs_recovery(0, 11)
    memory.take(0, 11)
    assert memory.needs_recovery(0, 5)  # re-delivered (rebalance, restart): read back
    assert memory.needs_recovery(0, 40)  # skipped ahead (another owner committed more)
    assert memory.needs_recovery(1, 11)  # another partition


def test_memory_resends_stored_decisions_and_forgets_them_as_the_stream_passes() -> None:
    memory = DecisionMemory()
    n = memory.recovered(0, 5, [(3, _d("three")), (5, _d("five")), (7, _d("seven")), (6, _d("six"))])
    assert n == 3 and memory.held() == 3  # offset 3 was committed: never delivered again
    assert memory.take(0, 5) == _d("five")
    assert memory.take(0, 7) == _d("seven")  # 6 was skipped (say, a compacted gap): forgotten too
    assert memory.held() == 0
    assert memory.take(0, 8) is None


def test_a_decision_lives_in_its_inputs_partition() -> None:
    from schemas.topics import CATALOGUE

    parts = {t.name: t.partitions for t in CATALOGUE}
    assert parts["decisions"] == parts["actions"]


def test_recovery_is_complete_once_an_earlier_input_is_read() -> None:
    assert not DecisionMemory.recovery_complete(10, [12, 11, 10])
    assert DecisionMemory.recovery_complete(10, [12, 9])
    assert not DecisionMemory.recovery_complete(0, [])


# -- outcome recorder -----------------------------------------------------------------


def _outcome(key: SigningKey | None) -> bytes:
    rec: dict[str, Any] = {
        "outcome_id": "o-1", "action_id": "a-1", "correlation_id": "c-1", "recorded_at": 1, "tenant": "acme",
        "service": "billing", "actor_id": "alice", "status": "committed", "error_type": None,
        "error_message": None, "before_json": None, "after_json": None, "verdict": None,
        "service_key_id": None, "service_signature": None,
    }
    return CODEC.encode("ActionOutcome", sign_record(rec, "service_signature", None, key) if key else rec)


def test_an_authenticated_outcome_is_one_event_with_a_derived_id(registry: tuple[ServiceRegistry, SigningKey]
                                                                  ) -> None:
    reg, key = registry
    raw = _outcome(key)
    out = OutcomeRecorder(CODEC, reg).record(raw, SOURCE)
    assert [(e["kind"], e["action_id"], e["payload"]) for e in out.audit] == [("outcome", "a-1", raw)]
    assert out.dead_letter is None
    assert out.audit[0]["event_id"] == OutcomeRecorder(CODEC, reg).record(raw, SOURCE).audit[0]["event_id"]


def test_an_unsigned_outcome_adds_a_security_event(registry: tuple[ServiceRegistry, SigningKey]) -> None:
    out = OutcomeRecorder(CODEC, registry[0]).record(_outcome(None), SOURCE)
    assert [e["kind"] for e in out.audit] == ["outcome", "security"]
    assert "unsigned" in out.audit[1]["detail"]


@pytest.mark.parametrize(("raw", "error_type"), [(None, "NullRecord"), (b"", "TruncatedRecord"),
                                                 (b"\x00junk", "MalformedRecord")])
def test_unreadable_outcomes_are_dead_letters_and_ledger_events(
        registry: tuple[ServiceRegistry, SigningKey], raw: bytes | None, error_type: str) -> None:
    out = OutcomeRecorder(CODEC, registry[0]).record(raw, SOURCE)
    assert out.dead_letter is not None
    assert out.dead_letter["error_type"] == error_type
    assert (out.dead_letter["source_topic"], out.dead_letter["source_offset"], out.dead_letter["stage"]) == (
        "lockgate.outcomes", 17, "outcomes")
    assert [e["kind"] for e in out.audit] == ["dead_letter"]
    assert error_type in out.audit[0]["detail"]


def test_a_failing_registry_is_still_accounted_for(registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry

    def boom(*_a: Any, **_k: Any) -> Any:
        raise OSError("disk gone")

    reg.verify = boom  # type: ignore[method-assign]
    out = OutcomeRecorder(CODEC, reg).record(_outcome(key), SOURCE)
    assert out.dead_letter is not None and out.dead_letter["error_type"] == "OSError"
    assert [e["kind"] for e in out.audit] == ["dead_letter"]


# -- registry watcher -----------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += 1.5


def test_a_registry_change_is_picked_up(registry: tuple[ServiceRegistry, SigningKey], tmp_path: Path) -> None:
    reg, _ = registry
    clock = _Clock()
    watcher = RegistryWatcher(ServiceRegistry(tmp_path), clock=clock)
    reg.add_service("payroll")
    assert watcher.poll() is None and watcher.registry.services() == ["billing"]  # checked at most 1/s
    clock.tick()
    assert watcher.poll() is None
    assert watcher.registry.services() == ["billing", "payroll"]


def test_an_unsafe_registry_is_refused_each_time_and_the_last_good_one_kept(
        registry: tuple[ServiceRegistry, SigningKey], tmp_path: Path) -> None:
    clock = _Clock()
    watcher = RegistryWatcher(ServiceRegistry(tmp_path), clock=clock)
    path = tmp_path / "services.json"
    path.chmod(0o660)  # group-writable: anyone in the group could register keys
    clock.tick()
    first = watcher.poll()
    assert first is not None and first["kind"] == "security"
    assert str(path) in first["detail"] and "last good" in first["detail"]
    assert watcher.registry.services() == ["billing"]
    clock.tick()
    assert watcher.poll() is None  # nothing changed since: nothing new to report
    os.utime(path, ns=(1, 2))  # touched
    clock.tick()
    second = watcher.poll()
    assert second is not None and second["event_id"] != first["event_id"]
    assert watcher.registry.services() == ["billing"]
    path.chmod(0o600)
    clock.tick()
    assert watcher.poll() is None and watcher.registry.services() == ["billing"]


def test_bad_json_is_refused_with_the_file_as_evidence(registry: tuple[ServiceRegistry, SigningKey],
                                                      tmp_path: Path) -> None:
    clock = _Clock()
    watcher = RegistryWatcher(ServiceRegistry(tmp_path), clock=clock)
    path = tmp_path / "services.json"
    good = json.loads(path.read_text())
    path.write_text('{"billing": [')
    clock.tick()
    refusal = watcher.poll()
    assert refusal is not None and refusal["payload"] == b'{"billing": ['
    assert "not valid JSON" in refusal["detail"]
    assert watcher.registry.services() == list(good)


def test_a_re_sent_outcome_keeps_its_event_id_so_the_ledger_chains_it_once(
        registry: tuple[ServiceRegistry, SigningKey]) -> None:
    """A spooled outcome re-sent by a Guard lands at another offset: same bytes, same id."""
    reg, key = registry
    raw = _outcome(key)
    first = OutcomeRecorder(CODEC, reg).record(raw, SOURCE).audit[0]["event_id"]
    again = OutcomeRecorder(CODEC, reg).record(raw, Source("lockgate.outcomes", 3, 9001, b"a-1")).audit[0]
    assert again["event_id"] == first
    forged = CODEC.decode_as("ActionOutcome", raw) | {"status": "failed"}
    other = OutcomeRecorder(CODEC, reg).record(CODEC.encode("ActionOutcome", forged), SOURCE).audit[0]
    assert other["event_id"] != first  # other bytes under the same outcome_id are chained for verify to see
