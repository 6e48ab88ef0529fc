"""Witness cosignatures: C2SP tlog-cosignature ``cosignature/v1`` (Ed25519, type 0x04).

A cosignature is a note signature line a *witness* adds to a checkpoint. Semantically:
"as of ``timestamp``, the largest consistent tree I have seen for this origin has this
root". A log that rolls back or forks cannot collect one for the new history, which is
what makes witnesses worth asking (:mod:`trust.tlog_witness`).

Signed message (the checkpoint's note text is the whole body, final newline included,
no signature lines)::

    cosignature/v1\\n
    time <timestamp, decimal, no leading zeros>\\n
    <checkpoint note text>

Signature line: ``— <witness name> base64(key id || timestamp || signature)`` with
``key id = SHA-256(name || 0x0A || 0x04 || public key)[:4]``, ``timestamp`` a big-endian
uint64 of POSIX seconds (at most 2^63 - 1) and ``signature`` 64 bytes of Ed25519 over the
message above. A witness's vkey is ``name+hex(key id)+base64(0x04 || public key)``.

The Ed25519 message does not commit to the witness's name, which is why one key must
never serve two witnesses (the spec says so; :class:`CosignatureV1Signer` cannot prevent
an operator from doing it).
"""

from __future__ import annotations

from trust.keys import SIGNATURE_LEN, SigningKey
from trust.note import Ed25519Verifier, NoteSignature, VerifierKey, parse_vkey

__all__ = [
    "MAX_TIMESTAMP",
    "SIGNATURE_TYPE_COSIGNATURE_V1",
    "CosignatureV1Signer",
    "CosignatureV1Verifier",
    "cosigned_message",
    "verifier_from_vkey",
]

SIGNATURE_TYPE_COSIGNATURE_V1 = 0x04
MAX_TIMESTAMP = (1 << 63) - 1
_TIMESTAMP_LEN = 8


def cosigned_message(note_text: bytes, timestamp: int) -> bytes:
    """The bytes a ``cosignature/v1`` signs for ``note_text`` at ``timestamp``."""
    return b"cosignature/v1\ntime %d\n" % timestamp + note_text


class CosignatureV1Verifier(VerifierKey):
    """A trusted witness key: verifies its ``cosignature/v1`` lines on a checkpoint."""

    SIGNATURE_TYPE = SIGNATURE_TYPE_COSIGNATURE_V1
    NAME_WHAT = "witness"
    TYPE_WHAT = "Ed25519 cosignature/v1 (type 0x04)"

    @staticmethod
    def timestamp(signature: bytes) -> int | None:
        """The POSIX-seconds timestamp inside a cosignature (after the key id), or None."""
        if len(signature) != _TIMESTAMP_LEN + SIGNATURE_LEN:
            return None
        ts = int.from_bytes(signature[:_TIMESTAMP_LEN], "big")
        return ts if ts <= MAX_TIMESTAMP else None

    def verify(self, text: bytes, signature: bytes) -> bool:
        ts = self.timestamp(signature)
        if ts is None:
            return False
        return self.public_key.verify(cosigned_message(text, ts), signature[_TIMESTAMP_LEN:])

    def __repr__(self) -> str:
        return f"CosignatureV1Verifier({self.vkey!r})"


class CosignatureV1Signer:
    """A witness's private key under its name: produces ``cosignature/v1`` signature lines."""

    def __init__(self, name: str, key: SigningKey) -> None:
        self.verifier = CosignatureV1Verifier(name, key.public())
        self._key = key

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def key_id(self) -> int:
        return self.verifier.key_id

    def cosign(self, note_text: bytes, timestamp: int) -> NoteSignature:
        """The cosignature line over ``note_text`` at ``timestamp`` (POSIX seconds, > 0)."""
        if type(timestamp) is not int or not 0 < timestamp <= MAX_TIMESTAMP:
            raise ValueError(f"a cosignature timestamp is 1 .. 2^63 - 1 seconds, not {timestamp!r}")
        sig = self._key.sign(cosigned_message(note_text, timestamp))
        return NoteSignature(self.name, self.key_id, timestamp.to_bytes(_TIMESTAMP_LEN, "big") + sig)


def verifier_from_vkey(text: str) -> Ed25519Verifier | CosignatureV1Verifier:
    """The verifier a vkey describes: a log key (type 0x01) or a witness key (type 0x04)."""
    _, _, sig_type, _ = parse_vkey(text)
    if sig_type == SIGNATURE_TYPE_COSIGNATURE_V1:
        return CosignatureV1Verifier.from_vkey(text)
    return Ed25519Verifier.from_vkey(text)
