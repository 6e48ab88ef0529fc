"""accept_verdict: only a decodable, signed, matching verdict becomes a Verdict."""

from __future__ import annotations

from typing import Any

import pytest

from producers.errors import VerdictRejected
from producers.verdicts import accept_verdict
from schemas.codec import get_codec
from trust.keys import SigningKey
from trust.signatures import sign_record

CODEC = get_codec()
KEY = SigningKey.generate()


def verdict(**over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "action_id": "a1", "correlation_id": "c1", "reply_instance": "i1", "decided_at": 1,
        "tenant": "t", "service": "s", "decision": "block", "basis": "rule",
        "matched_rules": [{"id": "r1", "effect": "block", "mode": "enforce", "message": "no", "error": None},
                          {"id": "r2", "effect": "block", "mode": "shadow", "message": "", "error": None}],
        "policy_name": "p", "policy_version": 3, "reason": "blocked by r1", "eval_latency_us": 5,
        "processor_id": "proc", "key_id": "", "signature": b"",
    }
    rec.update(over)
    return rec


def encode_signed(rec: dict[str, Any], key: SigningKey = KEY) -> bytes:
    return CODEC.encode("Verdict", sign_record(rec, "signature", b"", key))


def test_valid_verdict_is_accepted_with_rules_split_by_mode() -> None:
    v = accept_verdict(encode_signed(verdict()), "a1", KEY.public())
    assert v.decision == "block" and not v.allowed
    assert [r.id for r in v.enforced_rules] == ["r1"]
    assert [r.id for r in v.shadow_rules] == ["r2"]
    assert v.policy_version == 3


def test_unsigned_verdict_is_rejected() -> None:
    with pytest.raises(VerdictRejected, match="unsigned"):
        accept_verdict(CODEC.encode("Verdict", verdict()), "a1", KEY.public())


def test_verdict_signed_by_another_key_is_rejected() -> None:
    with pytest.raises(VerdictRejected, match="does not verify"):
        accept_verdict(encode_signed(verdict(), SigningKey.generate()), "a1", KEY.public())


def test_altered_signed_verdict_is_rejected() -> None:
    signed = sign_record(verdict(decision="block"), "signature", b"", KEY)
    signed["decision"] = "allow"
    with pytest.raises(VerdictRejected, match="does not verify"):
        accept_verdict(CODEC.encode("Verdict", signed), "a1", KEY.public())


def test_verdict_for_another_action_is_rejected() -> None:
    with pytest.raises(VerdictRejected, match="names action a2"):
        accept_verdict(encode_signed(verdict(action_id="a2")), "a1", KEY.public())


def test_garbage_is_rejected_not_crashing() -> None:
    with pytest.raises(VerdictRejected, match="not a valid Verdict"):
        accept_verdict(b"\xc3\x01garbage!!", "a1", KEY.public())


SENT = b"\x01" * 32  # record_sha256 of the proposal the Guard sent
OTHER = b"\x02" * 32


def bound(**over: Any) -> dict[str, Any]:
    return verdict(proposal_sha256=SENT, policy_sha256=b"\x03" * 32, review=None, signed_schema=2, **over)


def test_a_verdict_bound_to_the_proposal_sent_is_accepted_and_carries_its_hash() -> None:
    from trust.bindings import record_sha256

    raw = encode_signed(bound(decision="allow"))
    v = accept_verdict(raw, "a1", KEY.public(), proposal_sha256=SENT)
    assert v.allowed and v.sha256 == record_sha256(CODEC.decode_as("Verdict", raw))


@pytest.mark.parametrize("decision", ["allow", "block"])
def test_a_validly_signed_verdict_for_another_proposal_is_refused(decision: str) -> None:
    # Signed with the real processor key: only the binding tells it was made for another proposal.
    from producers.errors import VerdictMisbound

    with pytest.raises(VerdictMisbound, match="not to the one this Guard sent"):
        accept_verdict(encode_signed(bound(decision=decision) | {"proposal_sha256": OTHER}), "a1", KEY.public(),
                       proposal_sha256=SENT)


def test_an_allow_bound_to_no_proposal_is_refused_a_block_is_still_a_block() -> None:
    from producers.errors import VerdictMisbound

    with pytest.raises(VerdictMisbound, match="commits to no proposal"):
        accept_verdict(encode_signed(bound(decision="allow") | {"proposal_sha256": None}), "a1", KEY.public(),
                       proposal_sha256=SENT)
    unreadable = accept_verdict(encode_signed(bound(basis="invalid_request") | {"proposal_sha256": None}), "a1",
                                KEY.public(), proposal_sha256=SENT)
    assert not unreadable.allowed
