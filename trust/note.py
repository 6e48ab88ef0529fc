"""Signed notes, exactly as C2SP signed-note v1 (c2sp.org/signed-note) specifies them.

Why this format: a whole-log checkpoint (:mod:`trust.tlog`) is a signed note, and so is
every witness cosignature on it (:mod:`trust.cosignature`). Any transparency-log tool
(Go's ``golang.org/x/mod/sumdb/note``, transparency-dev's witnesses) then reads and checks
Lockgate's checkpoints; ``tests/interop`` proves that with those Go libraries.

Format (an auditor can re-implement this from here)::

    <text, one or more lines, each ending in U+000A>
    <blank line>
    — <key name> <base64(4-byte key id, big-endian || signature)>      (one or more)

* The whole note is valid UTF-8 and holds no ASCII control character but newline.
* The text ends at the *last* blank line; it may itself contain blank lines.
* Key names are non-empty and hold no Unicode space and no ``+``.
* ``key id = SHA-256(key name || 0x0A || signature type || public key)[:4]``; the type
  byte is 0x01 for Ed25519 over the text (this module) and 0x04 for a timestamped
  cosignature (:mod:`trust.cosignature`).
* A verifier key ("vkey") is ``<name>+<8 hex digits of key id>+base64(type || public key)``.

Verification (:func:`open_note`): signature lines whose (name, key id) is not a trusted
key are kept aside, unverified — they may be other parties' cosignatures. Every line of a
trusted key must verify, else the whole note is refused (:class:`NoteSignatureInvalid`);
at least one must, else :class:`NoteUnverified`. Malformed input raises
:class:`NoteMalformed`. Limits: 1 MiB and 100 signature lines (the spec asks verifiers to
cap them and to accept at least 16). Base64 must be canonical (padded, no stray bits),
which is stricter than Go's decoder, so one note has one spelling.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, Self

from trust.errors import KeyInvalid, NoteMalformed, NoteSignatureInvalid, NoteUnverified
from trust.keys import RAW_KEY_LEN, PublicKey, SigningKey

__all__ = [
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "SIGNATURE_TYPE_ED25519",
    "Ed25519Signer",
    "Ed25519Verifier",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "VerifiedNote",
    "VerifierKey",
    "add_signatures",
    "check_note_text",
    "key_id",
    "open_note",
    "parse_note",
    "parse_vkey",
    "sign_note",
    "valid_key_name",
    "vkey",
]

SIGNATURE_TYPE_ED25519 = 0x01
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
_DASH = "\u2014 "  # em dash, space: how every signature line starts


def valid_key_name(name: str) -> bool:
    """Non-empty, no Unicode space, no ``+``, no control character (C2SP signed-note)."""
    return (
        isinstance(name, str)
        and name != ""
        and "+" not in name
        and not any(ch.isspace() or ch < " " for ch in name)
    )


def key_id(name: str, signature_type: int, public_key: bytes) -> int:
    """``SHA-256(name || 0x0A || type || public key)[:4]`` as a big-endian uint32."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([signature_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def vkey(name: str, signature_type: int, public_key: bytes) -> str:
    """The verifier key string ``name+hex(key id)+base64(type || public key)``."""
    if not valid_key_name(name):
        raise KeyInvalid(f"{name!r} is not a valid note key name (non-empty, no spaces, no '+')")
    material = base64.b64encode(bytes([signature_type]) + public_key).decode("ascii")
    return f"{name}+{key_id(name, signature_type, public_key):08x}+{material}"


def parse_vkey(text: str) -> tuple[str, int, int, bytes]:
    """``(name, key id, signature type, public key)`` from a vkey; :class:`KeyInvalid` if it
    is malformed or its key id is not the one its name and key give."""
    parts = text.strip().split("+", 2)  # the base64 part may itself hold '+'
    if len(parts) != 3:
        raise KeyInvalid("a verifier key is NAME+KEYID+BASE64, three parts joined by '+'")
    name, hash_hex, material_b64 = parts
    if not valid_key_name(name):
        raise KeyInvalid(f"verifier key name {name!r} is empty or holds a space")
    if len(hash_hex) != 8 or any(c not in "0123456789abcdef" for c in hash_hex):
        raise KeyInvalid(f"verifier key id {hash_hex!r} is not 8 lowercase hex digits")
    material = _b64decode(material_b64)
    if material is None or len(material) < 2:
        raise KeyInvalid("verifier key material is not canonical base64 of type || key")
    sig_type, public = material[0], material[1:]
    if key_id(name, sig_type, public) != int(hash_hex, 16):
        raise KeyInvalid(f"verifier key id {hash_hex} does not match its name and public key")
    return name, int(hash_hex, 16), sig_type, public


def _b64decode(text: str) -> bytes | None:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == text else None


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key id, and the signature bytes after the key id."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """``— name base64(key id || signature)`` and the newline."""
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_DASH}{self.name} {base64.b64encode(blob).decode('ascii')}\n"


@dataclass(frozen=True)
class Note:
    """A parsed (not yet verified) note: its text and its signature lines, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def serialize(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


@dataclass(frozen=True)
class VerifiedNote:
    """A note whose text a trusted key signed: which trusted keys did, and the other lines."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


class NoteVerifier(Protocol):
    """A trusted key: its name and key id select the lines it must verify."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def verify(self, text: bytes, signature: bytes) -> bool:
        """True iff ``signature`` (after the key id) is this key's over ``text``. Never raises."""
        ...


class NoteSigner(Protocol):
    """A private key that signs note texts under a key name."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def sign(self, text: bytes) -> bytes: ...


class VerifierKey:
    """A named Ed25519 public key of one C2SP signature type: its name, key id and verifier
    key string. Subclasses fix the type (``SIGNATURE_TYPE``) and what they verify."""

    SIGNATURE_TYPE: ClassVar[int]
    NAME_WHAT: ClassVar[str]  # how errors call the name ("note key", "witness")
    TYPE_WHAT: ClassVar[str]  # how errors call the key type

    def __init__(self, name: str, public_key: PublicKey) -> None:
        if not valid_key_name(name):
            raise KeyInvalid(f"{name!r} is not a valid {self.NAME_WHAT} name (non-empty, no spaces, no '+')")
        self._name = name
        self.public_key = public_key
        self._key_id = key_id(name, self.SIGNATURE_TYPE, public_key.raw)

    @classmethod
    def from_vkey(cls, text: str) -> Self:
        name, _, sig_type, public = parse_vkey(text)
        if sig_type != cls.SIGNATURE_TYPE or len(public) != RAW_KEY_LEN:
            raise KeyInvalid(f"verifier key {name} is not an {cls.TYPE_WHAT} key")
        return cls(name, PublicKey(public))

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def vkey(self) -> str:
        return vkey(self._name, self.SIGNATURE_TYPE, self.public_key.raw)


class Ed25519Verifier(VerifierKey):
    """Signature type 0x01: plain Ed25519 over the note text."""

    SIGNATURE_TYPE = SIGNATURE_TYPE_ED25519
    NAME_WHAT = "note key"
    TYPE_WHAT = "Ed25519 (type 0x01)"

    def verify(self, text: bytes, signature: bytes) -> bool:
        return self.public_key.verify(text, signature)

    def __repr__(self) -> str:
        return f"Ed25519Verifier({self.vkey!r})"


class Ed25519Signer:
    """Signs note texts with an Ed25519 key under a key name (type 0x01)."""

    def __init__(self, name: str, key: SigningKey) -> None:
        self.verifier = Ed25519Verifier(name, key.public())
        self._key = key

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def key_id(self) -> int:
        return self.verifier.key_id

    def sign(self, text: bytes) -> bytes:
        return self._key.sign(text)


def check_note_text(text: str) -> None:
    """Refuse a text that cannot be a note's text: :class:`NoteMalformed` unless it ends in a
    newline and holds no control character but newline."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise NoteMalformed("a note text ends with a newline")
    if any(ch < " " and ch != "\n" for ch in text):
        raise NoteMalformed("a note holds no ASCII control character other than newline")


def sign_note(text: str, signers: Iterable[NoteSigner]) -> str:
    """The signed note: ``text``, a blank line, one signature line per signer."""
    check_note_text(text)
    raw = text.encode("utf-8")
    sigs = tuple(NoteSignature(s.name, s.key_id, s.sign(raw)) for s in signers)
    if not sigs:
        raise ValueError("a signed note needs at least one signer")
    for s in sigs:
        if not valid_key_name(s.name):
            raise KeyInvalid(f"{s.name!r} is not a valid note key name")
    return Note(text, sigs).serialize()


def parse_note(data: bytes | str) -> Note:
    """Split a note into text and signature lines, checking only the format (no keys)."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_NOTE_BYTES:
        raise NoteMalformed(f"a note is at most {MAX_NOTE_BYTES} bytes; this one has {len(raw)}")
    try:
        msg = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteMalformed(f"a note is UTF-8: {exc}") from None
    if any(ch < " " and ch != "\n" for ch in msg):
        raise NoteMalformed("a note holds no ASCII control character other than newline")
    split = msg.rfind("\n\n")
    if split < 0:
        raise NoteMalformed("a note has a blank line between its text and its signatures")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteMalformed("a note ends with one or more signature lines, each ending in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteMalformed(f"a note carries at most {MAX_SIGNATURES} signatures; this one has {len(lines)}")
    sigs: list[NoteSignature] = []
    for line in lines:
        if not line.startswith(_DASH):
            raise NoteMalformed(f"signature line {line[:40]!r} does not start with an em dash and a space")
        name, sep, b64 = line[len(_DASH) :].partition(" ")
        blob = _b64decode(b64) if sep else None
        if not valid_key_name(name) or blob is None or len(blob) < 5:
            raise NoteMalformed(f"signature line {line[:40]!r} is not '— NAME BASE64(KEYID || SIGNATURE)'")
        sigs.append(NoteSignature(name, int.from_bytes(blob[:4], "big"), blob[4:]))
    return Note(text, tuple(sigs))


def open_note(data: bytes | str, verifiers: Iterable[NoteVerifier]) -> VerifiedNote:
    """Parse ``data`` and verify it against the trusted ``verifiers`` (module docstring).

    Raises :class:`NoteMalformed`, :class:`NoteSignatureInvalid` or :class:`NoteUnverified`.
    Repeated identical lines count once.
    """
    note = parse_note(data)
    known: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        if known.setdefault((v.name, v.key_id), v) is not v:
            raise ValueError(f"two trusted keys share name {v.name} and key id {v.key_id:08x}")
    text = note.text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    for sig in dict.fromkeys(note.signatures):
        trusted = known.get((sig.name, sig.key_id))
        if trusted is None:
            unverified.append(sig)
        elif trusted.verify(text, sig.signature):
            verified.append(sig)
        else:
            raise NoteSignatureInvalid(sig.name, sig.key_id)
    if not verified:
        raise NoteUnverified(
            "no signature on the note is from a trusted key"
            + (f" (it is signed by {', '.join(sorted({s.name for s in unverified}))})" if unverified else "")
        )
    return VerifiedNote(note.text, tuple(verified), tuple(unverified))


def add_signatures(data: bytes | str, signatures: Sequence[NoteSignature]) -> str:
    """``data`` (a signed note) with ``signatures`` appended, skipping lines it already has.

    How a log keeps witness cosignatures: the cosigned checkpoint is the log's note with the
    witnesses' lines added (C2SP tlog-witness: "move the valid signatures to its own view").
    """
    note = parse_note(data)
    merged = tuple(dict.fromkeys((*note.signatures, *signatures)))
    if len(merged) > MAX_SIGNATURES:
        raise NoteMalformed(f"a note carries at most {MAX_SIGNATURES} signatures")
    return Note(note.text, merged).serialize()
