"""The verdict agent's pure core: every input yields a signed answer or a dead letter, never a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from processors.decider import Decider
from processors.policy.engine import CompiledPolicy
from processors.policy.files import load_policy_file
from schemas.codec import Codec, get_codec
from trust.keys import SigningKey
from trust.registry import ServiceRegistry
from trust.signatures import sign_record, verify_record

EXAMPLE = Path(__file__).resolve().parents[3] / "processors" / "policies" / "example.yaml"
PROCESSOR_KEY = SigningKey.generate()
POLICY = CompiledPolicy.from_record(load_policy_file(EXAMPLE, version=4))


@pytest.fixture
def registry(tmp_path: Path) -> tuple[ServiceRegistry, SigningKey]:
    reg = ServiceRegistry(tmp_path)
    key, _ = reg.add_service("billing")
    return reg, key


def proposal(key: SigningKey | None, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "action_id": "a-1", "correlation_id": "c-1", "proposed_at": 1, "tenant": "default",
        "service": "billing", "actor": {"id": "alice", "roles": [], "attributes": {}},
        "type": "db.query", "resource": "db/prod/orders", "attributes": {"sql": "DELETE FROM orders"},
        "change_json": None, "reply_topic": "lockgate.verdicts", "reply_partition": 2,
        "reply_instance": "inst", "service_key_id": None, "service_signature": None,
    }
    rec.update(over)
    return sign_record(rec, "service_signature", None, key) if key else rec


def decider(reg: ServiceRegistry | None, codec: Codec | None = None, policy: CompiledPolicy | None = POLICY
            ) -> Decider:
    return Decider(codec or get_codec(), PROCESSOR_KEY, "proc-test", lambda _t: policy, reg)


def decide(d: Decider, raw: bytes) -> Any:
    return d.decide(raw, topic="lockgate.actions", partition=0, offset=42, key=b"k")


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
