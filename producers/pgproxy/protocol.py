"""PostgreSQL frontend/backend protocol 3: framing, and the messages the proxy reads or writes.

The proxy forwards the client's bytes unchanged wherever it can; it decodes only what it
must judge (Query, Parse, Bind, Execute), what tells it how a statement ended
(CommandComplete, ErrorResponse, ReadyForQuery) and what it captures (RowDescription,
DataRow). Everything here is pure: bytes in, values out, and back.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from producers.pgproxy.errors import ProtocolViolation

__all__ = [
    "CANCEL_REQUEST",
    "FLUSH",
    "GSSENC_REQUEST",
    "SSL_REQUEST",
    "SYNC",
    "Bind",
    "Message",
    "bind_message",
    "close_message",
    "command_tag_rows",
    "cstring",
    "data_row_values",
    "describe_message",
    "error_fields",
    "error_response",
    "execute_message",
    "parse_bind",
    "parse_execute",
    "parse_message",
    "parse_parse",
    "read_message",
    "read_startup",
    "ready_for_query",
    "row_description_names",
    "startup_parameters",
]

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
#: PostgreSQL refuses messages over 1 GiB; so does the proxy.
MAX_MESSAGE_BYTES = 0x3FFFFFFF
#: libpq's limit for the startup packet.
MAX_STARTUP_BYTES = 10_000

_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I16 = struct.Struct(">h")


@dataclass(frozen=True, slots=True)
class Message:
    """A typed protocol message: one type byte and its body (the length is implied)."""

    type: bytes
    body: bytes = b""

    def encode(self) -> bytes:
        return self.type + _U32.pack(len(self.body) + 4) + self.body


SYNC = Message(b"S").encode()
FLUSH = Message(b"H").encode()


async def read_message(reader: asyncio.StreamReader) -> Message:
    """Read one typed message; raise :class:`asyncio.IncompleteReadError` at EOF."""
    head = await reader.readexactly(5)
    (length,) = _U32.unpack_from(head, 1)
    if length < 4 or length > MAX_MESSAGE_BYTES:
        raise ProtocolViolation(f"message {head[:1]!r} announces an invalid length {length}")
    return Message(head[:1], await reader.readexactly(length - 4))


async def read_startup(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read the untyped first message of a connection; return (request code, whole packet)."""
    head = await reader.readexactly(4)
    (length,) = _U32.unpack(head)
    if length < 8 or length > MAX_STARTUP_BYTES:
        raise ProtocolViolation(f"startup packet announces an invalid length {length}")
    body = await reader.readexactly(length - 4)
    (code,) = _U32.unpack_from(body, 0)
    return code, head + body


def startup_parameters(packet: bytes) -> dict[str, str]:
    """The name/value pairs of a StartupMessage (``user``, ``database``, ``application_name``...)."""
    params: dict[str, str] = {}
    pos = 8
    while pos < len(packet) and packet[pos] != 0:
        key, pos = cstring(packet, pos)
        value, pos = cstring(packet, pos)
        params[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return params


def cstring(body: bytes, pos: int) -> tuple[bytes, int]:
    """The NUL-terminated string at ``pos`` and the position after its terminator."""
    end = body.find(b"\x00", pos)
    if end < 0:
        raise ProtocolViolation("a string in a message is not NUL-terminated")
    return body[pos:end], end + 1


def _cstr(value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    if b"\x00" in raw:
        raise ProtocolViolation("a protocol string may not contain NUL")
    return raw + b"\x00"


# --- messages the proxy writes -------------------------------------------------------------


def error_response(code: str, message: str, *, detail: str | None = None, hint: str | None = None,
                   severity: str = "ERROR") -> Message:
    """An ErrorResponse with SQLSTATE ``code`` (``severity`` ERROR keeps the session; FATAL ends it)."""
    fields = [(b"S", severity), (b"V", severity), (b"C", code), (b"M", message)]
    if detail:
        fields.append((b"D", detail))
    if hint:
        fields.append((b"H", hint))
    body = b"".join(tag + _cstr(value.replace("\x00", "")) for tag, value in fields) + b"\x00"
    return Message(b"E", body)


def ready_for_query(status: bytes) -> Message:
    return Message(b"Z", status)


def parse_message(name: bytes, query: bytes, param_types: tuple[int, ...] = ()) -> bytes:
    body = _cstr(name) + _cstr(query) + _I16.pack(len(param_types))
    body += b"".join(_U32.pack(oid) for oid in param_types)
    return Message(b"P", body).encode()


def bind_message(portal: bytes, statement: bytes, param_formats: tuple[int, ...] = (),
                 values: tuple[bytes | None, ...] = (), result_formats: tuple[int, ...] = ()) -> bytes:
    body = _cstr(portal) + _cstr(statement)
    body += _I16.pack(len(param_formats)) + b"".join(_I16.pack(f) for f in param_formats)
    body += _I16.pack(len(values))
    for value in values:
        body += _I32.pack(-1) if value is None else _I32.pack(len(value)) + value
    body += _I16.pack(len(result_formats)) + b"".join(_I16.pack(f) for f in result_formats)
    return Message(b"B", body).encode()


def describe_message(kind: bytes, name: bytes) -> bytes:
    return Message(b"D", kind + _cstr(name)).encode()


def execute_message(portal: bytes, max_rows: int = 0) -> bytes:
    return Message(b"E", _cstr(portal) + _I32.pack(max_rows)).encode()


def close_message(kind: bytes, name: bytes) -> bytes:
    return Message(b"C", kind + _cstr(name)).encode()


# --- messages the proxy reads --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bind:
    """A decoded Bind: which portal, from which statement, with which parameters."""

    portal: bytes
    statement: bytes
    param_formats: tuple[int, ...]
    values: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]


def parse_parse(body: bytes) -> tuple[bytes, bytes, tuple[int, ...]]:
    """Parse message → (statement name, query text bytes, declared parameter type oids)."""
    name, pos = cstring(body, 0)
    query, pos = cstring(body, pos)
    (count,) = _I16.unpack_from(body, pos)
    oids = tuple(_U32.unpack_from(body, pos + 2 + 4 * i)[0] for i in range(count))
    return name, query, oids


def parse_bind(body: bytes) -> Bind:
    portal, pos = cstring(body, 0)
    statement, pos = cstring(body, pos)
    (nfmt,) = _I16.unpack_from(body, pos)
    pos += 2
    formats = tuple(_I16.unpack_from(body, pos + 2 * i)[0] for i in range(nfmt))
    pos += 2 * nfmt
    (nvalues,) = _I16.unpack_from(body, pos)
    pos += 2
    values: list[bytes | None] = []
    for _ in range(nvalues):
        (size,) = _I32.unpack_from(body, pos)
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(body[pos:pos + size])
            pos += size
    (nres,) = _I16.unpack_from(body, pos)
    pos += 2
    results = tuple(_I16.unpack_from(body, pos + 2 * i)[0] for i in range(nres))
    return Bind(portal, statement, formats, tuple(values), results)


def parse_execute(body: bytes) -> tuple[bytes, int]:
    portal, pos = cstring(body, 0)
    (max_rows,) = _I32.unpack_from(body, pos)
    return portal, max_rows


def error_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse/NoticeResponse fields by their one-letter code (C = SQLSTATE, M = message)."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(body) and body[pos] != 0:
        code = chr(body[pos])
        value, pos = cstring(body, pos + 1)
        fields[code] = value.decode("utf-8", "replace")
    return fields


def command_tag_rows(tag: str) -> int | None:
    """Rows a CommandComplete tag reports (``UPDATE 3`` → 3, ``INSERT 0 5`` → 5), else None."""
    parts = tag.split()
    if len(parts) >= 2 and parts[-1].isdigit() and parts[0] in {
        "INSERT", "UPDATE", "DELETE", "SELECT", "MERGE", "MOVE", "FETCH", "COPY",
    }:
        return int(parts[-1])
    return None


def row_description_names(body: bytes) -> list[str]:
    (count,) = _I16.unpack_from(body, 0)
    pos = 2
    names: list[str] = []
    for _ in range(count):
        name, pos = cstring(body, pos)
        names.append(name.decode("utf-8", "replace"))
        pos += 18  # table oid, column number, type oid, type size, type modifier, format
    return names


def data_row_values(body: bytes) -> list[bytes | None]:
    (count,) = _I16.unpack_from(body, 0)
    pos = 2
    values: list[bytes | None] = []
    for _ in range(count):
        (size,) = _I32.unpack_from(body, pos)
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(body[pos:pos + size])
            pos += size
    return values
