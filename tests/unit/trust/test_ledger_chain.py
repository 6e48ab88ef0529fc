from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import get_codec
from tests.factories.ledger import unchained
from trust.canonical import canonical_bytes
from trust.chain import (
    AUDIT_FIELDS,
    GENESIS,
    Chain,
    ChainError,
    event_hash,
    hashed_bytes,
)


def _contract_hash(event: dict[str, Any]) -> bytes:
    """docs/CONTRACTS.md, literally."""
    body = {k: v for k, v in event.items() if k not in ("hash", "prev_hash")}
    return hashlib.sha256(canonical_bytes(body) + event["prev_hash"]).digest()


def test_genesis_is_32_zero_bytes() -> None:
    assert GENESIS == b"\0" * 32


def test_first_event_starts_at_zero_from_genesis_and_links_forward() -> None:
    chain = Chain()
    e0 = chain.append(unchained("action", b"p0", 1, "a"), 3)
    e1 = chain.append(unchained("verdict", b"p1", 2, "a"), 3)
    assert (e0["ledger_partition"], e0["sequence"], e0["prev_hash"]) == (3, 0, GENESIS)
    assert e0["canonical_version"] == 1
    assert e0["hash"] == _contract_hash(e0) == event_hash(e0)
    assert (e1["sequence"], e1["prev_hash"]) == (1, e0["hash"])
    assert e1["hash"] == _contract_hash(e1)
    assert chain.head(3).next_sequence == 2 and chain.head(3).head == e1["hash"]


def test_partitions_are_independent_chains() -> None:
    chain = Chain()
    a = chain.append(unchained("action", b"x", 1, None), 0)
    b = chain.append(unchained("action", b"x", 1, None), 1)
    assert a["sequence"] == b["sequence"] == 0
    assert a["prev_hash"] == b["prev_hash"] == GENESIS
    assert a["hash"] != b["hash"]  # the partition is inside the hash
    assert chain.head(7).next_sequence == 0 and chain.head(7).head == GENESIS


def test_append_does_not_mutate_input_and_overwrites_ledger_fields() -> None:
    ev = unchained("action", b"x", 1, None)
    ev["sequence"] = 99
    snapshot = dict(ev)
    out = Chain().append(ev, 0)
    assert ev == snapshot
    assert out["sequence"] == 0


def test_resume_continues_a_stored_chain() -> None:
    first = Chain()
    events = [first.append(unchained("action", bytes([i]), i, None), 2) for i in range(3)]
    second = Chain()
    second.resume_from(events[-1])
    nxt = second.append(unchained("action", b"z", 9, None), 2)
    assert nxt["sequence"] == 3 and nxt["prev_hash"] == events[-1]["hash"]
    with pytest.raises(ChainError):
        second.resume(0, 0, b"\1" * 32)
    with pytest.raises(ChainError):
        second.resume(0, 5, b"short")


def test_every_field_is_inside_the_hash() -> None:
    ev = Chain().append(unchained("action", b"payload", 5, "a1"), 0)
    changes: dict[str, Any] = {
        "event_id": "other",
        "kind": "verdict",
        "recorded_at": 6,
        "tenant": "other",
        "action_id": None,
        "payload": b"payloaD",
        "detail": "x",
        "ledger_partition": 1,
        "sequence": 1,
        "prev_hash": b"\1" * 32,
    }
    assert set(changes) | {"hash", "canonical_version"} == set(AUDIT_FIELDS)
    for name, value in changes.items():
        assert event_hash(dict(ev, **{name: value})) != ev["hash"], name
    assert event_hash(dict(ev, hash=b"ignored")) == ev["hash"]


def test_unknown_canonical_version_and_bad_fields_raise() -> None:
    ev = Chain().append(unchained("action", b"p", 5, None), 0)
    with pytest.raises(ChainError, match="canonical_version"):
        event_hash(dict(ev, canonical_version=2))
    with pytest.raises(ChainError, match="prev_hash"):
        event_hash(dict(ev, prev_hash=None))
    broken = dict(ev)
    del broken["tenant"]
    with pytest.raises(ChainError, match="tenant"):
        event_hash(broken)
    with pytest.raises(ChainError, match="not AuditEvent fields"):
        Chain().append(dict(unchained("action", b"p", 5, None), extra=1), 0)
    incomplete = unchained("action", b"p", 5, None)
    del incomplete["kind"]
    with pytest.raises(ChainError, match="kind"):
        Chain().append(incomplete, 0)


def test_chained_events_encode_as_avro_audit_events() -> None:
    ev = Chain().append(unchained("action", b"p", 5, "a"), 0)
    codec = get_codec()
    back = codec.decode_as("AuditEvent", codec.encode("AuditEvent", ev))
    assert back == ev
    assert event_hash(back) == ev["hash"]


text = st.text(max_size=30)
events = st.fixed_dictionaries(
    {
        "event_id": text,
        "kind": st.sampled_from(["action", "verdict", "outcome", "policy", "security"]),
        "recorded_at": st.integers(-(2**63), 2**63 - 1),
        "tenant": text,
        "action_id": st.none() | text,
        "payload": st.binary(max_size=300),
        "detail": st.none() | text,
        "ledger_partition": st.integers(0, 2**31 - 1),
        "sequence": st.integers(0, 2**63 - 1),
        "prev_hash": st.binary(min_size=32, max_size=32),
        "hash": st.binary(min_size=32, max_size=32),
        "canonical_version": st.just(1),
    }
)


@settings(max_examples=400, deadline=None)
@given(events)
def test_fast_canonical_form_is_byte_identical_to_the_contract(event: dict[str, Any]) -> None:
    body = {k: v for k, v in event.items() if k not in ("hash", "prev_hash")}
    assert hashed_bytes(event) == canonical_bytes(body)
    assert event_hash(event) == _contract_hash(event)


def test_non_schema_types_take_the_generic_path() -> None:
    ev = Chain().append(unchained("action", b"p", 5, None), 0)
    as_bool = dict(ev, sequence=True)  # json writes true, an f-string would write True
    body = {k: v for k, v in as_bool.items() if k not in ("hash", "prev_hash")}
    assert hashed_bytes(as_bool) == canonical_bytes(body)
    ba = dict(ev, payload=bytearray(b"p"))
    assert hashed_bytes(ba) == hashed_bytes(ev)
