"""Turn decoded AuditEvent / Checkpoint records into ClickHouse rows.

Contract:

* :func:`audit_event_row` keeps every AuditEvent field losslessly (``payload``, hashes as
  raw bytes; ``action_id``/``detail`` null stays null) so ``verify`` can recompute the chain
  from ClickHouse, and adds columns decoded from the payload by kind:
  ``action`` → ProposedAction, ``verdict`` → Verdict, ``outcome`` → ActionOutcome,
  ``policy`` → PolicySet; ``dead_letter``/``security`` keep raw payload + ``detail``.
* It never raises on a bad payload: the ledger row must land even if its payload does not
  decode (``verify`` will judge it). Extracted columns are then empty and ``decode_error``
  says why. Only a record that is not an AuditEvent at all (missing ledger fields) raises
  :class:`RowError` — the caller dead-letters it.
* The extracted columns (:data:`EXTRACTED_COLUMNS`) are what people read; they come from
  one function, :func:`extracted_columns`, which ``verify`` re-runs on the chained payload
  to prove every stored value (:mod:`sinks.view_check`). Change a derivation there and
  stores written before the change report ``altered_view``: that is by design, a reader
  would see something the ledger no longer yields.
* Timestamps are int microseconds (as the codec yields them); they are inserted as such
  into ``DateTime64(6, 'UTC')`` columns. Absent times are 0 (the epoch).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from schemas.codec import Codec, get_codec
from schemas.errors import CodecError
from schemas.records import AUDIT_FIELDS
from sinks.errors import InsertFailed, RowError

__all__ = [
    "AUDIT_ARROW_SCHEMA",
    "AUDIT_COLUMNS",
    "CHECKPOINT_ARROW_SCHEMA",
    "CHECKPOINT_COLUMNS",
    "EXTRACTED_COLUMNS",
    "EXTRACTED_SCHEMA",
    "KIND_SCHEMA",
    "SourceRef",
    "audit_event_row",
    "audit_table",
    "checkpoint_row",
    "derive_extracted",
    "extracted_columns",
    "ledger_row",
    "rows_to_arrow",
]

#: The schema a kind's payload is encoded with (kinds absent here keep raw bytes only).
KIND_SCHEMA: dict[str, str] = {
    "action": "ProposedAction",
    "verdict": "Verdict",
    "outcome": "ActionOutcome",
    "policy": "PolicySet",
}

LEDGER_COLUMNS: tuple[str, ...] = AUDIT_FIELDS
SOURCE_COLUMNS: tuple[str, ...] = ("src_topic", "src_partition", "src_offset")
EXTRACTED_COLUMNS: tuple[str, ...] = (
    "payload_schema", "decode_error", "correlation_id", "actor_id", "actor_roles", "service",
    "type", "resource", "attributes", "sql", "change_json", "before_json", "after_json",
    "decision", "basis", "rule_ids", "rule_effects", "rule_modes", "rule_errors",
    "policy_name", "policy_version", "reason", "outcome_status", "error_type",
    "error_message", "proposed_at", "decided_at", "outcome_at", "eval_latency_us",
    "processor_id", "key_id",
)
#: Column order of rows returned by :func:`audit_event_row`.
AUDIT_COLUMNS: tuple[str, ...] = LEDGER_COLUMNS + SOURCE_COLUMNS + EXTRACTED_COLUMNS

#: Column order of rows returned by :func:`checkpoint_row`.
CHECKPOINT_COLUMNS: tuple[str, ...] = (
    "checkpoint_id", "ledger_partition", "first_sequence", "last_sequence", "head_hash",
    "merkle_root", "created_at", "processor_id", "key_id", "signature", "signature_format",
    *SOURCE_COLUMNS,
)

SourceRef = tuple[str, int, int]
"""(topic, partition, offset) of the Kafka record a row came from."""

_S, _B, _I32, _I64 = pa.string(), pa.binary(), pa.int32(), pa.int64()
_TS = pa.timestamp("us", tz="UTC")
_STRINGS = pa.list_(pa.string())
_ARROW_TYPES: dict[str, Any] = {
    "recorded_at": _TS, "payload": _B, "prev_hash": _B, "hash": _B, "ledger_partition": _I32,
    "sequence": _I64, "canonical_version": _I32, "src_partition": _I32, "src_offset": _I64,
    "actor_roles": _STRINGS, "attributes": pa.map_(pa.string(), pa.string()),
    "rule_ids": _STRINGS, "rule_effects": _STRINGS, "rule_modes": _STRINGS,
    "rule_errors": _STRINGS, "policy_version": _I64, "proposed_at": _TS, "decided_at": _TS,
    "outcome_at": _TS, "eval_latency_us": _I64,
    "first_sequence": _I64, "last_sequence": _I64, "head_hash": _B, "merkle_root": _B,
    "created_at": _TS, "signature": _B,
}
#: Arrow schema of :data:`AUDIT_COLUMNS` (times: int µs → ``timestamp[us, UTC]``).
AUDIT_ARROW_SCHEMA: Any = pa.schema([(c, _ARROW_TYPES.get(c, _S)) for c in AUDIT_COLUMNS])
#: Arrow schema of :data:`EXTRACTED_COLUMNS` (what :func:`derive_extracted` returns).
EXTRACTED_SCHEMA: Any = pa.schema([AUDIT_ARROW_SCHEMA.field(c) for c in EXTRACTED_COLUMNS])
_LEDGER_SCHEMA: Any = pa.schema([AUDIT_ARROW_SCHEMA.field(c) for c in LEDGER_COLUMNS + SOURCE_COLUMNS])
_KIND, _PAYLOAD = AUDIT_COLUMNS.index("kind"), AUDIT_COLUMNS.index("payload")
#: Arrow schema of :data:`CHECKPOINT_COLUMNS`.
CHECKPOINT_ARROW_SCHEMA: Any = pa.schema(
    [(c, _ARROW_TYPES.get(c, _S)) for c in CHECKPOINT_COLUMNS])

_ZERO_COLUMNS = ("policy_version", "proposed_at", "decided_at", "outcome_at", "eval_latency_us")
_EMPTY_EXTRACTED: tuple[Any, ...] = tuple(
    [] if name in ("actor_roles", "rule_ids", "rule_effects", "rule_modes", "rule_errors")
    else {} if name == "attributes"
    else 0 if name in _ZERO_COLUMNS
    else ""
    for name in EXTRACTED_COLUMNS
)
# Positions within the extracted columns (constants: the hot path avoids lookups).
_AT = {name: i for i, name in enumerate(EXTRACTED_COLUMNS)}
_SCHEMA = _AT["payload_schema"]
_DECODE_ERROR = _AT["decode_error"]
_CORRELATION = _AT["correlation_id"]
_ACTOR = _AT["actor_id"]
_ROLES = _AT["actor_roles"]
_SERVICE = _AT["service"]
_TYPE = _AT["type"]
_RESOURCE = _AT["resource"]
_ATTRS = _AT["attributes"]
_SQL = _AT["sql"]
_CHANGE = _AT["change_json"]
_BEFORE = _AT["before_json"]
_AFTER = _AT["after_json"]
_DECISION = _AT["decision"]
_BASIS = _AT["basis"]
_RULE_IDS = _AT["rule_ids"]
_RULE_EFFECTS = _AT["rule_effects"]
_RULE_MODES = _AT["rule_modes"]
_RULE_ERRORS = _AT["rule_errors"]
_POLICY_NAME = _AT["policy_name"]
_POLICY_VERSION = _AT["policy_version"]
_REASON = _AT["reason"]
_OUTCOME = _AT["outcome_status"]
_ERROR_TYPE = _AT["error_type"]
_ERROR_MESSAGE = _AT["error_message"]
_PROPOSED_AT = _AT["proposed_at"]
_DECIDED_AT = _AT["decided_at"]
_OUTCOME_AT = _AT["outcome_at"]
_LATENCY = _AT["eval_latency_us"]
_PROCESSOR = _AT["processor_id"]
_KEY_ID = _AT["key_id"]
_BYTES = (bytes, bytearray, memoryview)


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _attr(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _extract_action(rec: Mapping[str, Any], out: list[Any]) -> None:
    actor = rec.get("actor") or {}
    attrs = rec.get("attributes") or {}
    out[_CORRELATION] = _s(rec.get("correlation_id"))
    out[_ACTOR] = _s(actor.get("id"))
    out[_ROLES] = [str(r) for r in actor.get("roles") or ()]
    out[_SERVICE] = _s(rec.get("service"))
    out[_TYPE] = _s(rec.get("type"))
    out[_RESOURCE] = _s(rec.get("resource"))
    out[_ATTRS] = {str(k): _attr(v) for k, v in attrs.items()}
    sql = attrs.get("sql")
    out[_SQL] = sql if isinstance(sql, str) else ""
    out[_CHANGE] = _s(rec.get("change_json"))
    out[_PROPOSED_AT] = int(rec.get("proposed_at") or 0)
    out[_KEY_ID] = _s(rec.get("service_key_id"))


def _extract_verdict(rec: Mapping[str, Any], out: list[Any]) -> None:
    rules = rec.get("matched_rules") or ()
    out[_CORRELATION] = _s(rec.get("correlation_id"))
    out[_SERVICE] = _s(rec.get("service"))
    out[_DECISION] = _s(rec.get("decision"))
    out[_BASIS] = _s(rec.get("basis"))
    if rules:
        out[_RULE_IDS] = [_s(r.get("id")) for r in rules]
        out[_RULE_EFFECTS] = [_s(r.get("effect")) for r in rules]
        out[_RULE_MODES] = [_s(r.get("mode")) for r in rules]
        out[_RULE_ERRORS] = [_s(r.get("error")) for r in rules]
    out[_POLICY_NAME] = _s(rec.get("policy_name"))
    out[_POLICY_VERSION] = int(rec.get("policy_version") or 0)
    out[_REASON] = _s(rec.get("reason"))
    out[_DECIDED_AT] = int(rec.get("decided_at") or 0)
    out[_LATENCY] = int(rec.get("eval_latency_us") or 0)
    out[_PROCESSOR] = _s(rec.get("processor_id"))
    out[_KEY_ID] = _s(rec.get("key_id"))


def _extract_outcome(rec: Mapping[str, Any], out: list[Any]) -> None:
    out[_CORRELATION] = _s(rec.get("correlation_id"))
    out[_ACTOR] = _s(rec.get("actor_id"))
    out[_SERVICE] = _s(rec.get("service"))
    out[_OUTCOME] = _s(rec.get("status"))
    out[_ERROR_TYPE] = _s(rec.get("error_type"))
    out[_ERROR_MESSAGE] = _s(rec.get("error_message"))
    out[_BEFORE] = _s(rec.get("before_json"))
    out[_AFTER] = _s(rec.get("after_json"))
    out[_OUTCOME_AT] = int(rec.get("recorded_at") or 0)
    out[_KEY_ID] = _s(rec.get("service_key_id"))


def _extract_policy(rec: Mapping[str, Any], out: list[Any]) -> None:
    rules = rec.get("rules") or ()
    out[_ACTOR] = _s(rec.get("published_by"))
    out[_POLICY_NAME] = _s(rec.get("name"))
    out[_POLICY_VERSION] = int(rec.get("version") or 0)
    out[_RULE_IDS] = [_s(r.get("id")) for r in rules]
    out[_RULE_EFFECTS] = [_s(r.get("effect")) for r in rules]
    out[_RULE_MODES] = [_s(r.get("mode")) for r in rules]
    out[_DECISION] = _s(rec.get("default"))
    out[_CHANGE] = json.dumps(
        {"source_sha256": rec.get("source_sha256"), "on_error": rec.get("on_error")},
        sort_keys=True,
    )


_EXTRACTORS: dict[str, Callable[[Mapping[str, Any], list[Any]], None]] = {
    "action": _extract_action,
    "verdict": _extract_verdict,
    "outcome": _extract_outcome,
    "policy": _extract_policy,
}


def _bad_field(event: Mapping[str, Any], name: str, expected: str) -> RowError:
    value = event.get(name)
    return RowError(
        f"AuditEvent field {name!r} is {type(value).__name__}, expected {expected}; "
        "the record is not a valid AuditEvent"
    )


def _int(event: Mapping[str, Any], name: str) -> int:
    value = event.get(name)
    if type(value) is not int:  # bool is an int subclass and not a valid value here
        raise _bad_field(event, name, "int")
    return value


def _str(event: Mapping[str, Any], name: str) -> str:
    value = event.get(name)
    if not isinstance(value, str):
        raise _bad_field(event, name, "str")
    return value


def _bytes(event: Mapping[str, Any], name: str) -> bytes:
    value = event.get(name)
    if type(value) is bytes:
        return value
    if not isinstance(value, _BYTES):
        raise _bad_field(event, name, "bytes")
    return bytes(value)


def extracted_columns(kind: str, payload: bytes, codec: Codec | None = None) -> list[Any]:
    """The reader-facing columns of one audit event, in :data:`EXTRACTED_COLUMNS` order.

    The one derivation of what people read from what the ledger chains: the sink writes
    its result into ``audit_events`` (:func:`audit_event_row`), and ``verify`` calls it
    again on the chained payload to prove the stored columns (:mod:`sinks.view_check`).
    Deterministic for a given ``(kind, payload)`` and code version; never raises: a payload
    that does not decode yields empty columns and ``decode_error`` saying why.
    """
    out = list(_EMPTY_EXTRACTED)
    expected = KIND_SCHEMA.get(kind)
    if expected is None:
        return out
    try:
        rec = (codec or get_codec()).decode_as(expected, payload)
        out[_SCHEMA] = expected
        _EXTRACTORS[kind](rec, out)
    except CodecError as exc:
        out = list(_EMPTY_EXTRACTED)
        out[_DECODE_ERROR] = f"{type(exc).__name__}: {exc}"
    except (AttributeError, TypeError, ValueError) as exc:
        out = list(_EMPTY_EXTRACTED)
        out[_DECODE_ERROR] = (
            f"{expected} payload has an unexpected shape: {type(exc).__name__}: {exc}"
        )
    return out


def ledger_row(event: Mapping[str, Any], source: SourceRef) -> tuple[Any, ...]:
    """The ledger and source columns of one decoded AuditEvent (the first
    ``len(LEDGER_COLUMNS) + len(SOURCE_COLUMNS)`` of :data:`AUDIT_COLUMNS`), checked.

    Raises :class:`RowError` if ``event`` lacks its ledger fields. The extracted columns
    follow from ``kind`` and ``payload`` alone (:func:`extracted_columns`), so the writer
    derives them later, a batch at a time (:func:`derive_extracted`).
    """
    get = event.get
    event_id, kind, recorded_at, tenant = get("event_id"), get("kind"), get("recorded_at"), get("tenant")
    payload, partition, sequence = get("payload"), get("ledger_partition"), get("sequence")
    prev_hash, hash_ = get("prev_hash"), get("hash")
    # The sink's hot path: one combined exact-type test; anything unusual takes the checks
    # that name the bad field (and accept str subclasses, bytearray, memoryview).
    if not (type(event_id) is str and type(kind) is str and type(recorded_at) is int
            and type(tenant) is str and type(payload) is bytes and type(partition) is int
            and type(sequence) is int and type(prev_hash) is bytes and type(hash_) is bytes):
        event_id, kind = _str(event, "event_id"), _str(event, "kind")
        recorded_at, tenant = _int(event, "recorded_at"), _str(event, "tenant")
        payload = _bytes(event, "payload")
        partition, sequence = _int(event, "ledger_partition"), _int(event, "sequence")
        prev_hash, hash_ = _bytes(event, "prev_hash"), _bytes(event, "hash")
    return (event_id, kind, recorded_at, tenant, get("action_id"), payload, get("detail"),
            partition, sequence, prev_hash, hash_, int(get("canonical_version", 1)),
            source[0], source[1], source[2])


def audit_event_row(
    event: Mapping[str, Any], source: SourceRef, codec: Codec | None = None
) -> list[Any]:
    """Row (in :data:`AUDIT_COLUMNS` order) for one decoded AuditEvent.

    Raises :class:`RowError` only if ``event`` lacks its ledger fields; a payload that does
    not decode yields a row with empty extracted columns and ``decode_error`` set.
    """
    row = list(ledger_row(event, source))
    row += extracted_columns(row[_KIND], row[_PAYLOAD], codec)
    return row


def derive_extracted(kinds: Sequence[str], payloads: Sequence[bytes]) -> Any:
    """The extracted columns of a batch, as a ``pyarrow.RecordBatch`` (:data:`EXTRACTED_SCHEMA`).

    :func:`extracted_columns` per event — the same derivation ``verify`` re-runs — turned
    column-oriented. A module-level function of plain arguments, so the writer can run it
    in a worker process (:mod:`sinks.derive_workers`) while it reads the next records.
    """
    codec = get_codec()
    rows = [extracted_columns(k, p, codec) for k, p in zip(kinds, payloads, strict=True)]
    if not rows:
        return pa.RecordBatch.from_pylist([], schema=EXTRACTED_SCHEMA)
    return pa.RecordBatch.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(zip(*rows, strict=True), EXTRACTED_SCHEMA, strict=True)],
        schema=EXTRACTED_SCHEMA,
    )


def audit_table(ledger: Sequence[Sequence[Any]], extracted: Any) -> Any:
    """The ``audit_events`` Arrow table of ``ledger`` rows (:func:`ledger_row`) and their
    :func:`derive_extracted` batch, in :data:`AUDIT_COLUMNS` order.

    Raises :class:`InsertFailed` if a value does not fit its column's type or the two
    halves differ in length.
    """
    if len(ledger) != extracted.num_rows:
        raise InsertFailed(
            f"{len(ledger)} ledger rows but {extracted.num_rows} derived rows: "
            "the derivation was run on another batch"
        )
    if not ledger:
        return AUDIT_ARROW_SCHEMA.empty_table()
    try:
        arrays = [pa.array(col, type=f.type) for col, f in zip(zip(*ledger, strict=True), _LEDGER_SCHEMA, strict=True)]
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise InsertFailed(
            f"a batch of {len(ledger)} rows does not fit the Arrow schema of audit_events: {exc}"
        ) from exc
    return pa.Table.from_arrays(arrays + list(extracted.columns), schema=AUDIT_ARROW_SCHEMA)


def rows_to_arrow(rows: Sequence[Sequence[Any]], schema: Any) -> Any:
    """A ``pyarrow.Table`` of ``rows`` (built by this module) with ``schema``.

    Column-oriented Arrow is what the writer inserts: ClickHouse reads it without the
    per-value Python encoding a row-oriented insert needs. Raises :class:`InsertFailed`
    if a value does not fit its column's type.
    """
    if not rows:
        return schema.empty_table()
    try:
        columns = list(zip(*rows, strict=True))
        return pa.Table.from_arrays(
            [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)],
            schema=schema,
        )
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise InsertFailed(
            f"a batch of {len(rows)} rows does not fit the Arrow schema of its table: {exc}; "
            "the rows did not come from sinks.rows or the schema drifted from the table"
        ) from exc


def _checkpoint_format(cp: Mapping[str, Any]) -> str:
    """``signature_format``, or its schema default for a record decoded without it."""
    value = cp.get("signature_format", "interval/v1")
    if not isinstance(value, str):
        raise _bad_field(cp, "signature_format", "str")
    return value


def checkpoint_row(cp: Mapping[str, Any], source: SourceRef) -> list[Any]:
    """Row (in :data:`CHECKPOINT_COLUMNS` order) for one decoded Checkpoint; every field kept."""
    return [
        _str(cp, "checkpoint_id"),
        _int(cp, "ledger_partition"),
        _int(cp, "first_sequence"),
        _int(cp, "last_sequence"),
        _bytes(cp, "head_hash"),
        _bytes(cp, "merkle_root"),
        _int(cp, "created_at"),
        _str(cp, "processor_id"),
        _str(cp, "key_id"),
        _bytes(cp, "signature"),
        _checkpoint_format(cp),
        source[0],
        source[1],
        source[2],
    ]
