"""Codec: every schema round-trips; bad bytes give the typed error that names the problem."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import MAGIC, TOP_LEVEL, Codec, get_codec
from schemas.errors import EncodeError, MalformedRecord, OversizedRecord, TruncatedRecord, UnknownSchema

CODEC = get_codec()

_PRIM: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "double": st.floats(allow_nan=False),
    "float": st.just(0.5),
    "string": st.text(max_size=20),
    "bytes": st.binary(max_size=20),
}


def strategy_for(node: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A hypothesis strategy producing valid records for a parsed fastavro schema node."""
    if isinstance(node, str):
        if node in _PRIM:
            return _PRIM[node]
        return strategy_for(named[node], named)
    if isinstance(node, list):
        return st.one_of([strategy_for(b, named) for b in node])
    kind = node["type"]
    if isinstance(kind, dict | list):
        return strategy_for(kind, named)
    if kind in _PRIM:
        return _PRIM[kind]
    if kind == "record":
        named[node["name"]] = node
        return st.fixed_dictionaries({f["name"]: strategy_for(f["type"], named) for f in node["fields"]})
    if kind == "enum":
        named[node["name"]] = node
        return st.sampled_from(node["symbols"])
    if kind == "array":
        return st.lists(strategy_for(node["items"], named), max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), strategy_for(node["values"], named), max_size=3)
    raise AssertionError(f"unhandled schema node {node!r}")


def _named() -> dict[str, Any]:
    named: dict[str, Any] = {}
    for name in ("Actor", "MatchedRule"):
        strategy_for(CODEC._current[name], named)
    return named


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_every_schema_round_trips(name: str) -> None:
    strat = strategy_for(CODEC.schema(name), _named())

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(strat)
    def check(record: dict[str, Any]) -> None:
        data = CODEC.encode(name, record)
        assert data[:2] == MAGIC
        assert data[2:10] == CODEC.fingerprint_of(name)
        got_name, got = CODEC.decode(data)
        assert got_name == name
        assert got == record

    check()


def _sample() -> bytes:
    return CODEC.encode("Checkpoint", {
        "checkpoint_id": "c1", "ledger_partition": 0, "first_sequence": 0, "last_sequence": 9,
        "head_hash": b"\x01" * 32, "merkle_root": b"\x02" * 32, "created_at": 1, "processor_id": "p",
        "key_id": "k", "signature": b"\x03" * 64,
    })


def test_truncated_body_is_reported_as_truncated() -> None:
    data = _sample()
    for cut in (len(data) - 1, len(data) - 40, 11):
        with pytest.raises(TruncatedRecord):
            CODEC.decode(data[:cut])


def test_truncated_header_is_reported_as_truncated() -> None:
    with pytest.raises(TruncatedRecord, match="header"):
        CODEC.decode(MAGIC + b"\x00\x01")


def test_missing_marker_is_malformed() -> None:
    with pytest.raises(MalformedRecord, match="c301"):
        CODEC.decode(b'{"json": "not avro"}')


def test_trailing_bytes_are_malformed() -> None:
    with pytest.raises(MalformedRecord, match="trailing"):
        CODEC.decode(_sample() + b"\x00")


def test_unknown_fingerprint_names_the_fingerprint() -> None:
    data = _sample()
    forged = MAGIC + struct.pack("<Q", 0xDEADBEEF) + data[10:]
    with pytest.raises(UnknownSchema, match="efbeadde00000000") as info:
        CODEC.decode(forged)
    assert info.value.fingerprint == struct.pack("<Q", 0xDEADBEEF)


def test_wrong_record_type_is_rejected() -> None:
    with pytest.raises(MalformedRecord, match="expected a Verdict record, got a Checkpoint"):
        CODEC.decode(_sample(), expected="Verdict")


def test_garbage_body_is_malformed_not_a_crash() -> None:
    data = _sample()[:10] + b"\xff" * 64
    with pytest.raises((MalformedRecord, TruncatedRecord)):
        CODEC.decode(data)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        CODEC.decode(MAGIC + CODEC.fingerprint_of("Verdict") + data)
    except (MalformedRecord, TruncatedRecord):
        pass


def test_oversized_record_is_refused_both_ways() -> None:
    small = Codec(max_record_bytes=64)
    with pytest.raises(OversizedRecord, match="exceeds the limit of 64"):
        small.encode("Checkpoint", CODEC.decode_as("Checkpoint", _sample()))
    with pytest.raises(OversizedRecord):
        small.decode(_sample())


def test_record_that_does_not_fit_names_the_field() -> None:
    with pytest.raises(EncodeError, match="ledger_partition"):
        CODEC.encode("Checkpoint", {"checkpoint_id": "x"})
