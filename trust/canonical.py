"""Canonical bytes of a record, for signatures and the ledger hash chain.

Version 1 (``CANONICAL_VERSION``), the encoding an auditor re-implements:

* the record is the decoded Avro record (field names as in the ``.avsc`` files);
* JSON with object keys sorted by code point, no whitespace (``,`` and ``:``),
  non-ASCII characters written as UTF-8, not escaped;
* ``bytes`` values become ``{"$b64": "<standard base64>"}`` (strings can never be objects,
  so this is unambiguous); integers as decimal; floats as Python's shortest repr;
  ``null``/``true``/``false`` as in JSON;
* the result is encoded as UTF-8.

Signatures cover the canonical bytes of the record with its signature field cleared
(set to ``b""`` or ``None``, as the schema's docstring says) — see :func:`signing_payload`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["CANONICAL_VERSION", "canonical_bytes", "signing_payload"]

CANONICAL_VERSION = 1


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b64": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"value of type {type(value).__name__} has no canonical form")


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """Canonical encoding (version 1) of ``record``."""
    return json.dumps(
        record,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_default,
    ).encode("utf-8")


def signing_payload(record: Mapping[str, Any], signature_field: str, cleared: Any) -> bytes:
    """Canonical bytes of ``record`` with ``signature_field`` replaced by ``cleared``."""
    body = dict(record)
    body[signature_field] = cleared
    return canonical_bytes(body)
