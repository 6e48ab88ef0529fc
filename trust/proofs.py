"""Portable inclusion proofs: one audit event, proven against a signed checkpoint.

A proof lets someone holding only the processor's public key check that one event is in
the ledger exactly as shown, without access to ClickHouse. An auditor can re-implement
:func:`verify_proof` from this docstring.

Version 2 proves an event against a whole-log checkpoint (:mod:`trust.tlog`); version 1
against a legacy interval checkpoint. :func:`build_proof` writes the version the
checkpoint calls for and :func:`verify_proof` reads both.

Version 2 (JSON object; exactly these keys)::

    {
      "format": "lockgate.inclusion-proof",
      "version": 2,
      "event": {...},            # the AuditEvent, all 12 fields, as in version 1
      "tlog_proof": "c2sp.org/tlog-proof@v1\nindex 17\n<base64 hash>\n...\n\n<checkpoint note>"
    }

``tlog_proof`` is a C2SP tlog-proof (:mod:`trust.tlog_proof`): the leaf index is the
event's ``sequence``, the audit path leads from leaf data ``event.hash`` to the root of the
whole partition at the checkpoint's size, and the checkpoint is the signed note verbatim,
witness cosignatures included. Verification, in order:

1. format, version, exactly the keys above; the event has exactly its schema's fields.
2. event hash (as below) equals ``event.hash``.
3. the tlog-proof parses; the checkpoint body's origin is ``<log name>/p<partition>`` with
   the event's ``ledger_partition`` (and the expected log name, when one is given).
4. the note carries a valid signature of the processor key under the origin's name
   (C2SP signed-note; verifier key ``origin+keyid+base64(0x01||key)``), and a valid
   ``cosignature/v1`` of every witness the verifier requires.
5. ``index = event.sequence < size`` and the RFC 9162 §2.1.3.2 inclusion check of
   ``event.hash`` against the checkpoint's root holds.

Version 1 (JSON object; every key required, no others allowed)::

    {
      "format": "lockgate.inclusion-proof",
      "version": 1,
      "event": {...},            # the AuditEvent, all 12 fields
      "leaf_index": 17,          # event.sequence - checkpoint.first_sequence
      "tree_size": 64,           # checkpoint.last_sequence - first_sequence + 1
      "audit_path": ["<64 lowercase hex>", ...],   # RFC 6962 PATH, leaf level first
      "checkpoint": {...},       # the Checkpoint, all 10 fields
      "key_id": "<16 hex>"       # the processor key that signed the checkpoint
    }

Records are written in the canonical form's JSON shape (``trust.canonical``): bytes
values as ``{"$b64": "<standard base64>"}``, integers as integers. Encodings must be
canonical — padded standard base64, lowercase hex — so that every change to the text of
a proof is a change to what it says (an uppercase hex digit would otherwise be a second
spelling of the same proof).

Verification, in order (the first failing step is the reason given):

1. format and version; exactly the keys above; both records have exactly their schema's
   fields with the right JSON types; encodings canonical.
2. event hash: ``SHA-256(canonical_bytes(event minus hash, prev_hash) || prev_hash)``
   (``trust.chain``) must equal ``event.hash``.
3. ``key_id`` equals ``checkpoint.key_id`` and the given public key's id; the checkpoint's
   Ed25519 signature over ``signing_payload(checkpoint, "signature", b"")`` verifies.
4. the event is in the checkpoint's interval: same ``ledger_partition``,
   ``leaf_index = sequence - first_sequence``, ``tree_size = last - first + 1``.
5. RFC 9162 §2.1.3.2 inclusion of leaf data ``event.hash`` at ``leaf_index`` in a tree of
   ``tree_size`` with root ``checkpoint.merkle_root``; and, for the last leaf, the event
   hash equals ``checkpoint.head_hash``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from schemas.records import field_types
from trust.chain import ChainError, event_hash
from trust.checkpoints import INTERVAL_FIELDS, checkpoint_format, verify_checkpoint
from trust.cosignature import CosignatureV1Verifier
from trust.errors import CheckpointError, ProofError, TlogFormatError
from trust.keys import PublicKey
from trust.merkle import inclusion_proof, merkle_root, verify_inclusion
from trust.tlog import NOTE_FORMAT, open_checkpoint_note, parse_origin
from trust.tlog_proof import format_tlog_proof, parse_tlog_proof

__all__ = ["PROOF_FORMAT", "PROOF_VERSION", "ProofError", "build_proof", "verify_proof"]

PROOF_FORMAT = "lockgate.inclusion-proof"
PROOF_VERSION = 2
_PROOF_KEYS = frozenset(
    {"format", "version", "event", "leaf_index", "tree_size", "audit_path", "checkpoint", "key_id"}
)
_PROOF_V2_KEYS = frozenset({"format", "version", "event", "tlog_proof"})
_EVENT_TYPES = field_types("AuditEvent")
_CHECKPOINT_TYPES = {name: t for name, t in field_types("Checkpoint").items() if name in INTERVAL_FIELDS}



def _record_to_json(record: Mapping[str, Any], types: Mapping[str, tuple[type, ...]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in types:
        value = record[name]
        if isinstance(value, bytes | bytearray | memoryview):
            out[name] = {"$b64": base64.b64encode(bytes(value)).decode("ascii")}
        else:
            out[name] = value
    return out


class _BadProofError(Exception):
    """Internal: the proof's text is not a well-formed version-1 proof."""


def _record_from_json(data: Any, types: Mapping[str, tuple[type, ...]], what: str) -> dict[str, Any]:
    if not isinstance(data, dict) or set(data) != set(types):
        raise _BadProofError(f"{what} must have exactly the fields {', '.join(sorted(types))}")
    out: dict[str, Any] = {}
    for name, allowed in types.items():
        value = data[name]
        if bytes in allowed:
            if not isinstance(value, dict) or set(value) != {"$b64"} or not isinstance(value["$b64"], str):
                raise _BadProofError(f'{what}.{name} must be {{"$b64": ...}}')
            try:
                raw = base64.b64decode(value["$b64"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _BadProofError(f"{what}.{name} is not base64") from exc
            if base64.b64encode(raw).decode("ascii") != value["$b64"]:
                raise _BadProofError(f"{what}.{name} is not canonical base64")
            out[name] = raw
        else:
            if type(value) not in allowed:  # type(), not isinstance: True is not an int here
                raise _BadProofError(f"{what}.{name} has the wrong type ({type(value).__name__})")
            out[name] = value
    return out


def build_proof(
    event: Mapping[str, Any],
    interval_events: Sequence[Mapping[str, Any]],
    checkpoint: Mapping[str, Any],
) -> dict[str, Any]:
    """A JSON-serializable proof that ``event`` is covered by ``checkpoint``.

    ``interval_events`` are the stored events ``first_sequence..last_sequence`` of the
    checkpoint's partition (any order) — for a whole-log checkpoint, every event from 0 to
    its size - 1. Raises :class:`ProofError` if they are incomplete or do not reproduce
    the checkpoint's Merkle root, or ``event`` is not among them — a proof that could not
    verify is never handed out. A whole-log checkpoint gives a version 2 proof, an
    interval one version 1.
    """
    part = checkpoint["ledger_partition"]
    first, last = checkpoint["first_sequence"], checkpoint["last_sequence"]
    by_seq = {e["sequence"]: e for e in interval_events if e["ledger_partition"] == part}
    missing = [s for s in range(first, last + 1) if s not in by_seq]
    if missing:
        raise ProofError(
            f"interval {first}..{last} of partition {part} lacks sequence {missing[0]}"
            f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}"
        )
    leaves = [bytes(by_seq[s]["hash"]) for s in range(first, last + 1)]
    if merkle_root(leaves) != checkpoint["merkle_root"]:
        raise ProofError(
            f"the stored events {first}..{last} do not reproduce checkpoint "
            f"{checkpoint['checkpoint_id']!r}'s Merkle root; run `lockgate verify`"
        )
    seq = event["sequence"]
    if event["ledger_partition"] != part or not first <= seq <= last:
        raise ProofError(
            f"event {event['event_id']!r} (partition {event['ledger_partition']}, sequence "
            f"{seq}) is not in checkpoint {checkpoint['checkpoint_id']!r}"
        )
    if bytes(by_seq[seq]["hash"]) != bytes(event["hash"]):
        raise ProofError(f"event {event['event_id']!r} differs from the stored event {seq}")
    try:
        if event_hash(event) != bytes(event["hash"]):
            raise ProofError(f"event {event['event_id']!r} does not hash to its stored hash")
    except ChainError as exc:
        raise ProofError(f"event {event['event_id']!r} cannot be hashed: {exc}") from exc
    index = seq - first
    if checkpoint_format(checkpoint) == NOTE_FORMAT:
        return {
            "format": PROOF_FORMAT,
            "version": 2,
            "event": _record_to_json(event, _EVENT_TYPES),
            "tlog_proof": format_tlog_proof(
                index, inclusion_proof(leaves, index), bytes(checkpoint["signature"]).decode("utf-8")
            ),
        }
    return {
        "format": PROOF_FORMAT,
        "version": 1,
        "event": _record_to_json(event, _EVENT_TYPES),
        "leaf_index": index,
        "tree_size": last - first + 1,
        "audit_path": [h.hex() for h in inclusion_proof(leaves, index)],
        "checkpoint": _record_to_json(checkpoint, _CHECKPOINT_TYPES),
        "key_id": checkpoint["key_id"],
    }


def verify_proof(
    proof: Mapping[str, Any],
    public_key: PublicKey,
    *,
    witnesses: Sequence[CosignatureV1Verifier] = (),
    log_name: str | None = None,
) -> tuple[bool, str]:
    """Check a proof with the processor's public key: ``(ok, reason)``. Never raises.

    For a version 2 proof, ``witnesses`` must each have cosigned the checkpoint and
    ``log_name`` (when given) is the log its origin must name. A version 1 proof (interval
    checkpoint) has no witnesses: requiring any fails it.
    """
    try:
        if isinstance(proof, Mapping) and proof.get("version") == 2 and proof.get("format") == PROOF_FORMAT:
            return _verify_v2(proof, public_key, witnesses, log_name)
        if witnesses:
            return False, "a version 1 proof (interval checkpoint) carries no witness cosignatures"
        return _verify(proof, public_key)
    except _BadProofError as exc:
        return False, f"malformed proof: {exc}"
    except Exception as exc:  # a verifier answers, whatever it is fed
        return False, f"malformed proof: {type(exc).__name__}: {exc}"


def _verify(proof: Mapping[str, Any], public_key: PublicKey) -> tuple[bool, str]:
    if not isinstance(proof, Mapping):
        raise _BadProofError("a proof is a JSON object")
    if proof.get("format") != PROOF_FORMAT or type(proof.get("version")) is not int:
        raise _BadProofError(f"not a {PROOF_FORMAT} document")
    if proof["version"] != 1:
        return (
            False,
            f"unsupported proof version {proof['version']}; this build reads 1 and {PROOF_VERSION}",
        )
    if set(proof) != _PROOF_KEYS:
        raise _BadProofError(f"a proof has exactly the keys {', '.join(sorted(_PROOF_KEYS))}")
    event = _record_from_json(proof["event"], _EVENT_TYPES, "event")
    cp = _record_from_json(proof["checkpoint"], _CHECKPOINT_TYPES, "checkpoint")
    index, size, key_id = proof["leaf_index"], proof["tree_size"], proof["key_id"]
    if type(index) is not int or type(size) is not int or not isinstance(key_id, str):
        raise _BadProofError("leaf_index and tree_size are integers, key_id a string")
    path_hex = proof["audit_path"]
    if not isinstance(path_hex, list) or not all(isinstance(h, str) for h in path_hex):
        raise _BadProofError("audit_path is a list of hex strings")
    path: list[bytes] = []
    for h in path_hex:
        try:
            raw = bytes.fromhex(h)
        except ValueError:
            raise _BadProofError("audit_path holds a non-hex entry") from None
        if raw.hex() != h or len(raw) != 32:
            raise _BadProofError("audit_path entries are 64 lowercase hex digits")
        path.append(raw)

    try:
        recomputed = event_hash(event)
    except ChainError as exc:
        return False, f"event record cannot be hashed: {exc}"
    if recomputed != event["hash"]:
        return False, (
            "event record altered: its content does not hash to its recorded hash "
            f"({recomputed.hex()[:16]}… vs {event['hash'].hex()[:16]}…)"
        )
    if key_id != cp["key_id"] or key_id != public_key.key_id:
        return False, (
            f"key mismatch: proof names key {key_id}, checkpoint {cp['key_id']}, "
            f"the given public key is {public_key.key_id}"
        )
    if not verify_checkpoint(cp, public_key):
        return False, f"checkpoint {cp['checkpoint_id']!r} signature does not verify"
    if event["ledger_partition"] != cp["ledger_partition"]:
        return False, "event and checkpoint are of different ledger partitions"
    if not cp["first_sequence"] <= event["sequence"] <= cp["last_sequence"]:
        return False, (
            f"event sequence {event['sequence']} is outside the checkpoint's interval "
            f"{cp['first_sequence']}..{cp['last_sequence']}"
        )
    if index != event["sequence"] - cp["first_sequence"]:
        return False, f"leaf_index {index} does not match the event's place in the interval"
    if size != cp["last_sequence"] - cp["first_sequence"] + 1:
        return False, f"tree_size {size} does not match the checkpoint's interval"
    if not verify_inclusion(recomputed, index, size, path, cp["merkle_root"]):
        return False, "audit path does not lead from the event hash to the checkpoint's Merkle root"
    if index == size - 1 and recomputed != cp["head_hash"]:
        return False, "the event is the interval's last but is not the checkpoint's head hash"
    return True, (
        f"event {event['event_id']} is entry {index} of {size} (partition "
        f"{event['ledger_partition']}, sequence {event['sequence']}) under checkpoint "
        f"{cp['checkpoint_id']} signed by key {key_id}"
    )


def _verify_v2(
    proof: Mapping[str, Any],
    public_key: PublicKey,
    witnesses: Sequence[CosignatureV1Verifier],
    log_name: str | None,
) -> tuple[bool, str]:
    if set(proof) != _PROOF_V2_KEYS:
        raise _BadProofError(f"a version 2 proof has exactly the keys {', '.join(sorted(_PROOF_V2_KEYS))}")
    event = _record_from_json(proof["event"], _EVENT_TYPES, "event")
    if not isinstance(proof["tlog_proof"], str):
        raise _BadProofError("tlog_proof is a string")
    try:
        recomputed = event_hash(event)
    except ChainError as exc:
        return False, f"event record cannot be hashed: {exc}"
    if recomputed != event["hash"]:
        return False, "event record altered: its content does not hash to its recorded hash"
    try:
        tp = parse_tlog_proof(proof["tlog_proof"])
    except TlogFormatError as exc:
        raise _BadProofError(f"tlog_proof: {exc}") from None
    try:
        body = open_checkpoint_note(tp.checkpoint, public_key, witnesses=witnesses, log_name=log_name)
    except CheckpointError as exc:
        return False, f"checkpoint: {exc}"
    origin = parse_origin(body.origin)
    if origin is None or origin[1] != event["ledger_partition"]:
        return False, f"the checkpoint's origin {body.origin!r} is not of partition {event['ledger_partition']}"
    if tp.index != event["sequence"] or not tp.index < body.size:
        return False, (
            f"index {tp.index} is not the event's sequence {event['sequence']} inside a tree of {body.size}"
        )
    if not verify_inclusion(recomputed, tp.index, body.size, tp.path, body.root):
        return False, "audit path does not lead from the event hash to the checkpoint's root"
    cosigned = f", cosigned by {', '.join(w.name for w in witnesses)}" if witnesses else ""
    return True, (
        f"event {event['event_id']} is entry {tp.index} of {body.size} in log {body.origin}"
        f"{cosigned}"
    )
