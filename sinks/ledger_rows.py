"""The one ledger SELECT and the one row converter, shared by the store source and the API.

The API serves ledger rows as JSON (``payload_b64``, ``*_hex``, ``*_us``); the store source
reads the same columns with the same SELECT, and both turn a row back into an AuditEvent or
Checkpoint dict with :func:`event_from_row` / :func:`checkpoint_from_row`, so what ``verify``
checks through the API and through the store cannot drift apart.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

__all__ = ["CHECKPOINT_SELECT", "EVENT_SELECT", "checkpoint_from_row", "event_from_row"]

EVENT_SELECT = (
    "event_id, kind, toUnixTimestamp64Micro(recorded_at) AS recorded_at_us, tenant, action_id, "
    "base64Encode(payload) AS payload_b64, detail, ledger_partition, sequence, "
    "hex(prev_hash) AS prev_hash_hex, hex(hash) AS hash_hex, canonical_version"
)
"""The AuditEvent columns of ``audit_events`` in their JSON-safe form."""

CHECKPOINT_SELECT = (
    "checkpoint_id, ledger_partition, first_sequence, last_sequence, "
    "hex(head_hash) AS head_hash_hex, hex(merkle_root) AS merkle_root_hex, "
    "toUnixTimestamp64Micro(created_at) AS created_at_us, processor_id, key_id, "
    "hex(signature) AS signature_hex, signature_format"
)
"""The Checkpoint columns of ``checkpoints`` in their JSON-safe form."""


def event_from_row(r: Mapping[str, Any]) -> dict[str, Any]:
    """An AuditEvent dict (bytes and ints restored) from one :data:`EVENT_SELECT` row."""
    return {
        "event_id": r["event_id"], "kind": r["kind"], "recorded_at": int(r["recorded_at_us"]),
        "tenant": r["tenant"], "action_id": r["action_id"],
        "payload": base64.b64decode(r["payload_b64"]), "detail": r["detail"],
        "ledger_partition": int(r["ledger_partition"]), "sequence": int(r["sequence"]),
        "prev_hash": bytes.fromhex(r["prev_hash_hex"]), "hash": bytes.fromhex(r["hash_hex"]),
        "canonical_version": int(r["canonical_version"]),
    }


def checkpoint_from_row(c: Mapping[str, Any]) -> dict[str, Any]:
    """A Checkpoint dict (bytes and ints restored) from one :data:`CHECKPOINT_SELECT` row."""
    return {
        "checkpoint_id": c["checkpoint_id"], "ledger_partition": int(c["ledger_partition"]),
        "first_sequence": int(c["first_sequence"]), "last_sequence": int(c["last_sequence"]),
        "head_hash": bytes.fromhex(c["head_hash_hex"]),
        "merkle_root": bytes.fromhex(c["merkle_root_hex"]),
        "created_at": int(c["created_at_us"]), "processor_id": c["processor_id"],
        "key_id": c["key_id"], "signature": bytes.fromhex(c["signature_hex"]),
        # an older sink's API has no such column: its rows are all interval checkpoints
        "signature_format": c.get("signature_format", "interval/v1"),
    }
