"""The verdict agent's pure core: raw proposal bytes in, signed verdict and audit events out.

No Kafka and no Faust here, so every branch is unit-testable. :meth:`Decider.decide`
never raises on bad input; it returns a :class:`DecisionResult` saying what to publish:

* a valid, authenticated proposal → a signed verdict (allow/block from the policy) and
  two audit events (the action, the verdict);
* a proposal from an unknown service, with a bad or missing signature → a signed block
  verdict (basis ``unauthenticated``), the audit events, and a ``security`` audit event;
* bytes that do not decode, or exceed the size limit → a dead letter always; plus a
  signed block verdict (basis ``invalid_request``) when the reply address and correlation
  id can still be recovered from the bytes, so the caller fails fast instead of timing out.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from processors.policy.engine import CompiledPolicy, Decision, no_policy_decision
from schemas.codec import HEADER_LEN, Codec, get_codec
from schemas.errors import CodecError
from schemas.records import AuditKind, audit_event, dead_letter
from trust.canonical import signing_payload
from trust.keys import SigningKey
from trust.registry import ServiceRegistry, ServiceVerification
from trust.signatures import sign_record

__all__ = ["Decider", "DecisionResult", "audit_event", "dead_letter"]

PolicyLookup = Callable[[str], CompiledPolicy | None]


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class DecisionResult:
    verdict: dict[str, Any] | None = None
    reply_topic: str | None = None
    reply_partition: int | None = None
    audit: list[dict[str, Any]] = field(default_factory=list)
    dead_letter: dict[str, Any] | None = None


def _recover_reply(raw: bytes, codec: Codec) -> dict[str, Any] | None:
    """Best effort: read the leading fields of a ProposedAction that failed later on.

    Only used to answer a broken request quickly with a block; the answer is signed and
    names the failure, so recovering wrong fields cannot open anything.
    """
    try:
        from fastavro import schemaless_reader

        if codec.peek_schema(raw) != "ProposedAction":
            return None
        rec = schemaless_reader(io.BytesIO(bytes(raw[HEADER_LEN:])), codec.schema("ProposedAction"), None)
        if isinstance(rec, dict) and {"correlation_id", "reply_topic", "reply_partition"} <= rec.keys():
            return rec
    except Exception:  # noqa: S110 - recovery is best effort by design
        pass
    return None


class Decider:
    """Decides one proposal at a time; holds the signing key and the service registry."""

    def __init__(self, codec: Codec, key: SigningKey, processor_id: str, policies: PolicyLookup,
                 registry: ServiceRegistry | None, require_service_auth: bool = True) -> None:
        self.codec = codec  # decodes proposals, under the proposal size limit
        self.wire = get_codec()  # encodes what we publish, under the wire ceiling
        self.key = key
        self.processor_id = processor_id
        self.policies = policies
        self.registry = registry
        self.require_service_auth = require_service_auth

    def _authenticate(self, rec: dict[str, Any]) -> ServiceVerification:
        if self.registry is None:
            return ServiceVerification.UNKNOWN_SERVICE
        payload = signing_payload(rec, "service_signature", None)
        # Key expiry is judged at receipt, never at the producer's claimed proposed_at.
        return self.registry.verify(rec["service"], rec.get("service_key_id"), payload,
                                    rec.get("service_signature"), _now_us())

    def _verdict(self, rec: dict[str, Any], decision: Decision, started_ns: int) -> dict[str, Any]:
        verdict = {
            "action_id": rec["action_id"],
            "correlation_id": rec["correlation_id"],
            "reply_instance": rec.get("reply_instance", ""),
            "decided_at": _now_us(),
            "tenant": rec.get("tenant", ""),
            "service": rec.get("service", ""),
            **decision.verdict_fields(),
            "eval_latency_us": (time.perf_counter_ns() - started_ns) // 1000,
            "processor_id": self.processor_id,
            "key_id": self.key.key_id,
            "signature": b"",
        }
        return sign_record(verdict, "signature", b"", self.key)

    def decide(self, raw: bytes, *, topic: str, partition: int, offset: int,
               key: bytes | None = None) -> DecisionResult:
        started = time.perf_counter_ns()
        try:
            rec = self.codec.decode_as("ProposedAction", raw)
        except CodecError as exc:
            return self._reject(raw, exc, topic, partition, offset, key, started)
        result = DecisionResult(reply_topic=rec["reply_topic"], reply_partition=rec["reply_partition"])
        tenant = rec["tenant"]
        auth = self._authenticate(rec)
        authenticated = auth is ServiceVerification.OK
        result.audit.append(audit_event(AuditKind.ACTION, tenant, rec["action_id"], raw))
        if not authenticated and self.require_service_auth:
            decision = Decision(
                decision="block", basis="unauthenticated", matched_rules=[],
                reason=(f"service {rec['service']!r} is not authenticated ({auth.value}); register it "
                        "with `lockgate keys add-service` and configure the Guard with its key"),
                policy_name="", policy_version=0,
            )
            result.audit.append(audit_event(AuditKind.SECURITY, tenant, rec["action_id"], raw,
                                            detail=f"unauthenticated action from {rec['service']!r}: {auth.value}"))
        else:
            policy = self.policies(tenant)
            if policy is None:
                decision = no_policy_decision(tenant)
            else:
                decision = policy.evaluate(rec, authenticated=authenticated, now_us=_now_us())
        verdict = self._verdict(rec, decision, started)
        result.verdict = verdict
        result.audit.append(audit_event(AuditKind.VERDICT, tenant, rec["action_id"],
                                        self.wire.encode("Verdict", verdict)))
        return result

    def _reject(self, raw: bytes, exc: CodecError, topic: str, partition: int, offset: int,
                key: bytes | None, started: int) -> DecisionResult:
        result = DecisionResult(dead_letter=dead_letter(raw, exc, topic=topic, partition=partition,
                                                        offset=offset, stage="processor", key=key))
        result.audit.append(audit_event(AuditKind.DEAD_LETTER, "", None, raw[: 64 * 1024],
                                         detail=f"{type(exc).__name__}: {exc}"))
        partial = _recover_reply(raw, self.codec) if len(raw) <= 16 * self.codec.max_record_bytes else None
        if partial is not None:
            decision = Decision(decision="block", basis="invalid_request", matched_rules=[],
                                reason=f"the proposed action could not be read: {type(exc).__name__}: {exc}",
                                policy_name="", policy_version=0)
            rec = {"action_id": str(partial.get("action_id", "")), "correlation_id": partial["correlation_id"],
                   "reply_instance": str(partial.get("reply_instance", "")),
                   "tenant": str(partial.get("tenant", "")), "service": str(partial.get("service", ""))}
            result.verdict = self._verdict(rec, decision, started)
            result.reply_topic = str(partial["reply_topic"])
            result.reply_partition = int(partial["reply_partition"])
        return result
