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
* Timestamps are int microseconds (as the codec yields them); they are inserted as such
  into ``DateTime64(6, 'UTC')`` columns. Absent times are 0 (the epoch).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from schemas.codec import Codec, get_codec
from schemas.errors import CodecError
from sinks.errors import SinkError

__all__ = [
    "AUDIT_COLUMNS",
    "CHECKPOINT_COLUMNS",
    "KIND_SCHEMA",
    "RowError",
    "SourceRef",
    "audit_event_row",
    "checkpoint_row",
]

#: The schema a kind's payload is encoded with (kinds absent here keep raw bytes only).
KIND_SCHEMA: dict[str, str] = {
    "action": "ProposedAction",
    "verdict": "Verdict",
    "outcome": "ActionOutcome",
    "policy": "PolicySet",
}

LEDGER_COLUMNS: tuple[str, ...] = (
    "event_id", "kind", "recorded_at", "tenant", "action_id", "payload", "detail",
    "ledger_partition", "sequence", "prev_hash", "hash", "canonical_version",
)
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
    "merkle_root", "created_at", "processor_id", "key_id", "signature", *SOURCE_COLUMNS,
)

SourceRef = tuple[str, int, int]
"""(topic, partition, offset) of the Kafka record a row came from."""

_ZERO_COLUMNS = ("policy_version", "proposed_at", "decided_at", "outcome_at", "eval_latency_us")
_EXTRACTED_INDEX = {name: i for i, name in enumerate(EXTRACTED_COLUMNS)}
_EMPTY_EXTRACTED: tuple[Any, ...] = tuple(
    [] if name in ("actor_roles", "rule_ids", "rule_effects", "rule_modes", "rule_errors")
    else {} if name == "attributes"
    else 0 if name in _ZERO_COLUMNS
    else ""
    for name in EXTRACTED_COLUMNS
)


class RowError(SinkError):
    """The record is not a well-formed AuditEvent/Checkpoint; dead-letter it."""


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _attr(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _extract(kind: str, rec: Mapping[str, Any], out: list[Any]) -> None:
    ix = _EXTRACTED_INDEX
    if kind == "action":
        actor = rec.get("actor") or {}
        attrs = rec.get("attributes") or {}
        out[ix["correlation_id"]] = _s(rec.get("correlation_id"))
        out[ix["actor_id"]] = _s(actor.get("id"))
        out[ix["actor_roles"]] = [str(r) for r in actor.get("roles") or []]
        out[ix["service"]] = _s(rec.get("service"))
        out[ix["type"]] = _s(rec.get("type"))
        out[ix["resource"]] = _s(rec.get("resource"))
        out[ix["attributes"]] = {str(k): _attr(v) for k, v in attrs.items()}
        sql = attrs.get("sql")
        out[ix["sql"]] = sql if isinstance(sql, str) else ""
        out[ix["change_json"]] = _s(rec.get("change_json"))
        out[ix["proposed_at"]] = int(rec.get("proposed_at") or 0)
        out[ix["key_id"]] = _s(rec.get("service_key_id"))
    elif kind == "verdict":
        rules = rec.get("matched_rules") or []
        out[ix["correlation_id"]] = _s(rec.get("correlation_id"))
        out[ix["service"]] = _s(rec.get("service"))
        out[ix["decision"]] = _s(rec.get("decision"))
        out[ix["basis"]] = _s(rec.get("basis"))
        out[ix["rule_ids"]] = [_s(r.get("id")) for r in rules]
        out[ix["rule_effects"]] = [_s(r.get("effect")) for r in rules]
        out[ix["rule_modes"]] = [_s(r.get("mode")) for r in rules]
        out[ix["rule_errors"]] = [_s(r.get("error")) for r in rules]
        out[ix["policy_name"]] = _s(rec.get("policy_name"))
        out[ix["policy_version"]] = int(rec.get("policy_version") or 0)
        out[ix["reason"]] = _s(rec.get("reason"))
        out[ix["decided_at"]] = int(rec.get("decided_at") or 0)
        out[ix["eval_latency_us"]] = int(rec.get("eval_latency_us") or 0)
        out[ix["processor_id"]] = _s(rec.get("processor_id"))
        out[ix["key_id"]] = _s(rec.get("key_id"))
    elif kind == "outcome":
        out[ix["correlation_id"]] = _s(rec.get("correlation_id"))
        out[ix["actor_id"]] = _s(rec.get("actor_id"))
        out[ix["service"]] = _s(rec.get("service"))
        out[ix["outcome_status"]] = _s(rec.get("status"))
        out[ix["error_type"]] = _s(rec.get("error_type"))
        out[ix["error_message"]] = _s(rec.get("error_message"))
        out[ix["before_json"]] = _s(rec.get("before_json"))
        out[ix["after_json"]] = _s(rec.get("after_json"))
        out[ix["outcome_at"]] = int(rec.get("recorded_at") or 0)
        out[ix["key_id"]] = _s(rec.get("service_key_id"))
    elif kind == "policy":
        rules = rec.get("rules") or []
        out[ix["actor_id"]] = _s(rec.get("published_by"))
        out[ix["policy_name"]] = _s(rec.get("name"))
        out[ix["policy_version"]] = int(rec.get("version") or 0)
        out[ix["rule_ids"]] = [_s(r.get("id")) for r in rules]
        out[ix["rule_effects"]] = [_s(r.get("effect")) for r in rules]
        out[ix["rule_modes"]] = [_s(r.get("mode")) for r in rules]
        out[ix["decision"]] = _s(rec.get("default"))
        out[ix["change_json"]] = json.dumps(
            {"source_sha256": rec.get("source_sha256"), "on_error": rec.get("on_error")},
            sort_keys=True,
        )


def _require(event: Mapping[str, Any], name: str, types: type | tuple[type, ...]) -> Any:
    value = event.get(name)
    if not isinstance(value, types) or isinstance(value, bool):
        raise RowError(
            f"AuditEvent field {name!r} is {type(value).__name__}, expected "
            f"{getattr(types, '__name__', types)}; the record is not a valid AuditEvent"
        )
    return value


def audit_event_row(
    event: Mapping[str, Any], source: SourceRef, codec: Codec | None = None
) -> list[Any]:
    """Row (in :data:`AUDIT_COLUMNS` order) for one decoded AuditEvent.

    Raises :class:`RowError` only if ``event`` lacks its ledger fields; a payload that does
    not decode yields a row with empty extracted columns and ``decode_error`` set.
    """
    kind = _require(event, "kind", str)
    payload = bytes(_require(event, "payload", (bytes, bytearray, memoryview)))
    ledger = [
        _require(event, "event_id", str),
        kind,
        _require(event, "recorded_at", int),
        _require(event, "tenant", str),
        event.get("action_id"),
        payload,
        event.get("detail"),
        _require(event, "ledger_partition", int),
        _require(event, "sequence", int),
        bytes(_require(event, "prev_hash", (bytes, bytearray, memoryview))),
        bytes(_require(event, "hash", (bytes, bytearray, memoryview))),
        int(event.get("canonical_version", 1)),
    ]
    extracted = list(_EMPTY_EXTRACTED)
    expected = KIND_SCHEMA.get(kind)
    if expected is not None:
        try:
            rec = (codec or get_codec()).decode_as(expected, payload)
            extracted[_EXTRACTED_INDEX["payload_schema"]] = expected
            _extract(kind, rec, extracted)
        except CodecError as exc:
            extracted = list(_EMPTY_EXTRACTED)
            extracted[_EXTRACTED_INDEX["decode_error"]] = f"{type(exc).__name__}: {exc}"
        except (AttributeError, TypeError, ValueError) as exc:
            extracted = list(_EMPTY_EXTRACTED)
            extracted[_EXTRACTED_INDEX["decode_error"]] = (
                f"{expected} payload has an unexpected shape: {type(exc).__name__}: {exc}"
            )
    return [*ledger, source[0], source[1], source[2], *extracted]


def checkpoint_row(cp: Mapping[str, Any], source: SourceRef) -> list[Any]:
    """Row (in :data:`CHECKPOINT_COLUMNS` order) for one decoded Checkpoint; every field kept."""
    return [
        _require(cp, "checkpoint_id", str),
        _require(cp, "ledger_partition", int),
        _require(cp, "first_sequence", int),
        _require(cp, "last_sequence", int),
        bytes(_require(cp, "head_hash", (bytes, bytearray, memoryview))),
        bytes(_require(cp, "merkle_root", (bytes, bytearray, memoryview))),
        _require(cp, "created_at", int),
        _require(cp, "processor_id", str),
        _require(cp, "key_id", str),
        bytes(_require(cp, "signature", (bytes, bytearray, memoryview))),
        source[0],
        source[1],
        source[2],
    ]
