"""The verdict agent's pure core: raw proposal bytes in, signed verdict and audit events out.

No Kafka and no Faust here, so every branch is unit-testable. :meth:`Decider.decide`
never raises; it returns a :class:`DecisionResult` saying what to publish:

* a valid, authenticated proposal → a signed verdict (allow/block from the policy) and
  two audit events (the action, the verdict);
* a proposal from an unknown service, with a bad or missing signature → a signed block
  verdict (basis ``unauthenticated``), the audit events, and a ``security`` audit event;
* a proposal read after its ``deadline`` → a signed block (basis ``expired``) and the two
  audit events, without authenticating or evaluating it (load shedding: nobody waits for
  the answer, so no work is spent on it);
* a null value (tombstone), bytes that do not decode or exceed the size limit, or any
  exception while deciding → :func:`processors.stage.refuse` (a dead letter and a
  ``dead_letter`` ledger event); plus a signed block verdict when the reply address and
  correlation id can still be read from the bytes, so the caller fails fast instead of
  timing out (basis ``invalid_request`` for unreadable input, ``evaluation_error`` for a
  failure of ours).

**One decision per action id** (:mod:`processors.replay`): given an
:class:`~processors.replay.ActionIds`, a proposal whose action id was already decided (or
that is too old, or outside its home partition, to tell) gets a signed block with basis
``replay`` and a ``security`` event carrying its bytes, but no ``action`` event.

**One decision per input.** Given the :class:`StoredDecision` the shell kept for this
input (the same topic, partition and offset, decided before a crash), ``decide`` makes no
new decision: it re-emits the stored verdict bytes unchanged, with the same audit events
(their ids derive from the input's coordinates, so the ledger keeps one copy). A verdict
therefore never differs from the one a caller may already hold.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from processors.errors import NullRecord
from processors.policy.engine import CompiledPolicy, Decision, no_policy_decision
from processors.replay import ActionIds, Refusal
from processors.reviews.requests import GrantLookup, Held, hold_for_review
from processors.stage import Source, StageOutput, refuse
from schemas.codec import HEADER_LEN, Codec, get_codec
from schemas.errors import CodecError
from schemas.records import AuditKind, audit_event
from trust.bindings import record_sha256
from trust.canonical import signing_payload
from trust.keys import SigningKey
from trust.registry import ServiceRegistry, ServiceVerification
from trust.signatures import sign_record

__all__ = ["Decider", "DecisionResult", "StoredDecision"]

PolicyLookup = Callable[[str], CompiledPolicy | None]


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class StoredDecision:
    """A decision kept durably before its verdict was sent: the verdict bytes and the
    service-authentication result it was made under. ``carries_events``: the stored record
    also holds the decision's audit events, which the ledger chains from it (older records
    did not: their events are sent again when the input is re-delivered)."""

    verdict: bytes
    auth: ServiceVerification | None
    carries_events: bool = False


@dataclass
class DecisionResult(StageOutput):
    """What to publish for one proposal (see the module docstring)."""

    verdict: dict[str, Any] | None = None
    verdict_bytes: bytes | None = None
    reply_topic: str | None = None
    reply_partition: int | None = None
    auth: ServiceVerification | None = None
    replayed: bool = False  # the verdict is a stored one, re-sent unchanged
    proposal_raw: bytes | None = None  # the proposal's bytes (a held one also goes on the reviews topic)

    @property
    def stored(self) -> StoredDecision | None:
        """What to keep durably before the verdict goes out (``None``: nothing was decided)."""
        if self.verdict_bytes is None or self.replayed:
            return None
        return StoredDecision(self.verdict_bytes, self.auth)


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
                 registry: ServiceRegistry | None, require_service_auth: bool = True,
                 decided: ActionIds | None = None, grants: GrantLookup | None = None) -> None:
        self.codec = codec  # decodes proposals, under the proposal size limit
        self.wire = get_codec()  # encodes what we publish, under the wire ceiling
        self.key = key
        self.processor_id = processor_id
        self.policies = policies
        self.registry = registry
        self.require_service_auth = require_service_auth
        self.decided = decided  # one decision per action id; None: per input only
        self.grants = grants  # time-boxed review grants (processors.reviews.grants); None: none apply

    def _authenticate(self, rec: dict[str, Any]) -> ServiceVerification:
        if self.registry is None:
            return ServiceVerification.UNKNOWN_SERVICE
        payload = signing_payload(rec, "service_signature", None)
        # Key expiry is judged at receipt, never at the producer's claimed proposed_at.
        return self.registry.verify(rec["service"], rec.get("service_key_id"), payload,
                                    rec.get("service_signature"), _now_us())

    def _sign(self, rec: dict[str, Any], decision: Decision, started_ns: int,
              review: dict[str, Any] | None = None, decided_at: int | None = None) -> dict[str, Any]:
        """The signed verdict; ``decided_at``: the instant the policy evaluated ``now`` as (so
        ``verify --decisions`` re-evaluates time-dependent rules at exactly that instant)."""
        verdict = {
            "action_id": rec["action_id"],
            "correlation_id": rec["correlation_id"],
            "reply_instance": rec.get("reply_instance", ""),
            "decided_at": decided_at if decided_at is not None else _now_us(),
            "tenant": rec.get("tenant", ""),
            "service": rec.get("service", ""),
            **decision.verdict_fields(),
            "eval_latency_us": (time.perf_counter_ns() - started_ns) // 1000,
            "processor_id": self.processor_id,
            "key_id": self.key.key_id,
            "proposal_sha256": record_sha256(rec) if "proposed_at" in rec else None,
            "review": review,
            "signed_schema": 2,
            "signature": b"",
        }
        return sign_record(verdict, "signature", b"", self.key)

    def _set_verdict(self, result: DecisionResult, verdict: dict[str, Any] | None, stored: StoredDecision | None
                     ) -> bytes:
        """Fill the verdict fields (the stored verdict unchanged, else the new one); its bytes."""
        if stored is not None:
            result.verdict = self.wire.decode_as("Verdict", stored.verdict)
            result.replayed = True
            encoded = stored.verdict
        elif verdict is not None:
            result.verdict = verdict
            encoded = self.wire.encode("Verdict", verdict)
        else:
            raise RuntimeError("a proposal reached the verdict step with neither a new nor a stored verdict")
        result.verdict_bytes = encoded
        return encoded

    def decide(self, raw: bytes | None, source: Source, stored: StoredDecision | None = None) -> DecisionResult:
        """The result for the proposal at ``source``; ``stored``: its decision from before a crash."""
        started = time.perf_counter_ns()
        try:
            if raw is None:
                raise NullRecord(source.topic, source.partition, source.offset)
            rec = self.codec.decode_as("ProposedAction", raw)
        except (CodecError, NullRecord) as exc:
            return self._refuse(raw, exc, source, started, stored, basis="invalid_request")
        try:
            return self._decide(raw, rec, source, stored, started)
        except Exception as exc:  # a fault of ours (policy engine, registry, signing): fail closed
            return self._refuse(raw, exc, source, started, stored, basis="evaluation_error")

    def _decide(self, raw: bytes, rec: dict[str, Any], source: Source, stored: StoredDecision | None,
                started: int) -> DecisionResult:
        result = DecisionResult(reply_topic=rec["reply_topic"], reply_partition=rec["reply_partition"],
                                proposal_raw=raw)
        tenant = rec["tenant"]
        if stored is not None:
            kept = self.wire.decode_as("Verdict", stored.verdict)
            refusal = Refusal(kept["reason"]) if kept["basis"] == "replay" else None
        else:
            refusal = self.decided.admit(rec, source.partition, _now_us()) if self.decided is not None else None
        if refusal is not None:
            return self._refuse_replay(raw, rec, source, refusal, result, stored, started)
        # Shed only after the replay check: a repeated copy of an expired proposal is a replay,
        # not a second action on the ledger (one proposal per action id).
        if stored is None and rec.get("deadline") is not None and rec["deadline"] < _now_us():
            return self._shed(raw, rec, source, started)
        auth = stored.auth if stored is not None and stored.auth is not None else self._authenticate(rec)
        result.auth = auth
        authenticated = auth is ServiceVerification.OK
        result.audit.append(audit_event(AuditKind.ACTION, tenant, rec["action_id"], raw,
                                        event_id=source.event_id(AuditKind.ACTION)))
        verdict: dict[str, Any] | None = None
        if not authenticated and self.require_service_auth:
            result.audit.append(audit_event(AuditKind.SECURITY, tenant, rec["action_id"], raw,
                                            detail=f"unauthenticated action from {rec['service']!r}: {auth.value}",
                                            event_id=source.event_id(AuditKind.SECURITY)))
            if stored is None:
                verdict = self._sign(rec, Decision(
                    decision="block", basis="unauthenticated", matched_rules=[],
                    reason=(f"service {rec['service']!r} is not authenticated ({auth.value}); register it "
                            "with `lockgate keys add-service` and configure the Guard with its key"),
                    policy_name="", policy_version=0,
                ), started)
        elif stored is None:
            policy = self.policies(tenant)
            now = _now_us()
            decision = (no_policy_decision(tenant) if policy is None
                        else policy.evaluate(rec, authenticated=authenticated, now_us=now))
            held = hold_for_review(rec, decision, now, self.grants) if policy is not None else Held(decision)
            if held.security is not None:
                result.audit.append(audit_event(AuditKind.SECURITY, tenant, rec["action_id"], raw,
                                                detail=held.security, event_id=source.event_id(AuditKind.SECURITY)))
            verdict = self._sign(rec, held.decision, started, held.review, decided_at=now)
        encoded = self._set_verdict(result, verdict, stored)
        if (stored is not None and authenticated and result.verdict is not None
                and result.verdict["basis"] == "break_glass"):  # re-sent: its security event too
            result.audit.append(audit_event(AuditKind.SECURITY, tenant, rec["action_id"], raw,
                                            detail=result.verdict["reason"],
                                            event_id=source.event_id(AuditKind.SECURITY)))
        result.audit.append(audit_event(AuditKind.VERDICT, tenant, rec["action_id"], encoded,
                                        event_id=source.event_id(AuditKind.VERDICT)))
        return result

    def _refuse_replay(self, raw: bytes, rec: dict[str, Any], source: Source, refusal: Refusal,
                       result: DecisionResult, stored: StoredDecision | None, started: int) -> DecisionResult:
        """A signed block for a proposal whose action id already has its decision (``stored``:
        that block, kept before a crash: re-sent unchanged with the same events)."""
        result.audit.append(audit_event(AuditKind.SECURITY, rec["tenant"], rec["action_id"], raw,
                                        detail=f"replay refused: {refusal.reason}",
                                        event_id=source.event_id(AuditKind.SECURITY)))
        verdict = None if stored is not None else self._sign(rec, Decision(
            decision="block", basis=refusal.basis, matched_rules=[], reason=refusal.reason,
            policy_name="", policy_version=0), started)
        encoded = self._set_verdict(result, verdict, stored)
        result.audit.append(audit_event(AuditKind.VERDICT, rec["tenant"], rec["action_id"], encoded,
                                        event_id=source.event_id(AuditKind.VERDICT)))
        return result

    def _refuse(self, raw: bytes | None, exc: Exception, source: Source, started: int,
                stored: StoredDecision | None, *, basis: str) -> DecisionResult:
        """Dead-letter the proposal; answer it with a signed block if the caller can be found."""
        result = refuse(raw, exc, source, "processor", DecisionResult())
        data = raw or b""
        partial = _recover_reply(data, self.codec) if len(data) <= 16 * self.codec.max_record_bytes else None
        if partial is None:
            return result
        what = ("the proposed action could not be read" if basis == "invalid_request"
                else "the processor failed while deciding; blocked (fail-closed)")
        rec = {"action_id": str(partial.get("action_id", "")), "correlation_id": partial["correlation_id"],
               "reply_instance": str(partial.get("reply_instance", "")),
               "tenant": str(partial.get("tenant", "")), "service": str(partial.get("service", ""))}
        verdict = None if stored is not None else self._sign(rec, Decision(
            decision="block", basis=basis, matched_rules=[],
            reason=f"{what}: {type(exc).__name__}: {exc}", policy_name="", policy_version=0), started)
        encoded = self._set_verdict(result, verdict, stored)
        result.reply_topic = str(partial["reply_topic"])
        result.reply_partition = int(partial["reply_partition"])
        result.audit.append(audit_event(AuditKind.VERDICT, rec["tenant"], rec["action_id"] or None,
                                        encoded, event_id=source.event_id(AuditKind.VERDICT)))
        return result

    def _shed(self, raw: bytes, rec: dict[str, Any], source: Source, started: int) -> DecisionResult:
        """A proposal past its deadline: a signed block (basis ``expired``), on the ledger, unevaluated."""
        result = DecisionResult(reply_topic=rec["reply_topic"], reply_partition=rec["reply_partition"])
        result.audit.append(audit_event(AuditKind.ACTION, rec["tenant"], rec["action_id"], raw,
                                        event_id=source.event_id(AuditKind.ACTION)))
        late_ms = (_now_us() - rec["deadline"]) / 1000
        encoded = self._set_verdict(result, self._sign(rec, Decision(
            decision="block", basis="expired", matched_rules=[],
            reason=f"the proposal reached the processor {late_ms:.0f} ms after its deadline; not evaluated",
            policy_name="", policy_version=0), started), None)
        result.audit.append(audit_event(AuditKind.VERDICT, rec["tenant"], rec["action_id"], encoded,
                                        event_id=source.event_id(AuditKind.VERDICT)))
        return result
