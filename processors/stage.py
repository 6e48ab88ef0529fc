"""What every stage's pure core hands its shell, and the one way a stage refuses a record.

A core (the decider, the outcome recorder, the ledger writer's input side) gets a record
and its :class:`Source` and returns a :class:`StageOutput`: the unchained audit events to
put on ``audit-intake`` and, when the record could not be processed, a dead letter. The
shell publishes them; the core never talks to Kafka.

The contract every stage keeps (no input drops an action): each record ends in a result
(a verdict, an outcome event) or in :func:`refuse` — a dead letter plus a ``dead_letter``
ledger event saying why. Every event id is derived from the record's coordinates
(:meth:`Source.event_id`), so processing a record twice yields the same events and the
ledger keeps one copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from schemas.records import AuditKind, audit_event, dead_letter, event_id_for

__all__ = ["AUDITED_RAW_BYTES", "Source", "StageOutput", "refuse"]

AUDITED_RAW_BYTES = 64 * 1024
"""How much of a refused record the ``dead_letter`` ledger event keeps (the dead letter keeps all)."""


@dataclass(frozen=True)
class Source:
    """Where a record came from: its topic, partition, offset and key."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None

    def event_id(self, kind: AuditKind) -> str:
        """The id of the ``kind`` event this record causes (one event per kind per record)."""
        return event_id_for(kind, self.topic, self.partition, self.offset)


@dataclass
class StageOutput:
    """What a core asks its shell to publish for one record."""

    audit: list[dict[str, Any]] = field(default_factory=list)
    dead_letter: dict[str, Any] | None = None


_Output = TypeVar("_Output", bound=StageOutput)


def refuse(raw: bytes | None, error: BaseException, source: Source, stage: str, into: _Output) -> _Output:
    """Account for a record a stage cannot process: a dead letter and a ledger event saying why.

    The dead letter keeps the raw bytes whole (for replay after a fix); the ``dead_letter``
    audit event keeps the first :data:`AUDITED_RAW_BYTES` and the error. Both are added to
    ``into``, which is returned (a refused proposal may still get a signed block verdict).
    """
    data = raw or b""
    out = into
    out.dead_letter = dead_letter(data, error, topic=source.topic, partition=source.partition,
                                  offset=source.offset, stage=stage, key=source.key)
    out.audit.append(audit_event(AuditKind.DEAD_LETTER, "", None, data[:AUDITED_RAW_BYTES],
                                 detail=f"{stage}: {type(error).__name__}: {error}",
                                 event_id=source.event_id(AuditKind.DEAD_LETTER)))
    return out
