"""Field-for-field identity of stored records, and their values in a finding.

Two copies of a record are *the same record* only when every field of its schema is equal
(bytes compared as bytes, whatever buffer type a reader returned). The checkpoint pass
(:mod:`trust.verify.checkpoints`) and the store-against-topics comparison
(:mod:`trust.verify.copies`) both collapse copies by this identity and name the fields
where two copies differ.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

__all__ = ["differing_fields", "field_identity", "json_value", "plain_bytes"]


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, bytearray | memoryview) else value


def plain_bytes(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` whose buffer values (bytearray, memoryview) are ``bytes``."""
    return {k: _plain(v) for k, v in record.items()}


def field_identity(record: Mapping[str, Any], fields: tuple[str, ...]) -> tuple[Any, ...]:
    """The record's values of ``fields``, in order (absent fields are ``None``)."""
    return tuple(_plain(record.get(f)) for f in fields)


def differing_fields(a: Mapping[str, Any], b: Mapping[str, Any], fields: tuple[str, ...]) -> list[str]:
    """The names of ``fields`` whose values differ between ``a`` and ``b``, in order."""
    return [f for f in fields if _plain(a.get(f)) != _plain(b.get(f))]


def json_value(value: Any) -> Any:
    """``value`` as a finding carries it: bytes as hex (base64 beyond 64 bytes), else as is."""
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return raw.hex() if len(raw) <= 64 else {"$b64": base64.b64encode(raw).decode("ascii")}
    return value
