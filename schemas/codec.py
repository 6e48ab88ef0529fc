"""Avro single-object encoding of every record on every topic.

Wire format (Avro specification, "Single object encoding")::

    0xC3 0x01 | CRC-64-AVRO fingerprint of the writer schema (8 bytes, little endian) | body

The fingerprint is taken over the schema's Parsing Canonical Form, so it changes only
when the schema's meaning does. A schema that uses a named type from another ``.avsc`` file
(``Actor``, ``MatchedRule``, ``Effect`` ...) is fingerprinted as a standalone schema in which
each named type is written in full at its first use, exactly as Apache Avro's
``SchemaNormalization`` does after its parser has resolved the reference; so any conforming
library (Java's ``BinaryMessageDecoder``, for one) that parses ``schemas/*.avsc`` reads our
bytes, and we read theirs.

The codec knows the current schemas and every released version under
``schemas/released/``; bytes written with a released version are resolved into the current
shape (Avro schema resolution), so consumers upgrade before producers without losing
records. Records written before the codec followed the spec carry *legacy* fingerprints
(see :data:`LEGACY_FINGERPRINTS`); they are still read, never written.

fastavro is used on the hot path (measured in ``bench/codec_bench.py``: about 10x faster
than the pure-Python ``avro`` package). Timestamps stay integers (microseconds since the
epoch, UTC) in Python: logical types are stripped before parsing, which does not change the
fingerprint because the canonical form drops them too.

Decoding never returns a partly defaulted record: truncated input raises
:class:`TruncatedRecord`, an unknown fingerprint :class:`UnknownSchema`, anything else that
does not parse (including trailing bytes) :class:`MalformedRecord`.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.errors import (
    EncodeError,
    IncompatibleSchema,
    MalformedRecord,
    OversizedRecord,
    TruncatedRecord,
    UnknownSchema,
)

__all__ = [
    "DEFAULT_MAX_RECORD_BYTES",
    "LEGACY_FINGERPRINTS",
    "MAGIC",
    "SCHEMA_NAMES",
    "Codec",
    "get_codec",
    "load_schema_json",
    "schema_exists",
]

MAGIC = b"\xc3\x01"
HEADER_LEN = 10
# The wire ceiling for any record. Proposed actions have their own, smaller limit enforced
# by the processor (LOCKGATE_MAX_RECORD_BYTES, default 1 MiB); outcomes, audit events and
# dead letters (which carry a whole raw record) may be larger.
DEFAULT_MAX_RECORD_BYTES = 8 * 1024 * 1024

# Dependency order: named types must be defined before they are referenced.
SCHEMA_NAMES: tuple[str, ...] = (
    "Actor",
    "MatchedRule",
    "ProposedAction",
    "Verdict",
    "ActionOutcome",
    "PolicySet",
    "AuditEvent",
    "DecisionRecord",
    "Checkpoint",
    "DeadLetter",
    "ReviewVote",
)
TOP_LEVEL: tuple[str, ...] = SCHEMA_NAMES[2:]

Record = dict[str, Any]


def _strip_logical(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical(v) for v in node]
    return node


def load_schema_json(name: str, released: str | None = None) -> dict[str, Any]:
    """Load one ``.avsc`` file: the current one, or ``released/<released>/<name>.avsc``."""
    base = resources.files("schemas")
    path = base / f"{name}.avsc" if released is None else base / "released" / released / f"{name}.avsc"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def schema_exists(name: str, released: str | None = None) -> bool:
    """Whether a set (current, or ``released``) has the schema ``name`` (releases predate some)."""
    base = resources.files("schemas")
    path = base / f"{name}.avsc" if released is None else base / "released" / released / f"{name}.avsc"
    return path.is_file()


def released_versions() -> list[str]:
    """Names of released schema sets, oldest first (directories under ``released/``)."""
    root = resources.files("schemas") / "released"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED_KINDS = frozenset({"record", "error", "enum", "fixed"})


def _full_name(name: str, namespace: str) -> str:
    """Avro name resolution: a dotted name is already full, else it joins the enclosing namespace."""
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _inline_named(node: Any, namespace: str, library: Mapping[str, Any], defined: set[str]) -> Any:
    """``node`` as a standalone schema: every named type in full at its first use, by full name after.

    The Parsing Canonical Form is defined over a resolved schema, where a reference to a
    type from another file *is* that type; writing it in full at its first use (and as a
    bare full name afterwards) is what Avro's ``SchemaNormalization`` emits, and what makes
    our fingerprints match every other implementation's. ``library`` holds the named types
    of the files already inlined (by full name); ``defined`` the names this schema has
    written so far. Names come out full and ``namespace`` keys go, which changes nothing the
    canonical form keeps. A name found nowhere is left for the parser to report.
    """
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return node
        full = _full_name(node, namespace)
        if full in defined or full not in library:
            return full
        return _inline_named(library[full], "", library, defined)
    if isinstance(node, list):
        return [_inline_named(branch, namespace, library, defined) for branch in node]
    kind = node["type"]
    if kind in _NAMED_KINDS:
        full = _full_name(node["name"], node.get("namespace", namespace))
        if full in defined:  # a library type re-walked after its nested types were written
            return full
        defined.add(full)
        out = {k: v for k, v in node.items() if k != "namespace"}
        out["name"] = full
        if "fields" in node:
            inner = full.rpartition(".")[0]
            out["fields"] = [{**f, "type": _inline_named(f["type"], inner, library, defined)} for f in node["fields"]]
        return out
    if kind == "array":
        return {**node, "items": _inline_named(node["items"], namespace, library, defined)}
    if kind == "map":
        return {**node, "values": _inline_named(node["values"], namespace, library, defined)}
    if kind in _PRIMITIVES:
        return node
    return {**node, "type": _inline_named(kind, namespace, library, defined)}


def _index_named(node: Any, library: dict[str, Any]) -> None:
    """Add every named type defined in a standalone schema to ``library`` (first definition wins)."""
    if isinstance(node, list):
        for branch in node:
            _index_named(branch, library)
    elif isinstance(node, dict):
        kind = node["type"]
        if kind in _NAMED_KINDS:
            library.setdefault(node["name"], node)
            for field in node.get("fields", ()):
                _index_named(field["type"], library)
        elif kind == "array":
            _index_named(node["items"], library)
        elif kind == "map":
            _index_named(node["values"], library)
        else:
            _index_named(kind, library)


def _standalone_schemas(released: str | None = None) -> dict[str, dict[str, Any]]:
    """Every schema of a set (current, or ``released``) as standalone JSON, by name.

    Named types from other files are inlined at their first use (see :func:`_inline_named`),
    so each result is a complete writer schema that any Avro library parses on its own;
    docs and logical types are kept.
    """
    library: dict[str, Any] = {}
    standalone: dict[str, dict[str, Any]] = {}
    for name in SCHEMA_NAMES:
        if not schema_exists(name, released):
            continue
        schema: dict[str, Any] = _inline_named(load_schema_json(name, released), "", library, set())
        _index_named(schema, library)
        standalone[name] = schema
    return standalone


def _parse_set(released: str | None) -> dict[str, Any]:
    """fastavro's parsed standalone schemas of a set, by name (logical types stripped)."""
    return {name: parse_schema(_strip_logical(schema)) for name, schema in _standalone_schemas(released).items()}


def _crc64_avro(parsed: Any) -> bytes:
    """CRC-64-AVRO of the Parsing Canonical Form, as the 8 little-endian bytes the wire carries.

    fastavro already returns the hex of those bytes in wire order (checked against the
    spec's test vector for ``"null"``, 7195948357588979594, in tests/unit/schemas).
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


# The fingerprints the codec wrote before it followed the spec, all with the schema set
# released as v1 (then also the current one): the canonical form was taken of each file
# parsed into one shared fastavro name space, so a type from another file stayed a bare
# name, and the already little-endian CRC-64-AVRO bytes were reversed. No other Avro library
# reads these records, but topics and ledgers keep them forever, so this codec still does;
# it never writes them. The list is closed. docs/auditor.md prints the same table, and
# tests/unit/schemas/test_codec.py recomputes it the old way.
LEGACY_FINGERPRINTS: Mapping[bytes, tuple[str, str]] = {
    bytes.fromhex(fp): ("v1", name)
    for fp, name in (
        ("a94d2f4650958ff4", "ProposedAction"),
        ("7fb1557dd45b7659", "Verdict"),
        ("c81bb4ff61b05daa", "ActionOutcome"),
        ("bbf153ef5eefffdd", "PolicySet"),
        ("7e76c420fa71536b", "AuditEvent"),
        ("84fd060e7d8e284e", "Checkpoint"),
        ("c794870587787775", "DeadLetter"),
    )
}


class _Reader(NamedTuple):
    """How to read bytes carrying one fingerprint: its schema name, writer and reader schemas."""

    name: str
    writer: Any
    reader: Any | None  # None: the writer is the current schema, no resolution needed


class Codec:
    """Encode and decode Lockgate records. Thread-safe; build once, share."""

    def __init__(self, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        self.max_record_bytes = max_record_bytes
        self._current = _parse_set(None)
        self._headers = {name: MAGIC + _crc64_avro(self._current[name]) for name in TOP_LEVEL}
        self._readers: dict[bytes, _Reader] = {}
        sets = {version: _parse_set(version) for version in released_versions()}
        for name in TOP_LEVEL:
            self._register(self.fingerprint_of(name), _Reader(name, self._current[name], None))
        for parsed in sets.values():
            for name in TOP_LEVEL:
                if name not in parsed:
                    continue
                self._register(_crc64_avro(parsed[name]), self._reader(name, parsed[name]))
        for fp, (version, name) in LEGACY_FINGERPRINTS.items():
            self._register(fp, self._reader(name, sets[version][name]))

    def _reader(self, name: str, writer: Any) -> _Reader:
        """Read ``writer``'s bytes into the current shape, resolving only when the schemas differ."""
        if _crc64_avro(writer) == self.fingerprint_of(name):
            return _Reader(name, self._current[name], None)
        return _Reader(name, writer, self._current[name])

    def _register(self, fp: bytes, reader: _Reader) -> None:
        """Map ``fp`` to ``reader`` unless already known (the newest set comes first)."""
        known = self._readers.setdefault(fp, reader)
        if known.name != reader.name:
            raise IncompatibleSchema(
                f"fingerprint {fp.hex()} names both {known.name} and {reader.name}; "
                "change one of the two schemas so records can be told apart"
            )

    def fingerprint_of(self, name: str) -> bytes:
        """The 8-byte fingerprint of the current schema ``name``."""
        return self._header(name)[2:]

    def schema(self, name: str) -> Any:
        """The parsed current schema ``name`` (for tools that need it)."""
        return self._current[name]

    def _header(self, name: str) -> bytes:
        try:
            return self._headers[name]
        except KeyError:
            raise EncodeError(f"no top-level schema named {name!r}; known: {', '.join(TOP_LEVEL)}") from None

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Encode ``record`` with the current schema ``name``; raise :class:`EncodeError` if it does not fit."""
        header = self._header(name)
        buf = io.BytesIO()
        buf.write(header)
        try:
            schemaless_writer(buf, self._current[name], record, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError, struct.error) as exc:
            raise EncodeError(f"{name} record does not fit its schema: {exc}") from exc
        data = buf.getvalue()
        if len(data) > self.max_record_bytes:
            raise OversizedRecord(len(data), self.max_record_bytes)
        return data

    def peek_schema(self, data: bytes) -> str:
        """Name of the schema the bytes claim to be written with (header only, body unchecked)."""
        return self._lookup(data)[0]

    def _lookup(self, data: bytes) -> _Reader:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MalformedRecord(f"expected bytes, got {type(data).__name__}")
        if len(data) < HEADER_LEN:
            if bytes(data[:2]) == MAGIC[: len(data[:2])]:
                raise TruncatedRecord(
                    f"{len(data)} bytes is shorter than the 10-byte single-object header"
                )
            raise MalformedRecord("not a single-object-encoded Avro record (no C3 01 marker)")
        if bytes(data[:2]) != MAGIC:
            raise MalformedRecord(
                f"not a single-object-encoded Avro record: starts with {bytes(data[:2]).hex()}, expected c301"
            )
        fp = bytes(data[2:HEADER_LEN])
        try:
            return self._readers[fp]
        except KeyError:
            raise UnknownSchema(fp) from None

    def decode(self, data: bytes, expected: str | None = None) -> tuple[str, Record]:
        """Decode bytes into ``(schema name, record)``.

        ``expected`` rejects a valid record of another type (e.g. a Verdict sent to the
        actions topic) with :class:`MalformedRecord`.
        """
        if len(data) > self.max_record_bytes:
            raise OversizedRecord(len(data), self.max_record_bytes)
        name, writer, reader = self._lookup(data)
        if expected is not None and name != expected:
            raise MalformedRecord(f"expected a {expected} record, got a {name} record")
        buf = io.BytesIO(data)
        buf.seek(HEADER_LEN)  # measured: seeking past the header beats slicing it off (14 vs 21 µs)
        try:
            record = schemaless_reader(buf, writer, reader)
        except EOFError as exc:
            raise TruncatedRecord(f"{name} record ends early: {exc or 'end of data'}") from exc
        except (ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError, OverflowError,
                MemoryError, struct.error) as exc:
            raise MalformedRecord(f"{name} record body is invalid: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # fastavro raises assorted internal errors on garbage
            raise MalformedRecord(f"{name} record body is invalid: {type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(data):
            raise MalformedRecord(f"{name} record has {len(data) - buf.tell()} trailing bytes after its end")
        if not isinstance(record, dict):
            raise MalformedRecord(f"{name} record decoded to {type(record).__name__}, not a record")
        return name, record

    def decode_as(self, name: str, data: bytes) -> Record:
        """Decode bytes that must be a ``name`` record."""
        return self.decode(data, expected=name)[1]

    def known_fingerprints(self) -> Iterator[tuple[bytes, str]]:
        """Every fingerprint this codec reads (standard and legacy) with its schema name."""
        for fp, reader in self._readers.items():
            yield fp, reader.name


@cache
def get_codec(max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Codec:
    """Shared codec per size limit (parsing the schemas once per process)."""
    return Codec(max_record_bytes)
