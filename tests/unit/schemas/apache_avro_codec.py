"""Single-object encoding as the Avro spec defines it, with Apache Avro's Python package only.

No fastavro and nothing from Lockgate: the ``.avsc`` files are parsed by ``avro.schema``
(in dependency order, so ``Actor`` and ``MatchedRule`` are known before the schemas that use
them), the header is ``C3 01`` + ``Schema.fingerprint()`` (CRC-64-AVRO of avro's own Parsing
Canonical Form, little-endian), and the body is read and written by ``avro.io``. The Python
``avro`` package has no single-object (message) encoder or decoder of its own, so the few
lines of framing are here.

One workaround: avro 1.12.2's canonical form keeps a primitive that carries a logical type
as ``{"type":"long"}`` where the spec's [PRIMITIVES] rule (and Java) write ``"long"``, so
its fingerprints of our timestamp fields are wrong. ``logicalType`` is removed before
parsing; the canonical form strips it anyway, and timestamps then decode as the plain
microsecond integers Lockgate uses.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import avro.io
import avro.name
import avro.schema

__all__ = ["ApacheAvroCodec"]

MARKER = b"\xc3\x01"


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


class ApacheAvroCodec:
    """Encode and decode single-object-encoded records of the record schemas in ``schema_files``.

    ``aliases`` maps further header fingerprints to a schema's full name (the legacy ones
    docs/auditor.md lists); they are read, never written.
    """

    def __init__(self, schema_files: Sequence[Path], aliases: Mapping[bytes, str] | None = None) -> None:
        names = avro.name.Names()
        self._by_fingerprint: dict[bytes, avro.schema.RecordSchema] = {}
        self._by_name: dict[str, avro.schema.RecordSchema] = {}
        for path in schema_files:
            schema = avro.schema.make_avsc_object(_without_logical_types(json.loads(path.read_text())), names)
            if isinstance(schema, avro.schema.RecordSchema):
                self._by_fingerprint[schema.fingerprint("CRC-64-AVRO")] = schema
                self._by_name[schema.fullname] = schema
        for fingerprint, full_name in (aliases or {}).items():
            self._by_fingerprint[fingerprint] = self._by_name[full_name]

    def encode(self, full_name: str, record: dict[str, Any]) -> bytes:
        """``record`` single-object encoded with the schema ``full_name``."""
        schema = self._by_name[full_name]
        body = io.BytesIO()
        avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(body))
        return MARKER + schema.fingerprint("CRC-64-AVRO") + body.getvalue()

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """``(schema full name, record)``; ``ValueError`` if the bytes are not one such record."""
        if data[:2] != MARKER or len(data) < 10:
            raise ValueError(f"no single-object header: {data[:10].hex()}")
        schema = self._by_fingerprint.get(data[2:10])
        if schema is None:
            raise ValueError(f"no schema with fingerprint {data[2:10].hex()}")
        body = io.BytesIO(data[10:])
        record = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(body))
        if not isinstance(record, dict):
            raise ValueError(f"{schema.fullname} decoded to {type(record).__name__}")
        if body.tell() != len(data) - 10:
            raise ValueError(f"{len(data) - 10 - body.tell()} trailing bytes after the {schema.fullname} record")
        return schema.fullname, record
