from __future__ import annotations

import pytest

from schemas.codec import get_codec
from tests.factories.ledger import LedgerBuilder
from trust.canonical import signing_payload
from trust.chain import GENESIS
from trust.checkpoints import CheckpointError, build_checkpoint, verify_checkpoint
from trust.keys import Keyring, SigningKey
from trust.merkle import merkle_root


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def ledger(key: SigningKey) -> LedgerBuilder:
    b = LedgerBuilder(key)
    for _ in range(4):
        b.flow(0)
    return b


def test_checkpoint_fields_and_signature(key: SigningKey, ledger: LedgerBuilder) -> None:
    evs = ledger.events
    cp = build_checkpoint(evs, key, "proc-1", 123, prev_head=GENESIS)
    assert cp["ledger_partition"] == 0
    assert (cp["first_sequence"], cp["last_sequence"]) == (0, len(evs) - 1)
    assert cp["head_hash"] == evs[-1]["hash"]
    assert cp["merkle_root"] == merkle_root([e["hash"] for e in evs])
    assert (cp["created_at"], cp["processor_id"], cp["key_id"]) == (123, "proc-1", key.key_id)
    assert key.public().verify(signing_payload(cp, "signature", b""), cp["signature"])
    assert verify_checkpoint(cp, Keyring([key.public()]))
    assert verify_checkpoint(cp, key.public())
    codec = get_codec()
    decoded = codec.decode_as("Checkpoint", codec.encode("Checkpoint", cp))
    assert decoded == {**cp, "signature_format": "interval/v1"}  # the field's default
    assert verify_checkpoint(decoded, key.public())  # signed over the ten v1 fields only


def test_an_interval_record_with_an_unknown_format_does_not_verify(key: SigningKey, ledger: LedgerBuilder) -> None:
    cp = build_checkpoint(ledger.events, key, "proc-1", 123)
    assert not verify_checkpoint({**cp, "signature_format": "interval/v2"}, key.public())
    assert not verify_checkpoint({**cp, "signature_format": "tlog-checkpoint/v1"}, key.public())


def test_interval_checkpoint_in_the_middle(key: SigningKey, ledger: LedgerBuilder) -> None:
    evs = ledger.events[3:9]
    cp = build_checkpoint(evs, key, "p", 1, prev_head=ledger.events[2]["hash"])
    assert (cp["first_sequence"], cp["last_sequence"]) == (3, 8)
    assert verify_checkpoint(cp, key.public())
    with pytest.raises(CheckpointError, match="link"):
        build_checkpoint(evs, key, "p", 1, prev_head=GENESIS)


def test_every_field_change_breaks_the_signature(key: SigningKey, ledger: LedgerBuilder) -> None:
    cp = build_checkpoint(ledger.events, key, "proc-1", 123)
    ring = Keyring([key.public()])
    changes = {
        "checkpoint_id": "x",
        "ledger_partition": 1,
        "first_sequence": 1,
        "last_sequence": 5,
        "head_hash": b"\1" * 32,
        "merkle_root": b"\2" * 32,
        "created_at": 124,
        "processor_id": "proc-2",
        "key_id": "0" * 16,
        "signature": b"\0" * 64,
    }
    assert set(changes) == set(cp)
    for name, value in changes.items():
        assert not verify_checkpoint(dict(cp, **{name: value}), ring), name


def test_foreign_and_expired_keys(key: SigningKey, ledger: LedgerBuilder) -> None:
    cp = build_checkpoint(ledger.events, key, "p", 1_000)
    assert not verify_checkpoint(cp, Keyring([SigningKey.generate().public()]))
    assert verify_checkpoint(cp, Keyring([(key.public(), 1_000)]))  # expiry at created_at
    assert not verify_checkpoint(cp, Keyring([(key.public(), 999)]))
    assert not verify_checkpoint({"checkpoint_id": "x"}, key.public())


def test_refuses_to_sign_broken_intervals(key: SigningKey, ledger: LedgerBuilder) -> None:
    evs = ledger.events
    with pytest.raises(CheckpointError, match="at least one"):
        build_checkpoint([], key, "p", 1)
    with pytest.raises(CheckpointError, match="contiguous"):
        build_checkpoint([evs[0], evs[2]], key, "p", 1)
    with pytest.raises(CheckpointError, match="recompute"):
        build_checkpoint([evs[0], dict(evs[1], tenant="evil")], key, "p", 1)
    other = LedgerBuilder(key)
    other.flow(1)
    with pytest.raises(CheckpointError, match="mixed"):
        build_checkpoint([evs[0], dict(other.events[0], sequence=1)], key, "p", 1)


def test_a_checkpoint_written_with_the_v1_schema_still_verifies(key: SigningKey, ledger: LedgerBuilder) -> None:
    """Records on the topic and in stores from before signature_format: read with its default."""
    import io

    from fastavro import parse_schema, schemaless_writer

    from schemas.codec import _crc64_avro, _strip_logical, load_schema_json

    cp = build_checkpoint(ledger.events, key, "proc-1", 123)
    v1 = parse_schema(_strip_logical(load_schema_json("Checkpoint", "v1")))
    buf = io.BytesIO()
    schemaless_writer(buf, v1, cp)
    old_bytes = b"\xc3\x01" + _crc64_avro(v1) + buf.getvalue()
    decoded = get_codec().decode_as("Checkpoint", old_bytes)
    assert decoded["signature_format"] == "interval/v1"
    assert verify_checkpoint(decoded, key.public())
