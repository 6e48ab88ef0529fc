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
A record that has a ``signed_schema`` field (ProposedAction, Verdict and ActionOutcome
since schema set v2) says which fields that is: those of release ``signed_schema`` — for 1,
the fields it had in release v1, without ``schemas.records.FIELDS_ADDED_IN_V2``; for 2,
all of today's fields (a later release's additions will be left out the same way). See
:func:`signed_fields`; the binding hashes of ``trust.bindings`` use the same fields. That is how a
record written and signed before v2, read today with the v2 schema's defaults filled in,
still verifies; and since the signer of a v2 record signed ``signed_schema = 2``, flipping it
to 1 to drop a binding breaks the signature.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from schemas.records import FIELDS_ADDED_AFTER

__all__ = ["CANONICAL_VERSION", "canonical_bytes", "signed_fields", "signing_payload"]

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
    body = signed_fields(record)
    body[signature_field] = cleared
    return canonical_bytes(body)


def signed_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` with only the fields of the release its ``signed_schema`` names.

    A record without ``signed_schema`` is kept whole. An unknown release number keeps the
    record whole too, which no honest signer produced, so its signature fails.
    """
    body = dict(record)
    release = body.get("signed_schema")
    later = FIELDS_ADDED_AFTER.get(release) if isinstance(release, int) else None
    if later:
        body = {k: v for k, v in body.items() if k not in later}
    return body
