"""Signed checkpoints of a ledger partition's chain: the record, in either signature format.

A Checkpoint record says which way it is signed in ``signature_format``:

* ``"tlog-checkpoint/v1"`` — a whole-log checkpoint, a C2SP signed note over the root of
  every event of the partition (:mod:`trust.tlog`, what the ledger writer now issues);
* ``"interval/v1"`` — the original interval checkpoint, below. Records written before the
  field existed decode with this default, and :func:`verify_checkpoint` keeps verifying
  them exactly as they were signed: over the ten v1 fields, without ``signature_format``.

:func:`check_checkpoint` (raising, with the reason) and :func:`verify_checkpoint` (a bool)
accept both; everything else in trust reads through them.

An interval Checkpoint (``schemas/Checkpoint.avsc``) states, under the processor's Ed25519 key:
"events ``first_sequence .. last_sequence`` of partition ``ledger_partition`` have Merkle
root ``merkle_root`` (RFC 6962, leaves = the events' 32-byte ``hash`` values in sequence
order, see :mod:`trust.merkle`) and the chain head after them is ``head_hash`` (the
``hash`` of event ``last_sequence``)". The signature is Ed25519 over
``signing_payload(checkpoint, "signature", b"")`` (``docs/CONTRACTS.md``); ``key_id`` is
inside the signed bytes.

Why both a root and a head: the head pins the chain (anyone re-hashing history after the
checkpoint changes it), the root lets one event be proven with ``log2(n)`` hashes
(:mod:`trust.proofs`) without shipping the interval.

:func:`build_checkpoint` only signs what it has checked: the events must be one
partition, contiguous, each hash must recompute and link to the previous one. A signer
that attests to a broken chain would make the signature worthless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trust.chain import ChainError, event_hash
from trust.errors import CheckpointError
from trust.keys import Keyring, PublicKey, SigningKey
from trust.merkle import merkle_root
from trust.signatures import sign_record, verify_record
from trust.tlog import NOTE_FORMAT, open_log_checkpoint

__all__ = [
    "INTERVAL_FIELDS",
    "INTERVAL_FORMAT",
    "NOTE_FORMAT",
    "CheckpointError",
    "build_checkpoint",
    "check_checkpoint",
    "checkpoint_format",
    "checkpoint_id_for",
    "verify_checkpoint",
]

HASH_LEN = 32
INTERVAL_FORMAT = "interval/v1"
INTERVAL_FIELDS = (
    "checkpoint_id", "ledger_partition", "first_sequence", "last_sequence", "head_hash",
    "merkle_root", "created_at", "processor_id", "key_id", "signature",
)
"""The fields an interval signature covers: the Checkpoint schema as released in v1."""


def checkpoint_format(checkpoint: Mapping[str, Any]) -> str:
    """The record's ``signature_format``; a record without the field is an interval one."""
    fmt = checkpoint.get("signature_format", INTERVAL_FORMAT)
    return fmt if isinstance(fmt, str) else ""


def checkpoint_id_for(partition: int, first_sequence: int, last_sequence: int) -> str:
    """Deterministic id, so a checkpoint re-issued after a crash deduplicates in storage."""
    return f"p{partition}:{first_sequence}-{last_sequence}"


def build_checkpoint(
    events: Sequence[Mapping[str, Any]],
    key: SigningKey,
    processor_id: str,
    now_us: int,
    *,
    prev_head: bytes | None = None,
    checkpoint_id: str | None = None,
) -> dict[str, Any]:
    """Sign a checkpoint over ``events`` (chained, one partition, contiguous, in order).

    ``prev_head``, if given, must be the hash the first event links to (the previous
    checkpoint's ``head_hash``, or GENESIS at sequence 0). Raises :class:`CheckpointError`
    when the events are empty, mixed, out of order, or do not chain.
    """
    if not events:
        raise CheckpointError("a checkpoint needs at least one event")
    first = events[0]
    partition = first["ledger_partition"]
    first_seq = first["sequence"]
    expected_prev = prev_head if prev_head is not None else first["prev_hash"]
    hashes: list[bytes] = []
    for offset, ev in enumerate(events):
        if ev["ledger_partition"] != partition:
            raise CheckpointError(
                f"events of partitions {partition} and {ev['ledger_partition']} mixed; "
                "a checkpoint covers one partition"
            )
        if ev["sequence"] != first_seq + offset:
            raise CheckpointError(
                f"expected sequence {first_seq + offset}, got {ev['sequence']}: the events must "
                "be contiguous and in sequence order"
            )
        try:
            digest = event_hash(ev)
        except ChainError as exc:
            raise CheckpointError(f"event at sequence {ev['sequence']}: {exc}") from exc
        if digest != ev["hash"]:
            raise CheckpointError(f"event at sequence {ev['sequence']}: stored hash does not recompute")
        if ev["prev_hash"] != expected_prev:
            raise CheckpointError(
                f"event at sequence {ev['sequence']} does not link to the previous hash; "
                "refusing to sign a broken chain"
            )
        hashes.append(digest)
        expected_prev = digest
    last_seq = first_seq + len(events) - 1
    unsigned: dict[str, Any] = {
        "checkpoint_id": checkpoint_id or checkpoint_id_for(partition, first_seq, last_seq),
        "ledger_partition": partition,
        "first_sequence": first_seq,
        "last_sequence": last_seq,
        "head_hash": hashes[-1],
        "merkle_root": merkle_root(hashes),
        "created_at": now_us,
        "processor_id": processor_id,
        "key_id": key.key_id,
        "signature": b"",
    }
    return sign_record(unsigned, "signature", b"", key)


def check_checkpoint(
    checkpoint: Mapping[str, Any], keys: Keyring | PublicKey, *, log_name: str | None = None
) -> None:
    """Return if the checkpoint is well-formed and signed by a key in ``keys``, in its format;
    else raise :class:`CheckpointError` naming the first check that failed (unknown format,
    malformed fields, a key that is not trusted, a signature that does not verify).

    Key expiry is judged at the checkpoint's ``created_at``. This checks the signature
    and shape only; whether the stored events match it is :mod:`trust.verify`'s job.
    ``log_name``, when given, is the log a whole-log checkpoint's origin must name.
    Whole-log checkpoints are opened by :func:`trust.tlog.open_log_checkpoint`.
    """
    fmt = checkpoint_format(checkpoint)
    if fmt == NOTE_FORMAT:
        open_log_checkpoint(checkpoint, keys, log_name=log_name)
        return
    if fmt != INTERVAL_FORMAT:
        raise CheckpointError(f"signature_format {fmt!r} is neither {NOTE_FORMAT!r} nor {INTERVAL_FORMAT!r}")
    try:
        first = checkpoint["first_sequence"]
        last = checkpoint["last_sequence"]
        head = checkpoint["head_hash"]
        root = checkpoint["merkle_root"]
        created = checkpoint["created_at"]
        signed = {name: checkpoint[name] for name in INTERVAL_FIELDS}
    except (KeyError, TypeError):
        raise CheckpointError("not a Checkpoint record: fields are missing") from None
    if type(first) is not int or type(last) is not int or not 0 <= first <= last:
        raise CheckpointError(f"sequences {first!r}..{last!r} are not an interval of integers from 0")
    if not isinstance(head, bytes) or len(head) != HASH_LEN or not isinstance(root, bytes) or len(root) != HASH_LEN:
        raise CheckpointError("head_hash and merkle_root must be 32 bytes each")
    if type(created) is not int:
        raise CheckpointError("created_at must be an integer")
    key_id = signed["key_id"]
    if not isinstance(key_id, str) or (key_id != keys.key_id if isinstance(keys, PublicKey) else key_id not in keys):
        raise CheckpointError(f"key {key_id!r} is not a trusted processor key")
    if not verify_record(signed, "signature", b"", keys, at_us=created):
        raise CheckpointError(f"the interval signature of key {key_id!r} does not verify "
                              "(the record was altered, or the key had expired at created_at)")


def verify_checkpoint(
    checkpoint: Mapping[str, Any], keys: Keyring | PublicKey, *, log_name: str | None = None
) -> bool:
    """True iff :func:`check_checkpoint` accepts the checkpoint. Never raises."""
    try:
        check_checkpoint(checkpoint, keys, log_name=log_name)
    except CheckpointError:
        return False
    return True
