"""Codec: every schema round-trips; bad bytes give the typed error that names the problem."""

from __future__ import annotations

import re
import struct
from typing import Any

import pytest
from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import (
    LEGACY_FINGERPRINTS,
    MAGIC,
    SCHEMA_NAMES,
    TOP_LEVEL,
    Codec,
    _crc64_avro,
    _parse_set,
    _Reader,
    _strip_logical,
    get_codec,
    load_schema_json,
    schema_exists,
)
from schemas.errors import (
    EncodeError,
    IncompatibleSchema,
    MalformedRecord,
    OversizedRecord,
    TruncatedRecord,
    UnknownSchema,
)
from tests.unit.schemas.codec_samples import LEGACY_AUDIT_EVENT, LEGACY_VERDICT

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


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_every_schema_round_trips(name: str) -> None:
    strat = strategy_for(CODEC.schema(name), {})

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


def test_fingerprint_is_the_spec_crc64_in_little_endian_order() -> None:
    # The Avro spec's test vector: CRC-64-AVRO of the canonical form "null" is 7195948357588979594.
    assert _crc64_avro("null") == struct.pack("<Q", 7195948357588979594)


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_canonical_form_defines_each_named_type_at_its_first_use(name: str) -> None:
    # Actor, MatchedRule, Effect ... come from other files; a bare name at first use is not canonical.
    form = to_parsing_canonical_form(CODEC.schema(name))
    for full in set(re.findall(r'"(dev\.lockgate\.\w+)"', form)):
        first = form.index(f'"{full}"')
        assert form[first - len('"name":'):first] == '"name":', f"{full} is used before it is defined"


def test_legacy_fingerprints_are_what_the_old_codec_wrote() -> None:
    named: dict[str, Any] = {}
    old: dict[str, bytes] = {}
    for name in SCHEMA_NAMES:  # one shared name space, bare names, reversed bytes: the old way
        if not schema_exists(name, "v1"):
            continue
        parsed = parse_schema(_strip_logical(load_schema_json(name, "v1")), named_schemas=named)
        old[name] = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))[::-1]
    assert dict(LEGACY_FINGERPRINTS) == {old[name]: ("v1", name) for name in TOP_LEVEL if name in old}


def test_records_with_legacy_fingerprints_are_still_read() -> None:
    verdict = CODEC.decode_as("Verdict", LEGACY_VERDICT)
    rule = {"id": "r1", "effect": "block", "mode": "enforce", "message": "no", "error": None}
    assert verdict["matched_rules"] == [rule]
    event = CODEC.decode_as("AuditEvent", LEGACY_AUDIT_EVENT)
    assert CODEC.decode_as("Verdict", event["payload"]) == verdict


def test_legacy_fingerprints_are_never_written() -> None:
    verdict = CODEC.decode_as("Verdict", LEGACY_VERDICT)
    data = CODEC.encode("Verdict", verdict)
    assert CODEC.decode_as("Verdict", data) == verdict
    assert data[2:10] == CODEC.fingerprint_of("Verdict") != LEGACY_VERDICT[2:10]
    known = {fp for fp, name in CODEC.known_fingerprints() if name == "Verdict"}
    assert known == {data[2:10], LEGACY_VERDICT[2:10], _crc64_avro(_parse_set("v1")["Verdict"])}


def test_a_fingerprint_naming_two_schemas_is_refused() -> None:
    codec = Codec()
    with pytest.raises(IncompatibleSchema, match="names both Verdict and Checkpoint"):
        codec._register(codec.fingerprint_of("Verdict"), _Reader("Checkpoint", codec.schema("Checkpoint"), None))
