"""Witness cosignatures per C2SP tlog-cosignature (cosignature/v1, Ed25519, type 0x04)."""

from __future__ import annotations

import hashlib

import pytest

from trust.cosignature import (
    CosignatureV1Signer,
    CosignatureV1Verifier,
    cosigned_message,
    verifier_from_vkey,
)
from trust.errors import KeyInvalid
from trust.keys import SigningKey
from trust.note import Ed25519Signer, Ed25519Verifier, open_note, sign_note

BODY = b"lockgate.example/ledger/p0\n5\nazE7YRtAZ2ueHf1wxFA/I3n4jw8cJ0D7fhyswywRNGU=\n"


@pytest.fixture
def witness() -> CosignatureV1Signer:
    return CosignatureV1Signer("witness.example/w1", SigningKey.generate())


def test_the_signed_message_is_header_time_and_body() -> None:
    assert cosigned_message(BODY, 1679315147) == b"cosignature/v1\ntime 1679315147\n" + BODY


def test_cosign_and_verify(witness: CosignatureV1Signer) -> None:
    sig = witness.cosign(BODY, 1_700_000_000)
    assert sig.key_id == int.from_bytes(
        hashlib.sha256(b"witness.example/w1\n\x04" + witness.verifier.public_key.raw).digest()[:4], "big"
    )
    assert sig.signature[:8] == (1_700_000_000).to_bytes(8, "big")
    assert witness.verifier.verify(BODY, sig.signature)
    assert CosignatureV1Verifier.timestamp(sig.signature) == 1_700_000_000
    assert not witness.verifier.verify(BODY.replace(b"\n5\n", b"\n6\n"), sig.signature)
    # a changed timestamp is a changed message
    moved = (1_700_000_001).to_bytes(8, "big") + sig.signature[8:]
    assert not witness.verifier.verify(BODY, moved)


def test_a_cosignature_is_not_a_plain_note_signature_and_vice_versa(witness: CosignatureV1Signer) -> None:
    key = SigningKey.generate()
    cosigner = CosignatureV1Signer("w.example", key)
    plain = Ed25519Signer("w.example", key)
    assert cosigner.key_id != plain.key_id  # type byte 0x04 vs 0x01: distinct key ids
    note = sign_note(BODY.decode(), [plain])
    cosig = cosigner.cosign(BODY, 1_700_000_000)
    opened = open_note(note + cosig.line(), [plain.verifier, cosigner.verifier])
    assert {s.key_id for s in opened.verified} == {plain.key_id, cosigner.key_id}
    # the plain Ed25519 signature over the body does not pass as a cosignature
    forged = type(cosig)(cosig.name, cosig.key_id, (1).to_bytes(8, "big") + key.sign(BODY))
    assert not cosigner.verifier.verify(BODY, forged.signature)


def test_timestamps_out_of_range_are_refused(witness: CosignatureV1Signer) -> None:
    with pytest.raises(ValueError):
        witness.cosign(BODY, 0)
    with pytest.raises(ValueError):
        witness.cosign(BODY, 1 << 63)
    sig = witness.cosign(BODY, 5)
    too_big = (1 << 63).to_bytes(8, "big") + sig.signature[8:]
    assert CosignatureV1Verifier.timestamp(too_big) is None
    assert not witness.verifier.verify(BODY, too_big)
    assert not witness.verifier.verify(BODY, sig.signature[:-1])


def test_vkeys(witness: CosignatureV1Signer) -> None:
    vkey = witness.verifier.vkey
    assert vkey.startswith("witness.example/w1+")
    again = verifier_from_vkey(vkey)
    assert isinstance(again, CosignatureV1Verifier)
    assert (again.name, again.key_id) == (witness.name, witness.key_id)
    log_vkey = Ed25519Verifier("log.example/p0", SigningKey.generate().public()).vkey
    assert isinstance(verifier_from_vkey(log_vkey), Ed25519Verifier)
    with pytest.raises(KeyInvalid, match="type 0x04"):
        CosignatureV1Verifier.from_vkey(log_vkey)
    with pytest.raises(KeyInvalid, match="type 0x01"):
        Ed25519Verifier.from_vkey(vkey)
