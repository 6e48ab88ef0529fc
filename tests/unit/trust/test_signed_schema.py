"""Records signed before schema set v2 still verify; a v2 record's bindings cannot be stripped.

A v1 record read today gets the v2 fields' defaults filled in by the decoder. ``signed_schema``
(1 for those records) tells the verifier to leave exactly those fields out, so old data stays
verifiable — and a v2 record, signed with ``signed_schema = 2``, cannot be downgraded.
"""

from __future__ import annotations

from typing import Any

from schemas.codec import get_codec, load_schema_json
from schemas.records import FIELDS_ADDED_IN_V2
from trust.keys import SigningKey
from trust.signatures import sign_record, verify_record

CODEC = get_codec()
KEY = SigningKey.generate()


def _v1_verdict() -> dict[str, Any]:
    return {
        "action_id": "a-1", "correlation_id": "c-1", "reply_instance": "g-1", "decided_at": 1,
        "tenant": "acme", "service": "billing", "decision": "allow", "basis": "rule",
        "matched_rules": [], "policy_name": "p", "policy_version": 3, "reason": "ok",
        "eval_latency_us": 5, "processor_id": "proc-1", "key_id": "", "signature": b"",
    }


def test_no_field_of_release_v1_is_named_like_a_field_added_in_v2() -> None:
    for name in ("ProposedAction", "Verdict", "ActionOutcome", "PolicySet", "AuditEvent", "Checkpoint",
                 "DeadLetter"):
        v1 = {f["name"] for f in load_schema_json(name, "v1")["fields"]}
        assert not v1 & FIELDS_ADDED_IN_V2, name


def test_a_record_signed_under_v1_verifies_after_decoding_with_v2_defaults() -> None:
    signed = sign_record(_v1_verdict(), "signature", b"", KEY)  # the v1 processor's bytes
    decoded = CODEC.decode_as("Verdict", CODEC.encode("Verdict", signed))
    assert decoded["signed_schema"] == 1 and decoded["proposal_sha256"] is None
    assert verify_record(decoded, "signature", b"", KEY.public())


def test_a_v1_record_with_a_v2_field_filled_in_does_not_verify_as_v2() -> None:
    signed = sign_record(_v1_verdict(), "signature", b"", KEY)
    decoded = CODEC.decode_as("Verdict", CODEC.encode("Verdict", signed))
    assert not verify_record({**decoded, "signed_schema": 2, "proposal_sha256": b"\x01" * 32},
                             "signature", b"", KEY.public())


def test_downgrading_a_v2_record_to_drop_its_bindings_breaks_the_signature() -> None:
    v2 = {**_v1_verdict(), "signed_schema": 2, "proposal_sha256": b"\x01" * 32, "policy_sha256": b"\x02" * 32,
          "review": None}
    signed = CODEC.decode_as("Verdict", CODEC.encode("Verdict", sign_record(v2, "signature", b"", KEY)))
    assert verify_record(signed, "signature", b"", KEY.public())
    assert not verify_record({**signed, "signed_schema": 1}, "signature", b"", KEY.public())
    assert not verify_record({**signed, "proposal_sha256": b"\x03" * 32}, "signature", b"", KEY.public())
