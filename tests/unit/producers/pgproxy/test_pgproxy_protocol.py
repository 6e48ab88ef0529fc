"""Wire format round trips for the messages the proxy reads and writes."""

from __future__ import annotations

import asyncio

from producers.pgproxy.protocol import (
    Message,
    bind_message,
    command_tag_rows,
    error_fields,
    error_response,
    parse_bind,
    parse_message,
    parse_parse,
    read_message,
    startup_parameters,
)


def test_parse_and_bind_round_trip() -> None:
    raw = parse_message(b"s1", b"SELECT $1, $2", (23, 0))
    msg = asyncio.run(_read(raw))
    assert msg.type == b"P" and parse_parse(msg.body) == (b"s1", b"SELECT $1, $2", (23, 0))
    bind = parse_bind(asyncio.run(_read(bind_message(b"p", b"s1", (0, 1), (b"7", None), (1,)))).body)
    assert (bind.portal, bind.statement, bind.param_formats, bind.values, bind.result_formats) == (
        b"p", b"s1", (0, 1), (b"7", None), (1,))


async def _read(data: bytes) -> Message:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await read_message(reader)


def test_error_response_fields() -> None:
    msg = error_response("42501", "blocked", detail="d", hint="h")
    assert error_fields(msg.body) == {"S": "ERROR", "V": "ERROR", "C": "42501", "M": "blocked", "D": "d", "H": "h"}


def test_command_tag_rows() -> None:
    assert command_tag_rows("INSERT 0 5") == 5
    assert command_tag_rows("UPDATE 3") == 3
    assert command_tag_rows("CREATE TABLE") is None


def test_startup_parameters() -> None:
    body = b"\x00\x03\x00\x00user\x00alice\x00database\x00shop\x00\x00"
    packet = (len(body) + 4).to_bytes(4, "big") + body
    assert startup_parameters(packet) == {"user": "alice", "database": "shop"}
