"""Whole-log checkpoints: each signs the entire history of one ledger partition.

An interval checkpoint (:mod:`trust.checkpoints`) says "these N events have this root";
it cannot say that nothing *before* them was removed or rewritten. A whole-log checkpoint
signs the RFC 6962 root over every leaf from sequence 0, so any two of them are either
provably consistent (:func:`trust.merkle.verify_consistency`) or proof that history was
rewritten, and independent witnesses can cosign them (:mod:`trust.tlog_witness`).

Body (C2SP tlog-checkpoint), the text of a C2SP signed note (:mod:`trust.note`)::

    <origin>\\n          lockgate.example/ledger/p3
    <tree size>\\n       decimal, no leading zeros: events 0 .. size - 1
    <root hash>\\n       base64 of the 32-byte RFC 6962 root over those events' hashes

Origin: ``<log name>/p<partition>``. The log name is a schema-less URL naming the
deployment (``LOCKGATE_LOG_NAME``, default :data:`DEFAULT_LOG_NAME` — replace
``lockgate.example`` with a domain you control); each partition is a log of its own,
because each has its own chain and its own tree. The log's note key name *is* the origin
(tlog-checkpoint: the key name SHOULD match the origin), so the Ed25519 processor key
signs partition 3 under the name ``…/p3`` and the partition's verifier key is
``<origin>+<key id>+base64(0x01 || processor public key)`` (:func:`log_verifier`). Lockgate
writes no extension lines and refuses checkpoints of its own log that carry any.

Carriage in the Checkpoint Avro record (``schemas/Checkpoint.avsc``)::

    signature_format = "tlog-checkpoint/v1"     (old records default to "interval/v1")
    checkpoint_id    = "p<partition>@<size>"    deterministic: a re-issue deduplicates
    ledger_partition = the partition in the origin
    first_sequence   = 0
    last_sequence    = size - 1                 (a checkpoint covers at least one event)
    merkle_root      = the root in the body
    head_hash        = hash of event size - 1   (not signed: implied by the root)
    created_at, processor_id                    (not signed: informational)
    key_id           = the processor key's 16-hex id (selects the key in a keyring)
    signature        = the whole signed note, UTF-8: body, blank line, the log's line,
                       then any witness cosignature lines (:mod:`trust.cosignature`)

``created_at`` is not signed, so key expiry judged at it is only as good as the storage;
the witnesses' cosignatures carry signed timestamps instead.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trust.cosignature import CosignatureV1Verifier
from trust.errors import CheckpointError, NoteError, TlogFormatError
from trust.keys import Keyring, PublicKey, SigningKey
from trust.note import (
    Ed25519Signer,
    Ed25519Verifier,
    NoteSignature,
    check_note_text,
    open_note,
    parse_note,
    sign_note,
    valid_key_name,
)

__all__ = [
    "DEFAULT_LOG_NAME",
    "NOTE_FORMAT",
    "CheckpointBody",
    "LogCheckpoint",
    "build_log_checkpoint",
    "check_log_name",
    "log_checkpoint_id",
    "log_signer",
    "log_verifier",
    "open_checkpoint_note",
    "open_log_checkpoint",
    "origin_for",
    "parse_checkpoint_body",
    "parse_origin",
    "verify_log_checkpoint",
]

DEFAULT_LOG_NAME = "lockgate.example/ledger"
NOTE_FORMAT = "tlog-checkpoint/v1"
_HASH_LEN = 32
_ORIGIN = re.compile(r"^(?P<log>.+)/p(?P<partition>0|[1-9][0-9]{0,9})$")
_SIZE = re.compile(r"^(0|[1-9][0-9]*)$")


@dataclass(frozen=True)
class CheckpointBody:
    """The note text of a C2SP checkpoint: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The note text, each line ending in a newline; :class:`TlogFormatError` if the
        fields cannot form one (empty or multi-line origin, negative size, empty extension)."""
        if not self.origin or "\n" in self.origin:
            raise TlogFormatError("a checkpoint origin is one non-empty line")
        if type(self.size) is not int or not 0 <= self.size < 1 << 64:
            raise TlogFormatError(f"a tree size is 0 .. 2^64 - 1, not {self.size!r}")
        if not isinstance(self.root, bytes) or len(self.root) != _HASH_LEN:
            raise TlogFormatError("a root hash is 32 bytes")
        if any(not e or "\n" in e for e in self.extensions):
            raise TlogFormatError("extension lines are non-empty single lines")
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii"), *self.extensions]
        text = "".join(f"{line}\n" for line in lines)
        try:
            check_note_text(text)
        except NoteError as exc:
            raise TlogFormatError(f"not a note text: {exc}") from None
        return text


def parse_checkpoint_body(text: str) -> CheckpointBody:
    """Parse a note text as a C2SP tlog-checkpoint body; :class:`TlogFormatError` if it is not one.

    At least three non-empty lines; size decimal without leading zeros (``0`` alone for the
    empty tree); the root canonical base64 of 32 bytes; every further line non-empty.
    """
    if not text.endswith("\n"):
        raise TlogFormatError("a checkpoint body ends with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise TlogFormatError("a checkpoint body has at least three lines: origin, size, root hash")
    if any(not line for line in lines):
        raise TlogFormatError("checkpoint lines (origin, size, root, extensions) are non-empty")
    origin, size_text, root_text, *extensions = lines
    if not _SIZE.match(size_text) or int(size_text) >= 1 << 64:
        raise TlogFormatError(f"tree size {size_text[:30]!r} is not a decimal without leading zeros")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise TlogFormatError("the root hash line is not base64") from None
    if len(root) != _HASH_LEN or base64.b64encode(root).decode("ascii") != root_text:
        raise TlogFormatError("the root hash line is not canonical base64 of 32 bytes")
    return CheckpointBody(origin, int(size_text), root, tuple(extensions))


def check_log_name(log_name: str) -> str:
    """``log_name`` if ``<log_name>/p0`` is a valid origin and note key name, else ValueError."""
    if not isinstance(log_name, str) or not valid_key_name(f"{log_name}/p0"):
        raise ValueError(f"log name {log_name!r} must be non-empty with no spaces, '+' or control characters")
    return log_name


def origin_for(log_name: str, partition: int) -> str:
    """``<log name>/p<partition>``: the origin line and the log's key name for a partition."""
    if type(partition) is not int or partition < 0:
        raise ValueError(f"a ledger partition is a non-negative integer, not {partition!r}")
    return f"{check_log_name(log_name)}/p{partition}"


def parse_origin(origin: str) -> tuple[str, int] | None:
    """``(log name, partition)`` of a Lockgate origin, or None if it is not one."""
    m = _ORIGIN.match(origin)
    if m is None or not valid_key_name(origin):
        return None
    return m["log"], int(m["partition"])


def log_checkpoint_id(partition: int, size: int) -> str:
    """``p<partition>@<size>``: deterministic, so a checkpoint re-issued after a crash deduplicates."""
    return f"p{partition}@{size}"


def log_signer(origin: str, key: SigningKey) -> Ed25519Signer:
    """The log's note signer for one partition: the processor key under the origin's name."""
    return Ed25519Signer(origin, key)


def log_verifier(origin: str, public_key: PublicKey) -> Ed25519Verifier:
    """The log's verifier key for one partition (vkey ``origin+keyid+base64(0x01||key)``)."""
    return Ed25519Verifier(origin, public_key)


def build_log_checkpoint(
    *,
    partition: int,
    size: int,
    root: bytes,
    head_hash: bytes,
    key: SigningKey,
    processor_id: str,
    now_us: int,
    log_name: str = DEFAULT_LOG_NAME,
    cosignatures: Sequence[NoteSignature] = (),
) -> dict[str, Any]:
    """A Checkpoint record carrying a signed whole-log checkpoint (module docstring).

    The caller vouches that ``root`` is the RFC 6962 root of the partition's first ``size``
    event hashes and ``head_hash`` the last of them (:class:`trust.partition_log.PartitionLog`
    computes both as it appends). ``cosignatures`` are appended after the log's line.
    """
    if type(size) is not int or size < 1:
        raise CheckpointError("a whole-log checkpoint covers at least one event")
    if len(root) != _HASH_LEN or len(head_hash) != _HASH_LEN:
        raise CheckpointError("root and head hash are 32 bytes each")
    origin = origin_for(log_name, partition)
    note = sign_note(CheckpointBody(origin, size, bytes(root)).text(), [log_signer(origin, key)])
    note += "".join(s.line() for s in cosignatures)
    return {
        "checkpoint_id": log_checkpoint_id(partition, size),
        "ledger_partition": partition,
        "first_sequence": 0,
        "last_sequence": size - 1,
        "head_hash": bytes(head_hash),
        "merkle_root": bytes(root),
        "created_at": now_us,
        "processor_id": processor_id,
        "key_id": key.key_id,
        "signature": note.encode("utf-8"),
        "signature_format": NOTE_FORMAT,
    }


@dataclass(frozen=True)
class LogCheckpoint:
    """A whole-log checkpoint record whose note the log's key verified."""

    record: Mapping[str, Any]
    log_name: str
    partition: int
    body: CheckpointBody
    note: str
    unverified: tuple[NoteSignature, ...]
    """Signature lines of keys other than the log's: candidate witness cosignatures."""
    log_signatures: tuple[NoteSignature, ...] = ()
    """The log's own lines that verified: with the body, the note as the log signed it."""

    @property
    def size(self) -> int:
        return self.body.size

    @property
    def root(self) -> bytes:
        return self.body.root

    @property
    def origin(self) -> str:
        return self.body.origin


class _KeyringVerifier:
    """The log's note verifier backed by a keyring entry, expiry judged at ``at_us``."""

    def __init__(self, origin: str, key: PublicKey, keyring: Keyring, at_us: int) -> None:
        self._inner = Ed25519Verifier(origin, key)
        self._keyring = keyring
        self._key_id = key.key_id
        self._at_us = at_us

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def key_id(self) -> int:
        return self._inner.key_id

    def verify(self, text: bytes, signature: bytes) -> bool:
        return self._keyring.verify(self._key_id, text, signature, self._at_us)


def open_log_checkpoint(
    cp: Mapping[str, Any], keys: Keyring | PublicKey, *, log_name: str | None = None
) -> LogCheckpoint:
    """Check a whole-log Checkpoint record; :class:`CheckpointError` says what is wrong.

    Checks, in order: the format field; the note parses and its body is a checkpoint with no
    extension lines; the origin is ``<log name>/p<ledger_partition>`` (and ``log_name``
    when given); ``first_sequence = 0``, ``last_sequence = size - 1``, ``merkle_root`` =
    the body's root, ``checkpoint_id = p<partition>@<size>``; the key ``key_id`` names is
    trusted (not expired at ``created_at``) and signed the note under the origin's name.
    """
    try:
        fmt = cp.get("signature_format")
        note_bytes = cp["signature"]
        partition, first, last = cp["ledger_partition"], cp["first_sequence"], cp["last_sequence"]
        rec_root, head, created, key_id = cp["merkle_root"], cp["head_hash"], cp["created_at"], cp["key_id"]
    except (KeyError, TypeError, AttributeError):
        raise CheckpointError("not a Checkpoint record: fields are missing") from None
    if fmt != NOTE_FORMAT:
        raise CheckpointError(f"signature_format is {fmt!r}, not {NOTE_FORMAT!r}")
    if not isinstance(note_bytes, bytes) or not isinstance(key_id, str) or type(created) is not int:
        raise CheckpointError("signature must be bytes, key_id a string, created_at an integer")
    if type(partition) is not int or type(first) is not int or type(last) is not int:
        raise CheckpointError("ledger_partition, first_sequence and last_sequence must be integers")
    try:
        text = note_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("the signed note is not UTF-8") from None
    key = keys if isinstance(keys, PublicKey) else keys.get(key_id)
    if key is None or key.key_id != key_id:
        raise CheckpointError(f"key {key_id!r} is not a trusted processor key")
    ring = keys if isinstance(keys, Keyring) else Keyring([keys])
    try:
        body = parse_checkpoint_body(parse_note(text).text)
    except (NoteError, TlogFormatError) as exc:
        raise CheckpointError(f"the signature is not a checkpoint note: {exc}") from None
    parsed = parse_origin(body.origin)
    if parsed is None:
        raise CheckpointError(f"origin {body.origin!r} is not '<log name>/p<partition>'")
    if log_name is not None and parsed[0] != log_name:
        raise CheckpointError(f"origin {body.origin!r} is not of log {log_name!r}")
    if body.extensions:
        raise CheckpointError("the checkpoint carries extension lines; Lockgate's log writes none")
    if (parsed[1], 0, body.size - 1) != (partition, first, last):
        raise CheckpointError(
            f"the note's origin and size ({body.origin}, {body.size}) do not match the record "
            f"(partition {partition}, sequences {first}..{last})"
        )
    if rec_root != body.root or not isinstance(head, bytes) or len(head) != _HASH_LEN:
        raise CheckpointError("merkle_root differs from the note's root hash, or head_hash is not 32 bytes")
    if cp.get("checkpoint_id") != log_checkpoint_id(partition, body.size):
        raise CheckpointError(f"checkpoint_id is not {log_checkpoint_id(partition, body.size)!r}")
    verifier = _KeyringVerifier(body.origin, key, ring, created)
    try:
        opened = open_note(text, [verifier])
    except NoteError as exc:
        raise CheckpointError(f"the log's signature does not verify: {exc}") from None
    return LogCheckpoint(cp, parsed[0], partition, body, text, opened.unverified, opened.verified)


def verify_log_checkpoint(
    cp: Mapping[str, Any], keys: Keyring | PublicKey, *, log_name: str | None = None
) -> bool:
    """True iff :func:`open_log_checkpoint` accepts ``cp``. Never raises."""
    try:
        open_log_checkpoint(cp, keys, log_name=log_name)
    except CheckpointError:
        return False
    return True


def open_checkpoint_note(
    note: str,
    public_key: PublicKey,
    *,
    witnesses: Sequence[CosignatureV1Verifier] = (),
    log_name: str | None = None,
) -> CheckpointBody:
    """Check a whole-log checkpoint note on its own (as a proof file carries it).

    The body is a checkpoint with a Lockgate origin (of ``log_name`` when given) and no
    extension lines; the processor key signed it under the origin's name; every witness in
    ``witnesses`` cosigned it. A line of a trusted key (log or witness) that does not
    verify refuses the note. Raises :class:`CheckpointError` saying which check failed.
    """
    try:
        body = parse_checkpoint_body(parse_note(note).text)
    except (NoteError, TlogFormatError) as exc:
        raise CheckpointError(f"not a checkpoint note: {exc}") from None
    parsed = parse_origin(body.origin)
    if parsed is None:
        raise CheckpointError(f"origin {body.origin!r} is not '<log name>/p<partition>'")
    if log_name is not None and parsed[0] != log_name:
        raise CheckpointError(f"origin {body.origin!r} is not of log {log_name!r}")
    if body.extensions:
        raise CheckpointError("the checkpoint carries extension lines; Lockgate's log writes none")
    log = log_verifier(body.origin, public_key)
    try:
        opened = open_note(note, [log, *witnesses])
    except NoteError as exc:
        raise CheckpointError(str(exc)) from None
    signed = {(s.name, s.key_id) for s in opened.verified}
    if (log.name, log.key_id) not in signed:
        raise CheckpointError(f"the log key {log.vkey} did not sign the checkpoint")
    for w in witnesses:
        if (w.name, w.key_id) not in signed:
            raise CheckpointError(f"no cosignature from witness {w.name} ({w.key_id:08x})")
    return body
