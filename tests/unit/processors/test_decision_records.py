"""The stored decision record: what the decide agent keeps, reads back, and the ledger chains.

One record per decision carries the verdict and the decision's audit events
(:mod:`processors.decisions`); these tests pin that what is stored is exactly what the
ledger chains (nothing more, nothing less, in order), that a re-delivered input can still
be answered from it, that records of the older format are read back but never chained
twice, and that no unreadable record on ``decisions`` is dropped silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from processors.decider import Decider, StoredDecision
from processors.decisions import decision_events, decision_headers, decision_record, parse_decision
from processors.policy.engine import CompiledPolicy
from processors.policy.files import load_policy_file
from processors.stage import Source
from schemas.codec import get_codec
from schemas.records import audit_event
from tests.unit.processors.conftest import proposal
from trust.keys import SigningKey
from trust.registry import ServiceRegistry, ServiceVerification

CODEC = get_codec()
EXAMPLE = Path(__file__).resolve().parents[3] / "processors" / "policies" / "example.yaml"
POLICY = CompiledPolicy.from_record(load_policy_file(EXAMPLE, version=4))
PROCESSOR_KEY = SigningKey.generate()
ACTIONS = Source("lockgate.actions", 2, 42, b"a-1")
DECISIONS = Source("lockgate.decisions", 2, 7, b"a-1")


def _proposal(key: SigningKey | None) -> bytes:
    return CODEC.encode("ProposedAction", proposal(key))


def _stored(reg: ServiceRegistry, raw: bytes) -> tuple[bytes, Any]:
    """What the decide agent stores for ``raw`` at ``ACTIONS``: the record, and the result."""
    result = Decider(CODEC, PROCESSOR_KEY, "proc-test", lambda _t: POLICY, reg).decide(raw, ACTIONS)
    decision = result.stored
    assert decision is not None
    return decision_record(CODEC, ACTIONS.offset, decision, result.audit), result


@pytest.mark.parametrize("signed", [True, False], ids=["authenticated", "unauthenticated"])
def test_the_ledger_chains_exactly_the_events_the_decider_made(
        registry: tuple[ServiceRegistry, SigningKey], signed: bool) -> None:
    reg, key = registry
    record, result = _stored(reg, _proposal(key if signed else None))
    out = decision_events(CODEC, record, DECISIONS)
    assert out.dead_letter is None
    assert out.audit == result.audit
    assert [e["kind"] for e in out.audit] == (["action", "verdict"] if signed else ["action", "security", "verdict"])
    assert {e["event_id"] for e in out.audit} == {e["event_id"] for e in result.audit}  # ids of the *input*


def test_a_stored_record_answers_a_redelivered_input_with_the_same_verdict(
        registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry
    record, result = _stored(reg, _proposal(key))
    parsed = parse_decision(record, [])
    assert parsed == (ACTIONS.offset, StoredDecision(result.verdict_bytes, ServiceVerification.OK,
                                                     carries_events=True))
    again = Decider(CODEC, PROCESSOR_KEY, "proc-test", lambda _t: POLICY, reg).decide(
        _proposal(key), ACTIONS, parsed[1])
    assert again.replayed and again.verdict_bytes == result.verdict_bytes
    assert [e["event_id"] for e in again.audit] == [e["event_id"] for e in result.audit]


def test_a_record_of_the_older_format_is_read_back_but_never_chained() -> None:
    old = StoredDecision(CODEC.encode("Verdict", _a_verdict()), ServiceVerification.UNSIGNED)
    assert parse_decision(old.verdict, decision_headers(41, old)) == (41, old)
    assert not old.carries_events  # so a re-delivered input sends its events through audit-intake
    out = decision_events(CODEC, old.verdict, DECISIONS)
    assert out.audit == [] and out.dead_letter is None  # its events went through audit-intake


def _a_verdict() -> dict[str, Any]:
    raw = _proposal(None)
    reg_less = Decider(CODEC, PROCESSOR_KEY, "proc-test", lambda _t: POLICY, None)
    result = reg_less.decide(raw, ACTIONS)
    assert result.verdict is not None
    return result.verdict


@pytest.mark.parametrize(("raw", "named"), [
    (None, "NullRecord"),
    (b"not avro at all", "MalformedRecord"),
    (b"\xc3\x01" + b"\x00" * 8 + b"junk", "UnknownSchema"),
    (CODEC.encode("AuditEvent", audit_event("action", "t", "a-1", b"p", event_id="e-1")), "got a AuditEvent"),
    (CODEC.encode("DecisionRecord", {"input_offset": 1, "auth": "", "verdict": b"v",
                                     "events": [{**audit_event("action", "t", "a-1", b"p"), "event_id": ""}]}),
     "empty event_id"),
], ids=["null", "garbage", "unknown-fingerprint", "another-type", "event-without-id"])
def test_an_unreadable_decisions_record_is_refused_on_the_ledger_never_dropped(raw: bytes | None, named: str) -> None:
    out = decision_events(CODEC, raw, DECISIONS)
    assert out.dead_letter is not None
    assert (out.dead_letter["source_topic"], out.dead_letter["source_offset"]) == (DECISIONS.topic, DECISIONS.offset)
    assert named in out.dead_letter["error_type"] + ": " + out.dead_letter["error"]
    assert [e["kind"] for e in out.audit] == ["dead_letter"]  # the refusal itself is chained


def test_parse_refuses_what_is_not_a_decision() -> None:
    assert parse_decision(None, []) is None
    assert parse_decision(b"x", []) is None
    broken = CODEC.encode("DecisionRecord", {"input_offset": 1, "auth": "", "verdict": b"v", "events": []})[:-1]
    assert parse_decision(broken, []) is None  # truncated
    assert parse_decision(CODEC.encode("DecisionRecord", {"input_offset": 1, "auth": "nonsense", "verdict": b"v",
                                                          "events": []}), []) is None
    # A verdict that does not decode (a forged record): not a decision, so it is never re-sent.
    assert parse_decision(CODEC.encode("DecisionRecord", {"input_offset": 0, "auth": "", "verdict": b"v",
                                                          "events": []}), []) is None


def test_only_a_verdict_the_processors_signed_for_the_records_action_counts_as_a_decision(
        registry: tuple[ServiceRegistry, SigningKey]) -> None:
    reg, key = registry
    record, result = _stored(reg, _proposal(key))
    action_id = str(result.verdict["action_id"]).encode()
    signer = PROCESSOR_KEY.public()
    assert parse_decision(record, [], signer=signer, key=action_id) is not None  # the genuine one

    # A forger who can write to ``decisions``, signing with a key of their own: a decodable
    # verdict for the same input and action, which the requester's Guard would refuse.
    forged = Decider(CODEC, SigningKey.generate(), "proc-forged", lambda _t: POLICY, reg).decide(
        _proposal(key), ACTIONS)
    assert forged.stored is not None
    forged_record = decision_record(CODEC, ACTIONS.offset, forged.stored, forged.audit)
    assert parse_decision(forged_record, [], signer=signer, key=action_id) is None
    assert parse_decision(forged_record, []) is not None  # what the check adds: without it, it counted

    # A genuine verdict copied under another action's key (another input's offset).
    assert parse_decision(record, [], signer=signer, key=b"another-action") is None
    assert parse_decision(record, [], signer=signer, key=None) is None
