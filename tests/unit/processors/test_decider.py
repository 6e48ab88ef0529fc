"""The verdict agent's pure core: every input yields a signed answer or a dead letter, never a crash;
one input, one decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from processors.decider import Decider, DecisionResult, StoredDecision
from processors.policy.engine import CompiledPolicy
from processors.policy.files import load_policy_file
from processors.stage import Source
from schemas.codec import Codec, get_codec
from tests.unit.processors.conftest import proposal
from trust.keys import SigningKey
from trust.registry import ServiceRegistry
from trust.signatures import verify_record

EXAMPLE = Path(__file__).resolve().parents[3] / "processors" / "policies" / "example.yaml"
PROCESSOR_KEY = SigningKey.generate()
POLICY = CompiledPolicy.from_record(load_policy_file(EXAMPLE, version=4))


def decider(reg: ServiceRegistry | None, codec: Codec | None = None, policy: CompiledPolicy | None = POLICY
            ) -> Decider:
    return Decider(codec or get_codec(), PROCESSOR_KEY, "proc-test", lambda _t: policy, reg)


SOURCE = Source("lockgate.actions", 0, 42, b"k")


def decide(d: Decider, raw: bytes | None, stored: StoredDecision | None = None, source: Source = SOURCE) -> Any:
    """The result, untyped: the tests index its optional fields directly."""
    result: DecisionResult = d.decide(raw, source, stored)
    return result


def test_authenticated_action_gets_signed_policy_verdict(registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry
    result = decide(decider(reg), get_codec().encode("ProposedAction", proposal(key)))
    v = result.verdict
    assert v["decision"] == "block" and v["basis"] == "rule"
    assert v["policy_version"] == 4
    assert verify_record(v, "signature", b"", PROCESSOR_KEY.public())
    assert (result.reply_topic, result.reply_partition) == ("lockgate.verdicts", 2)
    assert [e["kind"] for e in result.audit] == ["action", "verdict"]
    assert result.dead_letter is None


def test_unsigned_action_is_blocked_and_recorded_as_security_event(
        registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, _ = registry
    result = decide(decider(reg), get_codec().encode("ProposedAction", proposal(None)))
    assert result.verdict["basis"] == "unauthenticated"
    assert "unsigned" in result.verdict["reason"]
    assert [e["kind"] for e in result.audit] == ["action", "security", "verdict"]


def test_wrong_key_is_blocked(registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, _ = registry
    result = decide(decider(reg), get_codec().encode("ProposedAction", proposal(SigningKey.generate())))
    assert result.verdict["basis"] == "unauthenticated"


def test_no_policy_blocks(registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry
    result = decide(decider(reg, policy=None), get_codec().encode("ProposedAction", proposal(key)))
    assert result.verdict["decision"] == "block" and result.verdict["basis"] == "no_policy"


def test_malformed_bytes_become_a_dead_letter_without_verdict(
        registry: tuple[ServiceRegistry, SigningKey]) -> None:
    result = decide(decider(registry[0]), b"\x00\x01garbage")
    assert result.verdict is None
    assert result.dead_letter["error_type"] == "MalformedRecord"
    assert result.dead_letter["raw"] == b"\x00\x01garbage"
    assert result.dead_letter["source_offset"] == 42
    assert [e["kind"] for e in result.audit] == ["dead_letter"]


def test_oversized_action_is_answered_with_block_and_dead_lettered(
        registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry
    raw = get_codec().encode("ProposedAction", proposal(key, attributes={"blob": "x" * 5000}))
    result = decide(decider(reg, codec=Codec(max_record_bytes=2048)), raw)
    assert result.dead_letter["error_type"] == "OversizedRecord"
    assert result.verdict["decision"] == "block"
    assert result.verdict["basis"] == "invalid_request"
    assert "exceeds the limit of 2048" in result.verdict["reason"]
    assert result.reply_partition == 2
    assert verify_record(result.verdict, "signature", b"", PROCESSOR_KEY.public())


def test_verdict_never_echoes_an_action_of_another_type(registry: tuple[ServiceRegistry, SigningKey]) -> None:
    cp = {"checkpoint_id": "x", "ledger_partition": 0, "first_sequence": 0, "last_sequence": 0,
          "head_hash": b"", "merkle_root": b"", "created_at": 0, "processor_id": "p", "key_id": "k",
          "signature": b""}
    result = decide(decider(registry[0]), get_codec().encode("Checkpoint", cp))
    assert result.verdict is None
    assert "expected a ProposedAction" in result.dead_letter["error"]


def test_null_value_is_a_dead_letter_and_a_ledger_event(registry: tuple[ServiceRegistry, SigningKey]) -> None:
    result = decide(decider(registry[0]), None)
    assert result.verdict is None
    assert result.dead_letter["error_type"] == "NullRecord"
    assert result.dead_letter["raw"] == b""
    assert [e["kind"] for e in result.audit] == ["dead_letter"]
    assert "NullRecord" in result.audit[0]["detail"] and "tombstone" in result.audit[0]["detail"]


class _Broken:
    def evaluate(self, *_a: Any, **_k: Any) -> Any:
        raise RuntimeError("engine bug")


def test_an_exception_while_deciding_is_a_signed_block_and_a_dead_letter(
        registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry
    d = Decider(get_codec(), PROCESSOR_KEY, "proc-test", lambda _t: _Broken(), reg)  # type: ignore[arg-type, return-value]
    result = decide(d, get_codec().encode("ProposedAction", proposal(key)))
    assert result.verdict["decision"] == "block" and result.verdict["basis"] == "evaluation_error"
    assert "RuntimeError: engine bug" in result.verdict["reason"]
    assert verify_record(result.verdict, "signature", b"", PROCESSOR_KEY.public())
    assert result.dead_letter["error_type"] == "RuntimeError"
    assert sorted(e["kind"] for e in result.audit) == ["dead_letter", "verdict"]
    assert result.reply_partition == 2


def test_a_registry_that_raises_does_not_escape(registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry

    def boom(*_a: Any, **_k: Any) -> Any:
        raise OSError("services.json vanished mid-read")

    reg.verify = boom  # type: ignore[method-assign]
    result = decide(decider(reg), get_codec().encode("ProposedAction", proposal(key)))
    assert result.verdict["basis"] == "evaluation_error"
    assert result.dead_letter["error_type"] == "OSError"


def test_event_ids_derive_from_the_input_coordinates(registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry
    raw = get_codec().encode("ProposedAction", proposal(key))
    first = [e["event_id"] for e in decide(decider(reg), raw).audit]
    again = [e["event_id"] for e in decide(decider(reg), raw).audit]
    elsewhere = [e["event_id"] for e in decide(decider(reg), raw, source=Source("lockgate.actions", 0, 43)).audit]
    assert first == again
    assert not set(first) & set(elsewhere)
    assert len(set(first)) == len(first)


def test_a_stored_decision_is_resent_unchanged_and_nothing_is_decided_again(
        registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry
    raw = get_codec().encode("ProposedAction", proposal(key))
    first = decide(decider(reg), raw)
    stored = first.stored
    assert stored is not None and stored.verdict == first.verdict_bytes and not first.replayed
    # After the "crash" the policy would now say something else, and the clock moved on.
    lenient = decider(reg, policy=None)
    again = decide(lenient, raw, stored)
    assert again.replayed and again.stored is None
    assert again.verdict_bytes == first.verdict_bytes
    assert again.verdict == first.verdict
    assert [(e["event_id"], e["kind"], e["payload"]) for e in again.audit] == [
        (e["event_id"], e["kind"], e["payload"]) for e in first.audit]


def test_a_stored_unauthenticated_decision_keeps_its_security_event(
        registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, _ = registry
    raw = get_codec().encode("ProposedAction", proposal(None))
    first = decide(decider(reg), raw)
    assert first.stored.auth.value == "unsigned"
    again = decide(decider(reg), raw, first.stored)
    assert [e["kind"] for e in again.audit] == ["action", "security", "verdict"]
    assert again.verdict_bytes == first.verdict_bytes


def test_a_stored_block_for_an_unreadable_proposal_is_resent(registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry
    raw = get_codec().encode("ProposedAction", proposal(key, attributes={"blob": "x" * 5000}))
    small = Codec(max_record_bytes=2048)
    first = decide(decider(reg, codec=small), raw)
    again = decide(decider(reg, codec=small), raw, first.stored)
    assert again.replayed and again.verdict_bytes == first.verdict_bytes
    assert again.dead_letter["dead_letter_id"] == first.dead_letter["dead_letter_id"]


def _now_us() -> int:
    import time

    return time.time_ns() // 1000


def v2(**fields: Any) -> dict[str, Any]:
    """v2 fields for :func:`proposal`: with ``signed_schema`` 2 the signature covers the deadline."""
    return {"justification": None, "break_glass": False, "signed_schema": 2, **fields}


class _NeverEvaluated:
    def evaluate(self, *_a: Any, **_k: Any) -> Any:
        raise AssertionError("an expired proposal must not be evaluated")


def test_a_proposal_past_its_deadline_is_shed_with_a_signed_expired_block(
        registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry
    raw = get_codec().encode("ProposedAction", proposal(key, **v2(deadline=_now_us() - 250_000)))
    d = Decider(get_codec(), PROCESSOR_KEY, "proc-test", lambda _t: _NeverEvaluated(), reg)  # type: ignore[arg-type,return-value]
    result = decide(d, raw)
    v = result.verdict
    assert (v["decision"], v["basis"], v["matched_rules"]) == ("block", "expired", [])
    assert "after its deadline" in v["reason"] and "not evaluated" in v["reason"]
    assert verify_record(v, "signature", b"", PROCESSOR_KEY.public())
    assert v["proposal_sha256"] is not None  # bound to the proposal like any verdict
    assert (result.reply_topic, result.reply_partition) == ("lockgate.verdicts", 2)
    assert [e["kind"] for e in result.audit] == ["action", "verdict"]  # still on the ledger
    assert result.audit[0]["payload"] == raw
    assert result.dead_letter is None
    assert result.stored is not None and result.stored.verdict == result.verdict_bytes  # kept before it is sent


def test_an_expired_proposal_is_shed_without_authenticating_it(registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, _ = registry

    def no_auth(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("an expired proposal must not cost a signature check")

    reg.verify = no_auth  # type: ignore[method-assign]
    result = decide(decider(reg), get_codec().encode("ProposedAction", proposal(None, **v2(deadline=_now_us() - 1))))
    assert result.verdict["basis"] == "expired"


def test_a_proposal_within_its_deadline_or_without_one_is_evaluated(
        registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry
    for deadline in (_now_us() + 5_000_000, None):
        result = decide(decider(reg), get_codec().encode("ProposedAction", proposal(key, **v2(deadline=deadline))))
        assert result.verdict["basis"] == "rule"


def test_a_stored_decision_is_resent_even_when_the_deadline_has_passed_since(
        registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry
    rec = proposal(key, **v2(deadline=_now_us() + 5_000_000))
    raw = get_codec().encode("ProposedAction", rec)
    first = decide(decider(reg), raw)
    assert first.verdict["basis"] == "rule"
    late = Decider(get_codec(), PROCESSOR_KEY, "proc-test", lambda _t: POLICY, reg)
    import processors.decider as decider_module

    real = decider_module._now_us
    decider_module._now_us = lambda: rec["deadline"] + 1
    try:
        again = decide(late, raw, first.stored)
    finally:
        decider_module._now_us = real
    assert again.replayed and again.verdict_bytes == first.verdict_bytes
