"""Whole-log checkpoints: the C2SP checkpoint body, the record that carries it, and the
writer's per-partition state."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from schemas.codec import get_codec
from trust.checkpoints import verify_checkpoint
from trust.errors import CheckpointError, ProofError, TlogFormatError
from trust.keys import Keyring, SigningKey
from trust.merkle import merkle_root, verify_consistency
from trust.note import Ed25519Signer, open_note, parse_note, sign_note
from trust.partition_log import PartitionLog
from trust.tlog import (
    DEFAULT_LOG_NAME,
    CheckpointBody,
    build_log_checkpoint,
    log_verifier,
    open_checkpoint_note,
    open_log_checkpoint,
    origin_for,
    parse_checkpoint_body,
    parse_origin,
)

KEY = SigningKey.generate()
LEAVES = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(40)]


def _cp(size: int = 12, partition: int = 2, **kw: Any) -> dict[str, Any]:
    return build_log_checkpoint(
        partition=partition, size=size, root=merkle_root(LEAVES[:size]), head_hash=LEAVES[size - 1],
        key=KEY, processor_id="proc-1", now_us=1_700_000_000_000_000, **kw,
    )


def test_the_record_carries_a_c2sp_checkpoint_note() -> None:
    cp = _cp()
    root_b64 = base64.b64encode(merkle_root(LEAVES[:12])).decode()
    note = cp["signature"].decode()
    assert note.startswith(f"lockgate.example/ledger/p2\n12\n{root_b64}\n\n— lockgate.example/ledger/p2 ")
    assert (cp["checkpoint_id"], cp["first_sequence"], cp["last_sequence"]) == ("p2@12", 0, 11)
    assert (cp["signature_format"], cp["key_id"]) == ("tlog-checkpoint/v1", KEY.key_id)
    assert verify_checkpoint(cp, KEY.public())
    assert verify_checkpoint(cp, Keyring([KEY.public()]), log_name=DEFAULT_LOG_NAME)
    opened = open_note(note, [log_verifier("lockgate.example/ledger/p2", KEY.public())])
    assert opened.text == f"lockgate.example/ledger/p2\n12\n{root_b64}\n"


def test_the_record_round_trips_through_the_codec() -> None:
    cp = _cp()
    codec = get_codec()
    assert codec.decode_as("Checkpoint", codec.encode("Checkpoint", cp)) == cp


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("ledger_partition", 3, "do not match the record"),
        ("last_sequence", 12, "do not match the record"),
        ("first_sequence", 1, "do not match the record"),
        ("merkle_root", b"\x01" * 32, "merkle_root differs"),
        ("checkpoint_id", "p2:0-11", "checkpoint_id"),
        ("signature_format", "interval/v1", "signature_format"),
        ("key_id", "0123456789abcdef", "not a trusted processor key"),
        ("head_hash", b"\x00" * 31, "head_hash"),
    ],
)
def test_a_changed_record_field_is_refused(field: str, value: object, reason: str) -> None:
    with pytest.raises(CheckpointError, match=reason):
        open_log_checkpoint({**_cp(), field: value}, KEY.public())


def test_a_changed_note_is_refused() -> None:
    cp = _cp()
    note = cp["signature"].decode()
    forged = note.replace("\n12\n", "\n13\n").encode()
    with pytest.raises(CheckpointError):
        open_log_checkpoint({**cp, "signature": forged, "last_sequence": 12, "checkpoint_id": "p2@13"}, KEY.public())
    with pytest.raises(CheckpointError, match="not a checkpoint note"):
        open_log_checkpoint({**cp, "signature": note[:-1].encode()}, KEY.public())  # truncated
    other = SigningKey.generate()
    with pytest.raises(CheckpointError, match="signature does not verify"):
        open_log_checkpoint({**cp, "key_id": other.key_id}, Keyring([KEY.public(), other.public()]))


def test_a_note_signed_for_another_partition_or_log_is_refused() -> None:
    cp = _cp(partition=2)
    text = CheckpointBody(origin_for(DEFAULT_LOG_NAME, 3), 12, cp["merkle_root"]).text()
    p3 = sign_note(text, [Ed25519Signer(origin_for(DEFAULT_LOG_NAME, 3), KEY)]).encode()
    with pytest.raises(CheckpointError, match="do not match the record"):
        open_log_checkpoint({**cp, "signature": p3}, KEY.public())
    with pytest.raises(CheckpointError, match="not of log"):
        open_log_checkpoint(_cp(log_name="other.example/ledger"), KEY.public(), log_name=DEFAULT_LOG_NAME)
    # the key name must be the origin: the same key under the log name alone does not count
    wrong_name = sign_note(CheckpointBody(origin_for(DEFAULT_LOG_NAME, 2), 12, cp["merkle_root"]).text(),
                           [Ed25519Signer(DEFAULT_LOG_NAME, KEY)]).encode()
    with pytest.raises(CheckpointError, match="does not verify"):
        open_log_checkpoint({**cp, "signature": wrong_name}, KEY.public())


def test_extension_lines_are_refused_even_when_signed() -> None:
    cp = _cp()
    origin = origin_for(DEFAULT_LOG_NAME, 2)
    text = CheckpointBody(origin, 12, cp["merkle_root"], ("timestamp 5",)).text()
    assert parse_checkpoint_body(text).extensions == ("timestamp 5",)  # the format allows them
    note = sign_note(text, [Ed25519Signer(origin, KEY)])
    with pytest.raises(CheckpointError, match="extension lines"):
        open_log_checkpoint({**cp, "signature": note.encode()}, KEY.public())
    with pytest.raises(CheckpointError, match="extension lines"):
        open_checkpoint_note(note, KEY.public())


def test_key_expiry_is_judged_at_created_at() -> None:
    cp = _cp()
    assert verify_checkpoint(cp, Keyring([(KEY.public(), cp["created_at"])]))
    assert not verify_checkpoint(cp, Keyring([(KEY.public(), cp["created_at"] - 1)]))


@pytest.mark.parametrize(
    "text",
    [
        "o\n5\n",  # two lines
        "o\n05\n" + base64.b64encode(bytes(32)).decode() + "\n",  # leading zero
        "o\n-5\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n5\n" + base64.b64encode(bytes(31)).decode() + "\n",  # 31-byte root
        "o\n5\n" + base64.b64encode(bytes(32)).decode().rstrip("=") + "\n",  # unpadded
        "o\n5\n" + base64.b64encode(bytes(32)).decode() + "\n\n",  # empty extension line
        "o\n5\n" + base64.b64encode(bytes(32)).decode(),  # no final newline
        "\n5\n" + base64.b64encode(bytes(32)).decode() + "\n",  # empty origin
        "o\n18446744073709551616\n" + base64.b64encode(bytes(32)).decode() + "\n",  # 2^64
    ],
)
def test_malformed_checkpoint_bodies_are_refused(text: str) -> None:
    with pytest.raises(TlogFormatError):
        parse_checkpoint_body(text)


def test_origins() -> None:
    assert origin_for("lockgate.example/ledger", 7) == "lockgate.example/ledger/p7"
    assert parse_origin("lockgate.example/ledger/p7") == ("lockgate.example/ledger", 7)
    for bad in ("lockgate.example/ledger/p07", "lockgate.example/ledger", "/p1", "a b/p1", "x/p-1"):
        assert parse_origin(bad) is None
    with pytest.raises(ValueError):
        origin_for("has space", 0)


def test_partition_log_signs_the_whole_log_and_proves_to_any_kept_size() -> None:
    log = PartitionLog(2)
    with pytest.raises(ProofError):
        log.checkpoint(KEY, "proc-1", 1)
    for leaf in LEAVES[:12]:
        log.append(leaf)
    cp12 = log.checkpoint(KEY, "proc-1", 1)
    assert cp12 == {**_cp(), "created_at": 1}
    for leaf in LEAVES[12:30]:
        log.append(leaf)
    root = merkle_root(LEAVES[:30])
    assert log.root() == root
    for old in (0, 1, 12, 17, 30):
        assert verify_consistency(old, 30, merkle_root(LEAVES[:old]), root, log.consistency_proof(old))
    log.forget_before(12)
    assert log.base_size == 12
    with pytest.raises(ProofError, match=r"keeps sizes 12\.\.30"):
        log.consistency_proof(11)
    assert verify_consistency(12, 30, cp12["merkle_root"], root, log.consistency_proof(12))


def test_partition_log_state_round_trips_and_refuses_corruption() -> None:
    log = PartitionLog.from_hashes(5, LEAVES[:20])
    for leaf in LEAVES[20:25]:
        log.append(leaf)
    again = PartitionLog.from_bytes(log.to_bytes())
    assert (again.partition, again.size, again.root(), again.head) == (5, 25, log.root(), LEAVES[24])
    assert again.consistency_proof(20) == log.consistency_proof(20)
    state = bytearray(log.to_bytes())
    state[-1] ^= 1  # a kept leaf changed: it no longer reproduces the frontier
    with pytest.raises(ValueError):
        PartitionLog.from_bytes(bytes(state))
    with pytest.raises(ValueError):
        PartitionLog.from_bytes(log.to_bytes()[:-32])
    empty = PartitionLog(0)
    assert PartitionLog.from_bytes(empty.to_bytes()).size == 0


def test_open_checkpoint_note_requires_witnesses_it_is_given() -> None:
    from trust.cosignature import CosignatureV1Signer

    cp = _cp()
    note = cp["signature"].decode()
    w = CosignatureV1Signer("witness.example/w", SigningKey.generate())
    text = parse_note(note).text.encode()
    assert open_checkpoint_note(note, KEY.public()).size == 12
    with pytest.raises(CheckpointError, match="no cosignature from witness"):
        open_checkpoint_note(note, KEY.public(), witnesses=[w.verifier])
    cosigned = note + w.cosign(text, 1_700_000_000).line()
    assert open_checkpoint_note(cosigned, KEY.public(), witnesses=[w.verifier]).size == 12
    bad = note + w.cosign(text.replace(b"\n12\n", b"\n13\n"), 1_700_000_000).line()
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint_note(bad, KEY.public(), witnesses=[w.verifier])
