"""C2SP tlog-witness ``add-checkpoint``, both sides, with no I/O of its own.

Why witnesses: the processor's key signs whatever the processor is told to sign. A witness
is a separate process with its own key that remembers, per log (origin), the largest
checkpoint it cosigned, and cosigns a new one only with a consistency proof from that
size. A rolled-back or forked history therefore cannot collect its cosignature, and
``lockgate verify --witness-key`` reports a newest checkpoint without one.

Request (``POST <prefix>/add-checkpoint``), every line ending in U+000A::

    old <size the witness last cosigned for this origin, 0 at first>
    <base64 consistency proof hash>          zero to 63 lines, RFC 6962 PROOF(old, new)
    <empty line>
    <the checkpoint: a signed note>

Answers (:func:`add_checkpoint`, checks in this order):

=====  =======================================================================
400    malformed request or checkpoint; or old size > checkpoint size
404    the origin is not a log this witness knows
403    no valid signature of the log's key, or a log-key line that fails
409    old size != the size it last cosigned; body ``<size>\\n``, ``text/x.tlog.size``
422    size 0 without the empty root; a proof with old size 0; equal sizes with another
       root; or the consistency proof does not verify
200    cosignature line(s), ``cosignature/v1`` (:mod:`trust.cosignature`), after the
       witness has durably recorded the new checkpoint as its latest for the origin
=====  =======================================================================

The state update must be atomic with the size check (one request at a time per origin),
or two racing requests could roll the recorded size back; the server
(``witness/``) holds a per-origin lock around :func:`add_checkpoint` and the write.

Client side: :func:`add_checkpoint_body`, :func:`read_add_checkpoint_response`,
:func:`with_cosignatures`, and :func:`submit_checkpoint`, which drives one witness with
an injected ``post`` function and handles a 409 by proving from the size it returns.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trust.cosignature import CosignatureV1Signer, CosignatureV1Verifier
from trust.errors import NoteError, NoteMalformed, NoteSignatureInvalid, TlogFormatError
from trust.merkle import EMPTY_ROOT, verify_consistency
from trust.note import MAX_NOTE_BYTES, Note, NoteSignature, NoteVerifier, add_signatures, open_note, parse_note
from trust.tlog import CheckpointBody, parse_checkpoint_body

__all__ = [
    "MAX_PROOF_LINES",
    "MAX_REQUEST_BYTES",
    "SIZE_CONTENT_TYPE",
    "AddCheckpointRequest",
    "Cosigned",
    "SizeConflict",
    "WitnessRefused",
    "WitnessReply",
    "WitnessedCheckpoint",
    "add_checkpoint",
    "add_checkpoint_body",
    "parse_add_checkpoint",
    "read_add_checkpoint_response",
    "submit_checkpoint",
    "with_cosignatures",
]

MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = MAX_NOTE_BYTES + 64 * 64
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_TEXT = "text/plain; charset=utf-8"
_OLD = re.compile(r"^old (0|[1-9][0-9]*)$")
_SIZE_BODY = re.compile(r"^(0|[1-9][0-9]*)\n$")


@dataclass(frozen=True)
class AddCheckpointRequest:
    """A parsed add-checkpoint request; ``checkpoint`` is the note exactly as sent."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: str
    body: CheckpointBody


@dataclass(frozen=True)
class WitnessedCheckpoint:
    """What a witness remembers per origin: its latest cosigned checkpoint."""

    origin: str
    size: int
    root: bytes
    checkpoint: str
    """The note with the log's verified lines and this witness's cosignature."""
    timestamp: int


@dataclass(frozen=True)
class WitnessReply:
    """An HTTP answer; ``new_state`` is set exactly when the witness cosigned (status 200)."""

    status: int
    body: bytes
    content_type: str = _TEXT
    new_state: WitnessedCheckpoint | None = None


def add_checkpoint_body(old_size: int, proof: Sequence[bytes], checkpoint_note: str) -> bytes:
    """The request body for ``POST /add-checkpoint``."""
    if len(proof) > MAX_PROOF_LINES:
        raise ValueError(f"a consistency proof has at most {MAX_PROOF_LINES} hashes")
    lines = [f"old {old_size}", *(base64.b64encode(h).decode("ascii") for h in proof)]
    return ("".join(f"{line}\n" for line in lines) + "\n" + checkpoint_note).encode("utf-8")


def parse_add_checkpoint(data: bytes) -> AddCheckpointRequest:
    """Parse a request body; :class:`TlogFormatError` (an HTTP 400) names what is wrong."""
    if len(data) > MAX_REQUEST_BYTES:
        raise TlogFormatError(f"a request is at most {MAX_REQUEST_BYTES} bytes")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise TlogFormatError("the request is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise TlogFormatError("the request has an empty line between the proof and the checkpoint")
    lines = head.split("\n")
    m = _OLD.match(lines[0])
    if m is None:
        raise TlogFormatError("the request starts with 'old <size>' (decimal, no leading zeros)")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise TlogFormatError(f"a request carries at most {MAX_PROOF_LINES} proof lines")
    proof = []
    for line in lines[1:]:
        try:
            raw = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise TlogFormatError("a proof line is not base64") from None
        if len(raw) != 32 or base64.b64encode(raw).decode("ascii") != line:
            raise TlogFormatError("a proof line is canonical base64 of a 32-byte hash")
        proof.append(raw)
    try:
        body = parse_checkpoint_body(parse_note(note).text)
    except NoteMalformed as exc:
        raise TlogFormatError(f"the checkpoint is not a signed note: {exc}") from None
    return AddCheckpointRequest(int(m[1]), tuple(proof), note, body)


def add_checkpoint(
    request: AddCheckpointRequest,
    log_keys: Sequence[NoteVerifier] | None,
    latest: WitnessedCheckpoint | None,
    signer: CosignatureV1Signer,
    now_s: int,
) -> WitnessReply:
    """The witness's decision (module docstring's table) for one parsed request.

    ``log_keys`` are the keys trusted for the request's origin (None: unknown origin);
    ``latest`` is the witness's record for the origin. Pure: the caller holds the origin's
    lock, persists ``new_state`` durably, and only then sends the reply.
    """
    body = request.body
    if log_keys is None:
        return WitnessReply(404, f"unknown log origin {body.origin!r}\n".encode())
    try:
        opened = open_note(request.checkpoint, log_keys)
    except NoteError as exc:
        return WitnessReply(403, f"checkpoint not signed by the log: {exc}\n".encode())
    if request.old_size > body.size:
        return WitnessReply(400, f"old size {request.old_size} > checkpoint size {body.size}\n".encode())
    latest_size = latest.size if latest is not None else 0
    if request.old_size != latest_size:
        return WitnessReply(409, f"{latest_size}\n".encode(), SIZE_CONTENT_TYPE)
    if body.size == 0 and body.root != EMPTY_ROOT:
        return WitnessReply(422, b"a checkpoint of size 0 has the empty tree's root\n")
    if request.old_size == 0 and request.proof:
        return WitnessReply(422, b"old size 0 takes an empty consistency proof\n")
    old_root = latest.root if latest is not None and request.old_size > 0 else EMPTY_ROOT
    if not verify_consistency(request.old_size, body.size, old_root, body.root, request.proof):
        what = "a different root at the same size" if request.old_size == body.size else "no valid consistency proof"
        return WitnessReply(422, f"{body.origin}: {what} from size {request.old_size} to {body.size}\n".encode())
    text = opened.text.encode("utf-8")
    cosig = signer.cosign(text, now_s)
    kept = Note(opened.text, (*opened.verified, cosig)).serialize()
    state = WitnessedCheckpoint(body.origin, body.size, body.root, kept, now_s)
    return WitnessReply(200, cosig.line().encode("utf-8"), _TEXT, state)


@dataclass(frozen=True)
class Cosigned:
    """The witness cosigned: its valid ``cosignature/v1`` line(s) and their timestamp."""

    cosignatures: tuple[NoteSignature, ...]
    timestamp: int


@dataclass(frozen=True)
class SizeConflict:
    """409: the witness's latest size for the origin is ``witness_size``; prove from there."""

    witness_size: int


@dataclass(frozen=True)
class WitnessRefused:
    """Anything else: status and the witness's (or our) reason."""

    status: int
    reason: str


WitnessResult = Cosigned | SizeConflict | WitnessRefused


def read_add_checkpoint_response(
    status: int,
    content_type: str | None,
    body: bytes,
    checkpoint_note: str,
    witness: CosignatureV1Verifier,
) -> WitnessResult:
    """Interpret a witness's answer to a request for ``checkpoint_note``. Never raises.

    A 200 counts only if it carries a ``cosignature/v1`` line of ``witness`` that verifies
    over the checkpoint; lines of other keys are ignored (C2SP tlog-witness).
    """
    text = body.decode("utf-8", "replace")
    if status == 409:
        m = _SIZE_BODY.match(text)
        if m is None or (content_type or "").split(";")[0].strip() != SIZE_CONTENT_TYPE:
            return WitnessRefused(409, f"malformed 409 answer: {text[:80]!r}")
        return SizeConflict(int(m[1]))
    if status != 200:
        return WitnessRefused(status, text.strip()[:500])
    try:
        note = parse_note(checkpoint_note)
        opened = open_note(note.text + "\n" + text, [witness])
    except NoteSignatureInvalid:
        return WitnessRefused(200, f"witness {witness.name} answered with a cosignature that does not verify")
    except NoteError as exc:
        return WitnessRefused(200, f"no valid cosignature of witness {witness.name} in the answer: {exc}")
    sigs = tuple(s for s in opened.verified if (s.name, s.key_id) == (witness.name, witness.key_id))
    ts = CosignatureV1Verifier.timestamp(sigs[0].signature) or 0
    return Cosigned(sigs, ts)


def with_cosignatures(record: Mapping[str, Any], cosignatures: Sequence[NoteSignature]) -> dict[str, Any]:
    """A copy of a whole-log Checkpoint record with witness lines added to its note."""
    note = bytes(record["signature"]).decode("utf-8")
    return {**record, "signature": add_signatures(note, cosignatures).encode("utf-8")}


def submit_checkpoint(
    post: Callable[[bytes], tuple[int, str | None, bytes]],
    checkpoint_note: str,
    old_size: int,
    proof_from: Callable[[int], Sequence[bytes]],
    witness: CosignatureV1Verifier,
) -> tuple[WitnessResult, int | None]:
    """Ask one witness to cosign; returns the result and the size the witness now holds.

    ``post(body) -> (status, content type, body)`` does the HTTP POST to
    ``<prefix>/add-checkpoint`` (the only I/O, the caller's); ``old_size`` is the size the
    caller believes the witness holds; ``proof_from(size)`` gives the consistency proof
    from ``size`` to the checkpoint (:meth:`trust.partition_log.PartitionLog.consistency_proof`).
    On a 409 it retries once from the size the witness names. The returned size is the
    checkpoint's on success, the witness's on a conflict, else None (unknown).
    ``proof_from`` may raise :class:`~trust.errors.ProofError` (a size it cannot prove from).
    """
    size = parse_checkpoint_body(parse_note(checkpoint_note).text).size
    result: WitnessResult = WitnessRefused(0, "not sent")
    for _ in range(2):
        proof = list(proof_from(old_size)) if old_size <= size else []  # larger: the witness refuses
        req = add_checkpoint_body(old_size, proof, checkpoint_note)
        status, ctype, answer = post(req)
        result = read_add_checkpoint_response(status, ctype, answer, checkpoint_note, witness)
        if not isinstance(result, SizeConflict):
            break
        if result.witness_size > size:
            return result, result.witness_size  # the witness has seen more: a rollback or fork
        old_size = result.witness_size
    if isinstance(result, Cosigned):
        return result, size
    if isinstance(result, SizeConflict):
        return result, result.witness_size
    return result, None
