"""Sample records of every top-level schema, for the tests that decode our bytes elsewhere.

Each schema gets a record with every optional field set (non-ASCII text, bytes holding 0x00
and 0xff, every branch of the attribute union, 64-bit extremes) and one with nulls and empty
collections. Records that carry other records do so the way Lockgate does: an audit event's
``payload`` is the single-object-encoded action, verdict, outcome or policy it audits, and an
outcome's ``verdict`` is the encoded verdict it ran under. :attr:`Sample.embedded` names those
fields, so an interop test can check that a foreign decoder reads the inner bytes too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.codec import Codec

__all__ = ["LEGACY_AUDIT_EVENT", "LEGACY_VERDICT", "Sample", "samples", "typed"]

T0 = 1_700_000_000_000_000
LONG_MAX = 2**63 - 1
LONG_MIN = -(2**63)

# Written by the codec before it followed the spec (reversed bytes, bare names in the
# canonical form): a Verdict, and an AuditEvent carrying that Verdict as its payload.
LEGACY_VERDICT = bytes.fromhex(
    "c3017fb1557dd45b76590461310463310467318080f281838985060861636d650e62696c6c696e670200020472310200"
    "046e6f0000027006047231500c70726f632d31046b31040102"
)
LEGACY_AUDIT_EVENT = bytes.fromhex(
    "c3017e76c420fa71536b046531028280f281838985060861636d65020461319201" + LEGACY_VERDICT.hex()
    + "00000e0800000000081111111102"
)


@dataclass(frozen=True)
class Sample:
    """One record to encode, and the fields of it that hold other single-object-encoded records."""

    label: str
    name: str
    record: dict[str, Any]
    embedded: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)


def _proposed_action(full: bool) -> dict[str, Any]:
    return {
        "action_id": "a-1" if full else "",
        "correlation_id": "c-1",
        "proposed_at": T0 if full else 0,
        "tenant": "acme",
        "service": "billing",
        "actor": {
            "id": "zoë@example.com",
            "roles": ["dba", "on-call"] if full else [],
            "attributes": {"team": "платежи", "mfa": "yes"} if full else {},
        },
        "type": "db.query",
        "resource": "db/prod/orders",
        "attributes": {
            "sql": "UPDATE orders SET status = 'x' WHERE id = 1",
            "rows": LONG_MAX,
            "delta": LONG_MIN,
            "ratio": 0.1,
            "dry_run": False,
            "ticket": None,
            "emoji": "✓ 日本",
        } if full else {},
        "change_json": '{"status":"x","note":"ü"}' if full else None,
        "reply_topic": "lockgate.verdicts",
        "reply_partition": 2**31 - 1 if full else 0,
        "reply_instance": "guard-1",
        "service_key_id": "svc-key-1" if full else None,
        "service_signature": bytes(range(256))[::-1][:64] if full else None,
        "deadline": T0 + 5_000_000 if full else None,
        "justification": "incident INC-7: customer asked — ü" if full else None,
        "break_glass": full,
        "signed_schema": 2 if full else 1,
    }


def _verdict(full: bool) -> dict[str, Any]:
    rules = [
        {"id": "r1", "effect": "block", "mode": "enforce", "message": "no deletes in prod", "error": None},
        {"id": "r2", "effect": "allow", "mode": "shadow", "message": "", "error": "no such field: x"},
    ]
    return {
        "action_id": "a-1",
        "correlation_id": "c-1",
        "reply_instance": "guard-1",
        "decided_at": T0 + 1,
        "tenant": "acme",
        "service": "billing",
        "decision": "block" if full else "allow",
        "basis": "rule" if full else "no_policy",
        "matched_rules": rules if full else [],
        "policy_name": "prod-guardrails" if full else "",
        "policy_version": 7 if full else 0,
        "reason": "rule r1 says block" if full else "",
        "eval_latency_us": 42,
        "processor_id": "proc-1",
        "key_id": "0123456789abcdef",
        "proposal_sha256": b"\x00\xff" * 16 if full else None,
        "policy_sha256": b"\x11" * 32 if full else None,
        "review": {
            "review_id": "rv-1", "rule_id": "prod-deletes", "approver_groups": ["dba", "sre"],
            "min_approvals": 2, "require_reason": True, "expires_at": T0 + 3_600_000_000,
            "grant": "window", "approvals": [b"\xc3\x01vote-1", b"\xc3\x01vote-2"],
        } if full else None,
        "signed_schema": 2 if full else 1,
        "signature": b"\x00\xff" * 32 if full else b"",
    }


def _outcome(full: bool, verdict: bytes | None) -> dict[str, Any]:
    return {
        "outcome_id": "o-1",
        "action_id": "a-1",
        "correlation_id": "c-1",
        "recorded_at": T0 + 2,
        "tenant": "acme",
        "service": "billing",
        "actor_id": "zoë@example.com",
        "status": "committed" if full else "failed",
        "error_type": None if full else "IntegrityError",
        "error_message": None if full else "duplicate key",
        "before_json": '{"status":"a"}' if full else None,
        "after_json": '{"status":"x"}' if full else None,
        "verdict": verdict,
        "service_key_id": "svc-key-1" if full else None,
        "service_signature": b"\x01" * 64 if full else None,
        "verdict_sha256": b"\x22" * 32 if full else None,
        "signed_schema": 2 if full else 1,
    }


def _policy_set(full: bool) -> dict[str, Any]:
    rule = {
        "id": "no-prod-deletes",
        "description": "Deletes in prod need a review",
        "match": {"types": ["db.query"], "resources": ["db/prod/*"], "services": []},
        "when": "sql.kind == 'delete'",
        "effect": "block",
        "mode": "enforce",
        "message": "review first",
        "review": None,
    }
    review = {"approvers": ["dba", "sre"], "min_approvals": 2, "require_reason": True,
              "expires_after_s": 3600, "grant": "window", "grant_window_s": 900, "grant_resource_prefix": "db/prod/"}
    return {
        "name": "prod-guardrails",
        "tenant": "acme",
        "version": 7,
        "published_at": T0,
        "published_by": "alice",
        "source_sha256": "ab" * 32,
        "default": "allow",
        "on_error": "block",
        "rules": [rule, {**rule, "id": "shadow-exports", "mode": "shadow", "effect": "allow"},
                  {**rule, "id": "review-deletes", "effect": "review", "review": review}] if full else [],
        "break_glass_roles": ["incident-commander"] if full else [],
    }


def _review_vote(full: bool) -> dict[str, Any]:
    return {
        "vote_id": "v-1", "review_id": "rv-1", "action_id": "a-1", "tenant": "acme",
        "reviewer": "bob", "vote": "approve" if full else "deny",
        "reason": "checked the ticket — ok" if full else "", "voted_at": T0 + 6,
        "proposal_sha256": b"\x00\xff" * 16, "key_id": "fedcba9876543210",
        "signature": b"\x04" * 64 if full else b"",
    }


def _audit_event(kind: str, payload: bytes, detail: str | None = None) -> dict[str, Any]:
    return {
        "event_id": f"e-{kind}",
        "kind": kind,
        "recorded_at": T0 + 3,
        "tenant": "acme",
        "action_id": None if kind in ("policy", "dead_letter") else "a-1",
        "payload": payload,
        "detail": detail,
        "ledger_partition": 3,
        "sequence": LONG_MAX,
        "prev_hash": b"\x00" * 32,
        "hash": b"\xff" * 32,
        "canonical_version": 1,
    }


def samples(codec: Codec) -> list[Sample]:
    """Two or more samples per top-level schema; ``codec`` encodes the embedded records."""
    out: list[Sample] = []
    for full in (True, False):
        suffix = "full" if full else "minimal"
        verdict = _verdict(full)
        verdict_bytes = codec.encode("Verdict", verdict)
        outcome = _outcome(full, verdict_bytes if full else None)
        out += [
            Sample(f"ProposedAction-{suffix}", "ProposedAction", _proposed_action(full)),
            Sample(f"Verdict-{suffix}", "Verdict", verdict),
            Sample(f"ActionOutcome-{suffix}", "ActionOutcome", outcome,
                   {"verdict": ("Verdict", verdict)} if full else {}),
            Sample(f"PolicySet-{suffix}", "PolicySet", _policy_set(full)),
            Sample(f"ReviewVote-{suffix}", "ReviewVote", _review_vote(full)),
        ]
    audited = [
        ("action", "ProposedAction", _proposed_action(True), None),
        ("verdict", "Verdict", _verdict(True), None),
        ("outcome", "ActionOutcome", _outcome(False, None), None),
        ("policy", "PolicySet", _policy_set(True), None),
        ("security", "ProposedAction", _proposed_action(False), "unauthenticated action from 'billing'"),
        ("review", "ReviewVote", _review_vote(True), None),
    ]
    for kind, name, record, detail in audited:
        event = _audit_event(kind, codec.encode(name, record), detail)
        out.append(Sample(f"AuditEvent-{kind}", "AuditEvent", event, {"payload": (name, record)}))
    proposal_bytes, verdict_bytes = codec.encode("ProposedAction", _proposed_action(True)), codec.encode(
        "Verdict", _verdict(True))
    out.append(Sample("DecisionRecord-full", "DecisionRecord", {
        "input_offset": LONG_MAX, "auth": "ok", "verdict": verdict_bytes,
        "events": [_audit_event("action", proposal_bytes, None),
                   _audit_event("security", proposal_bytes, "granted by review r-1"),
                   _audit_event("verdict", verdict_bytes, None)],
    }, {"verdict": ("Verdict", _verdict(True))}))
    out.append(Sample("DecisionRecord-minimal", "DecisionRecord", {
        "input_offset": 0, "auth": "", "verdict": verdict_bytes, "events": [],
    }, {"verdict": ("Verdict", _verdict(True))}))
    out.append(Sample("AuditEvent-dead_letter", "AuditEvent",
                      _audit_event("dead_letter", b"not avro \xff", "MalformedRecord: no C3 01 marker")))
    out.append(Sample("Checkpoint", "Checkpoint", {
        "checkpoint_id": "cp-1", "ledger_partition": 3, "first_sequence": 0, "last_sequence": 9,
        "head_hash": b"\x01" * 32, "merkle_root": b"\x02" * 32, "created_at": T0 + 4,
        "processor_id": "proc-1", "key_id": "0123456789abcdef", "signature": b"\x03" * 64,
        "signature_format": "interval/v1",
    }))
    out.append(Sample("Checkpoint-tlog", "Checkpoint", {
        "checkpoint_id": "p3@10", "ledger_partition": 3, "first_sequence": 0, "last_sequence": 9,
        "head_hash": b"\x01" * 32, "merkle_root": b"\x02" * 32, "created_at": T0 + 4,
        "processor_id": "proc-1", "key_id": "0123456789abcdef",
        "signature": "lockgate.example/ledger/p3\n10\nAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n\n"
                     "\u2014 lockgate.example/ledger/p3 AAAAAA==\n".encode(),
        "signature_format": "tlog-checkpoint/v1",
    }))
    for key in (b"k\x00", None):
        out.append(Sample(f"DeadLetter-{'key' if key else 'no-key'}", "DeadLetter", {
            "dead_letter_id": "d-1", "recorded_at": T0 + 5, "source_topic": "lockgate.actions",
            "source_partition": 0, "source_offset": LONG_MAX, "stage": "processor",
            "error_type": "MalformedRecord", "error": "not a single-object-encoded Avro record",
            "key": key, "raw": b"{\"json\": \"not avro\"}",
        }))
    return out


def typed(value: Any) -> Any:
    """``value`` with every leaf paired with its type, so ``False`` no longer equals ``0`` or ``0.0``."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)
