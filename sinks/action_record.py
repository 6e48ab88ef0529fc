"""One action as a person reads it, rendered from its chained payloads, with what was checked.

Why: lists (``/api/actions``, ``lockgate audit query``) read the summary table for speed;
the single-action view — API ``/api/actions/{id}``, the dashboard's detail pane,
``lockgate audit show`` — is where someone decides what happened, so it believes no
derived column. It decodes the action's chained events and renders from them with the
derivation and fold the sink and ``verify`` use (:func:`sinks.rows.extracted_columns`,
:mod:`sinks.summary`), then says what it checked (``integrity``):

* ``chain``: every event's hash recomputed from its fields (``hash_ok``), its ``prev_hash``
  equal to the stored hash of the record before it and its hash committed to by the
  record after it (``link_ok``; ``None`` when the neighbour is not stored);
* ``checkpoint``: each event is covered by a checkpoint whose Ed25519 signature verifies
  with the processor key and whose Merkle root the stored interval reproduces
  (``covered``); ``pending`` while no checkpoint covers it yet; ``invalid`` when covering
  checkpoints exist but none verifies; ``unchecked`` without a processor key;
* ``views``: the stored derived columns of each event and the action's rows in
  ``action_summary`` against what the payloads yield (:func:`sinks.view_check.check_views`),
  each mismatch listed with table, column, stored and ledger value.

``integrity.ok`` is true when nothing checked disagrees (pending checkpoints do not fail it).

Least privilege: a tenant-scoped reader gets only its tenant's events and booleans about
neighbouring records and checkpoints, never another tenant's rows, hashes or checkpoint
ids (checkpoints cover every tenant: :mod:`sinks.api`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from schemas.codec import get_codec
from schemas.errors import CodecError
from sinks.clickhouse import ClickHouse, validate_identifier
from sinks.ledger_rows import CHECKPOINT_SELECT, EVENT_SELECT, checkpoint_from_row, event_from_row
from sinks.rows import KIND_SCHEMA
from sinks.summary import SUMMARY_NAMES, fold, is_summarized, partial_row
from sinks.view_check import (
    EVENT_COLUMNS_SELECT,
    SUMMARY_FOLD_SELECT,
    check_views,
    derived_columns,
    display_value,
    stored_columns,
)
from trust.chain import GENESIS, ChainError, event_hash
from trust.checkpoints import verify_checkpoint
from trust.errors import ProofError
from trust.keys import Keyring, PublicKey
from trust.proofs import build_proof

__all__ = ["KeyringLoader", "action_record", "keyring_from_file"]

KeyringLoader = Callable[[], Keyring | None]
"""Returns the processor keyring, or ``None`` when no key is available (checkpoints unchecked)."""

_FLAGS = ("has_action", "has_verdict", "has_outcome")


def keyring_from_file(path: Path) -> KeyringLoader:
    """A loader for the processor public key at ``path``, re-read when the file changes."""
    cache: dict[str, Any] = {}

    def load() -> Keyring | None:
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return None
        if cache.get("stamp") != stamp:
            cache["stamp"], cache["ring"] = stamp, Keyring([PublicKey.load(path)])
        ring: Keyring = cache["ring"]
        return ring

    return load


def _json_safe(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _decoded(kind: str, payload: bytes) -> Any:
    schema = KIND_SCHEMA.get(kind)
    if schema is None:
        return None
    try:
        return _json_safe(get_codec().decode_as(schema, payload))
    except CodecError:
        return None


class _Reader:
    """The few reads the record needs, every value a query parameter."""

    def __init__(self, client: ClickHouse) -> None:
        self.client = client
        self.db = validate_identifier(client.database)

    def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        names, rows = self.client.query(sql, params)
        return [dict(zip(names, r, strict=True)) for r in rows]

    @staticmethod
    def _scope(tenant: str | None, action_id: str) -> tuple[str, dict[str, Any]]:
        if tenant is None:
            return "action_id = {id:String}", {"id": action_id}
        return "tenant = {tenant:String} AND action_id = {id:String}", {"id": action_id, "tenant": tenant}

    def events(self, tenant: str | None, action_id: str) -> list[dict[str, Any]]:
        where, params = self._scope(tenant, action_id)
        return self.rows(
            f"SELECT {EVENT_SELECT}, {EVENT_COLUMNS_SELECT} FROM {self.db}.audit_events "
            f"WHERE {where} ORDER BY recorded_at, ledger_partition, sequence",
            params,
        )

    def summary(self, tenant: str | None, action_id: str) -> list[dict[str, Any]]:
        where, params = self._scope(tenant, action_id)
        return self.rows(
            f"SELECT {SUMMARY_FOLD_SELECT} FROM {self.db}.action_summary "
            f"WHERE {where} GROUP BY tenant, day, action_id",
            params,
        )

    def links(self, partition: int, sequences: list[int]) -> list[tuple[int, bytes, bytes]]:
        """(sequence, prev_hash, hash) of every stored row at ``sequences`` (any tenant: only
        booleans derived from them leave this module)."""
        rows = self.rows(
            f"SELECT sequence, hex(prev_hash) AS prev_hex, hex(hash) AS hash_hex FROM {self.db}.audit_events "
            "WHERE ledger_partition = {p:Int32} AND sequence IN {s:Array(Int64)}",
            {"p": partition, "s": sequences},
        )
        return [(int(r["sequence"]), bytes.fromhex(r["prev_hex"]), bytes.fromhex(r["hash_hex"]))
                for r in rows]

    def covering(self, partition: int, lo: int, hi: int) -> list[dict[str, Any]]:
        return [checkpoint_from_row(r) for r in self.rows(
            f"SELECT {CHECKPOINT_SELECT} FROM {self.db}.checkpoints WHERE ledger_partition = {{p:Int32}} "
            "AND first_sequence <= {hi:Int64} AND last_sequence >= {lo:Int64} "
            "ORDER BY last_sequence - first_sequence, checkpoint_id",
            {"p": partition, "lo": lo, "hi": hi},
        )]

    def interval(self, partition: int, first: int, last: int) -> list[dict[str, Any]]:
        return [{"ledger_partition": partition, "sequence": int(r["sequence"]),
                 "hash": bytes.fromhex(r["hash_hex"])} for r in self.rows(
            f"SELECT sequence, hex(hash) AS hash_hex FROM {self.db}.audit_events "
            "WHERE ledger_partition = {p:Int32} AND sequence >= {a:Int64} AND sequence <= {b:Int64}",
            {"p": partition, "a": first, "b": last},
        )]


def _hash_ok(event: Mapping[str, Any]) -> bool:
    try:
        return bool(event_hash(event) == event["hash"])
    except (ChainError, KeyError, TypeError, ValueError):
        return False


def _link_ok(event: Mapping[str, Any], neighbours: list[tuple[int, bytes, bytes]]) -> bool | None:
    seq, prev, own = event["sequence"], event["prev_hash"], event["hash"]
    before = [h for s, _, h in neighbours if s == seq - 1]
    after = [p for s, p, _ in neighbours if s == seq + 1]
    if seq == 0:
        back: bool | None = prev == GENESIS
    else:
        back = (prev in before) if before else None
    forward = (own in after) if after else True  # the head of its partition: nothing follows yet
    if back is False or not forward:
        return False
    return back


def _checkpoint_state(
    event: Mapping[str, Any], reader: _Reader, keyring: Keyring | None,
    cache: dict[str, list[dict[str, Any]]], shared: bool,
) -> dict[str, Any]:
    if keyring is None:
        return {"state": "unchecked", "reason": "no processor public key to check signatures with"}
    part, seq = event["ledger_partition"], event["sequence"]
    cps = reader.covering(part, seq, seq)
    if not cps:
        return {"state": "pending", "reason": "no checkpoint covers this record yet"}
    reasons = []
    for cp in cps:
        if not verify_checkpoint(cp, keyring):
            reasons.append("a covering checkpoint's signature does not verify")
            continue
        key = str(cp["checkpoint_id"])
        if key not in cache:
            cache[key] = reader.interval(part, cp["first_sequence"], cp["last_sequence"])
        try:
            build_proof(event, cache[key], cp)
        except ProofError as exc:
            reasons.append(str(exc))
            continue
        out = {"state": "covered", "reason": "signature valid; the stored interval reproduces its Merkle root"}
        if shared:
            out["checkpoint_id"] = key
        return out
    return {"state": "invalid", "reason": "; ".join(dict.fromkeys(reasons))}


def action_record(
    client: ClickHouse,
    tenant: str | None,
    action_id: str,
    keyring: Keyring | None,
    *,
    shared: bool,
) -> dict[str, Any] | None:
    """The action rendered from its chained payloads, with ``integrity`` (module docstring).

    ``tenant=None`` reads every tenant; ``shared`` (all-tenant readers only) adds the ids of
    the checkpoints that cover each event. ``None`` if no event of the action is visible.
    """
    reader = _Reader(client)
    rows = reader.events(tenant, action_id)
    if not rows:
        return None
    codec = get_codec()
    events = []
    for r in rows:
        ev = event_from_row(r)
        ev["_columns"] = stored_columns(r)
        events.append((r, ev))
    views = check_views([ev for _, ev in events], reader.summary(tenant, action_id), codec=codec)

    partials = []
    for _, ev in events:
        columns = derived_columns(ev["kind"], ev["payload"], codec)
        if is_summarized(ev["kind"], ev["action_id"], columns):
            partials.append(partial_row(ev["kind"], columns))
    # No summarized event (only, say, a security event): every column empty, no flag set.
    values = fold(partials) if partials else partial_row("action", derived_columns("", b"", codec))
    record: dict[str, Any] = {"tenant": events[0][1]["tenant"], "action_id": action_id}
    record.update((n, display_value(n, v)) for n, v in zip(SUMMARY_NAMES, values, strict=True))
    for flag in _FLAGS:
        record[flag] = bool(partials) and bool(record[flag])

    by_part: dict[int, set[int]] = {}
    for _, ev in events:
        by_part.setdefault(ev["ledger_partition"], set()).update(
            (ev["sequence"] - 1, ev["sequence"] + 1))
    neighbours = {p: reader.links(p, sorted(s for s in seqs if s >= 0)) for p, seqs in by_part.items()}
    interval_cache: dict[str, list[dict[str, Any]]] = {}
    out_events = []
    chain_ok = True
    states: list[str] = []
    for row, ev in events:
        hash_ok = _hash_ok(ev)
        link_ok = _link_ok(ev, neighbours[ev["ledger_partition"]])
        cp = _checkpoint_state(ev, reader, keyring, interval_cache, shared)
        chain_ok = chain_ok and hash_ok and link_ok is not False
        states.append(cp["state"])
        derived = dict(zip(("payload_schema", "decode_error"),
                           derived_columns(ev["kind"], ev["payload"], codec)[:2], strict=True))
        out_events.append({
            **{k: v for k, v in row.items() if not k.startswith("v_")},
            **derived,
            "payload": _decoded(ev["kind"], ev["payload"]),
            "check": {"hash_ok": hash_ok, "link_ok": link_ok, "checkpoint": cp,
                      "stored_matches": not any(
                          f.table == "audit_events" and f.event_id == ev["event_id"]
                          and (f.partition, f.sequence) == (ev["ledger_partition"], ev["sequence"])
                          for f in views.findings)},
        })
    mismatches = [{"table": f.table, "column": f.column, "kind": str(f.kind),
                   "sequence": f.sequence if f.table == "audit_events" else None,
                   "stored": f.stored, "ledger": f.ledger, "message": f.message} for f in views.findings]
    checkpoint_ok = None if "unchecked" in states else "invalid" not in states
    record["rendered_from"] = "payload"
    record["events"] = out_events
    record["integrity"] = {
        "chain": {"ok": chain_ok, "hashes_recomputed": len(out_events),
                  "links_ok": all(e["check"]["link_ok"] is not False for e in out_events)},
        "checkpoint": {"ok": checkpoint_ok, "covered": states.count("covered"),
                       "pending": states.count("pending"), "invalid": states.count("invalid")},
        "views": {"ok": not mismatches, "mismatches": mismatches},
        "ok": chain_ok and checkpoint_ok is not False and not mismatches,
    }
    return record
