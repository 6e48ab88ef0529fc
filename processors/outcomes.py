"""The outcome core (run by the ledger stage): an ActionOutcome's bytes in, its audit events out.

:meth:`OutcomeRecorder.record` never raises. An outcome becomes an ``outcome`` audit event
(the raw bytes as payload, so ``verify`` can check the verdict it embeds), plus a
``security`` event when its service signature does not verify against the registry. A
null value, undecodable bytes, or any exception → :func:`processors.stage.refuse`.
The outcome event's id derives from the outcome's id and bytes (a re-sent spooled outcome
chains once); other event ids from the record's coordinates.
"""

from __future__ import annotations

import hashlib
import time

from processors.errors import NullRecord
from processors.stage import Source, StageOutput, refuse
from schemas.codec import Codec
from schemas.records import AuditKind, audit_event, event_id_for
from trust.canonical import signing_payload
from trust.registry import ServiceRegistry, ServiceVerification

__all__ = ["OutcomeRecorder"]

STAGE = "outcomes"


class OutcomeRecorder:
    """Turns outcomes into audit events; ``registry`` authenticates the reporting service."""

    def __init__(self, codec: Codec, registry: ServiceRegistry) -> None:
        self.codec = codec
        self.registry = registry

    def record(self, raw: bytes | None, source: Source) -> StageOutput:
        """The audit events for the outcome at ``source`` (see the module docstring)."""
        try:
            if raw is None:
                raise NullRecord(source.topic, source.partition, source.offset)
            rec = self.codec.decode_as("ActionOutcome", raw)
            # The outcome's own identity, not the record's offset: a Guard that re-sends a spooled
            # outcome (same outcome_id, same bytes) then chains it once; different bytes under one
            # outcome_id still chain twice, for verify to see.
            event_id = event_id_for(AuditKind.OUTCOME, "outcome", rec["outcome_id"], hashlib.sha256(raw).hexdigest())
            out = StageOutput([audit_event(AuditKind.OUTCOME, rec["tenant"], rec["action_id"], raw,
                                           event_id=event_id)])
            auth = self.registry.verify(rec["service"], rec.get("service_key_id"),
                                        signing_payload(rec, "service_signature", None),
                                        rec.get("service_signature"), time.time_ns() // 1000)
            if auth is not ServiceVerification.OK:
                out.audit.append(audit_event(
                    AuditKind.SECURITY, rec["tenant"], rec["action_id"], raw,
                    detail=f"outcome from unauthenticated service {rec['service']!r}: {auth.value}",
                    event_id=source.event_id(AuditKind.SECURITY)))
            return out
        except Exception as exc:  # unreadable input (CodecError, NullRecord) or a fault of ours
            return refuse(raw, exc, source, STAGE, StageOutput())
