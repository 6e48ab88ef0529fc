"""One definition per record shape: field lists read from the ``.avsc`` contracts, and the
one constructor of each record that more than one room builds.

Nothing here retypes a schema: :data:`AUDIT_FIELDS` and :data:`CHECKPOINT_FIELDS` come from
``AuditEvent.avsc`` and ``Checkpoint.avsc``; :class:`AuditKind` is pinned to the schema's
``AuditKind`` enum by a test. The chain writer, the sink's row builder, the verifier, the
proof format and the ledger sources all take their field lists from here.
"""

from __future__ import annotations

import enum
import hashlib
import time
import uuid
from typing import Any

from schemas.codec import TOP_LEVEL, load_schema_json, released_versions, schema_exists

__all__ = [
    "AUDIT_FIELDS",
    "CHECKPOINT_FIELDS",
    "DEAD_LETTER_ERROR_MAX",
    "FIELDS_ADDED_AFTER",
    "FIELDS_ADDED_IN_V2",
    "AuditKind",
    "audit_event",
    "dead_letter",
    "event_id_for",
    "field_names",
    "field_types",
]

DEAD_LETTER_ERROR_MAX = 4000
"""Characters of an error message kept in a dead letter (the raw record is kept whole)."""


def field_names(schema: str) -> tuple[str, ...]:
    """The field names of a top-level record schema, in schema order."""
    return tuple(f["name"] for f in load_schema_json(schema)["fields"])


_PY_TYPES: dict[str, type] = {"string": str, "long": int, "int": int, "bytes": bytes, "boolean": bool,
                               "null": type(None), "enum": str}


def _py_types(avro_type: Any) -> tuple[type, ...]:
    if isinstance(avro_type, list):
        return tuple(t for branch in avro_type for t in _py_types(branch))
    name = avro_type["type"] if isinstance(avro_type, dict) else avro_type
    if name not in _PY_TYPES:
        raise TypeError(f"no flat Python type for Avro type {name!r}")
    return (_PY_TYPES[name],)


def field_types(schema: str) -> dict[str, tuple[type, ...]]:
    """Each field of a flat record schema and the Python types its decoded value may have.

    For schemas whose fields are primitives, enums and nullable primitives (AuditEvent,
    Checkpoint); a nested record raises ``TypeError``.
    """
    return {f["name"]: _py_types(f["type"]) for f in load_schema_json(schema)["fields"]}


def _release_number(version: str) -> int:
    return int(version.lstrip("v"))


def _fields_added_after() -> dict[int, frozenset[str]]:
    """For each release N: the names of fields that schemas of release N gained in later releases."""
    releases = released_versions()
    out: dict[int, frozenset[str]] = {}
    for i, version in enumerate(releases):
        added: set[str] = set()
        for name in TOP_LEVEL:
            if not schema_exists(name, version):
                continue
            had = {f["name"] for f in load_schema_json(name, version)["fields"]}
            for later in releases[i + 1:]:
                added |= {f["name"] for f in load_schema_json(name, later)["fields"]} - had
        out[_release_number(version)] = frozenset(added)
    return out


FIELDS_ADDED_AFTER: dict[int, frozenset[str]] = _fields_added_after()
"""Release number N → names of the fields that records of release N gained in later releases.

A record with a ``signed_schema`` field was signed and hashed over the fields of that
release: everything but ``FIELDS_ADDED_AFTER[signed_schema]``
(``trust.canonical.signed_fields``). A test pins that no field of a release bears a name
added to another schema later, so the union is safe.
"""

FIELDS_ADDED_IN_V2: frozenset[str] = FIELDS_ADDED_AFTER[1]
"""The fields records of release v1 gained in v2 (``signed_schema`` among them)."""

AUDIT_FIELDS: tuple[str, ...] = field_names("AuditEvent")
"""The AuditEvent record's fields, in schema order."""

CHECKPOINT_FIELDS: tuple[str, ...] = field_names("Checkpoint")
"""The Checkpoint record's fields, in schema order."""


class AuditKind(enum.StrEnum):
    """What an audit event records (the ``AuditKind`` enum of ``AuditEvent.avsc``)."""

    ACTION = "action"
    VERDICT = "verdict"
    OUTCOME = "outcome"
    POLICY = "policy"
    DEAD_LETTER = "dead_letter"
    SECURITY = "security"
    REVIEW = "review"


def _now_us() -> int:
    return time.time_ns() // 1000


_EVENT_NAMESPACE = uuid.UUID("6c0c4b1e-3f0a-5d8e-9a57-1f5b0c6e2d41")
"""Namespace of derived event ids (a fixed random UUID; changing it changes every derived id)."""


def event_id_for(kind: AuditKind | str, *source: object) -> str:
    """A deterministic event id: UUIDv5 over the kind and the coordinates of what caused it.

    Why: a stage that processes the same input twice (at-least-once, after a crash) must
    produce the same event ids, so the ledger writer can drop the second copy. For an
    event caused by a Kafka record, ``source`` is ``(topic, partition, offset)``; other
    causes pass whatever identifies them uniquely (the registry file's state, say).
    """
    name = "|".join([str(AuditKind(kind)), *(str(part) for part in source)])
    return _uuid5_text(name)


_NAMESPACE_BYTES = _EVENT_NAMESPACE.bytes


def _uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(_EVENT_NAMESPACE, name))`` without building a ``UUID`` object.

    The same bytes and the same text (RFC 4122: SHA-1 of namespace and name, first 16
    bytes, version 5, RFC variant); about three times faster, and it runs several times per
    action on the decision path. ``tests/unit/schemas/test_event_ids.py`` pins the equality.
    """
    b = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def audit_event(kind: AuditKind | str, tenant: str, action_id: str | None, payload: bytes,
                detail: str | None = None, now_us: int | None = None,
                event_id: str | None = None) -> dict[str, Any]:
    """An unchained AuditEvent; the ledger writer fills the chain fields.

    Give ``event_id`` (from :func:`event_id_for`) whenever the event can be produced again
    from the same cause; a random id is only right for one-shot events (``policy apply``).
    """
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "kind": str(AuditKind(kind)),
        "recorded_at": now_us if now_us is not None else _now_us(),
        "tenant": tenant,
        "action_id": action_id,
        "payload": payload,
        "detail": detail,
        "ledger_partition": -1,
        "sequence": -1,
        "prev_hash": b"",
        "hash": b"",
        "canonical_version": 1,
    }


def dead_letter(raw: bytes, error: BaseException, *, topic: str, partition: int, offset: int,
                stage: str, key: bytes | None) -> dict[str, Any]:
    """A DeadLetter record: the raw bytes kept whole, the error named and bounded.

    Its id is derived from ``stage`` and the source coordinates, so a record dead-lettered
    again after a crash carries the same id and readers can drop the repeat.
    """
    return {
        "dead_letter_id": str(uuid.uuid5(_EVENT_NAMESPACE, f"dead_letter|{stage}|{topic}|{partition}|{offset}")),
        "recorded_at": _now_us(),
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "stage": stage,
        "error_type": type(error).__name__,
        "error": str(error)[:DEAD_LETTER_ERROR_MAX],
        "key": key,
        "raw": raw,
    }
