"""Checkpoint verification: signatures, then the stored chain against each valid checkpoint.

Decision table in :mod:`trust.verify` (the package docstring).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from trust.checkpoints import verify_checkpoint
from trust.keys import Keyring
from trust.merkle import merkle_root
from trust.verify.findings import Finding, FindingKind, PartitionState

__all__ = ["signed_checkpoints", "verify_checkpoints"]

Valid = dict[int, list[Mapping[str, Any]]]
"""Validly signed checkpoints by ledger partition."""


def signed_checkpoints(checkpoints: Iterable[Mapping[str, Any]], keyring: Keyring) -> tuple[Valid, list[Finding]]:
    """The validly signed checkpoints by partition, and a ``forged_checkpoint`` for each other one.

    Each checkpoint is verified once; a byte-identical copy (same id and signature) is one.
    """
    findings: list[Finding] = []
    valid: Valid = {}
    seen_ids: set[Any] = set()
    for cp in checkpoints:
        ident = (cp.get("checkpoint_id"), cp.get("signature"))
        if ident in seen_ids:
            continue
        seen_ids.add(ident)
        part = cp.get("ledger_partition")
        first = cp.get("first_sequence")
        cp_id = cp.get("checkpoint_id")
        if not verify_checkpoint(cp, keyring) or type(part) is not int:
            findings.append(
                Finding(
                    FindingKind.FORGED_CHECKPOINT,
                    part if type(part) is int else None,
                    first if type(first) is int else None,
                    None,
                    f"checkpoint {cp_id!r} is not validly signed by a processor key "
                    f"(key_id {cp.get('key_id')!r}): forged, altered, or signed by an "
                    "unknown or expired key",
                    checkpoint_id=cp_id if isinstance(cp_id, str) else None,
                )
            )
            continue
        valid.setdefault(part, []).append(cp)
    return valid, findings


def verify_checkpoints(
    checkpoints: Iterable[Mapping[str, Any]],
    states: Mapping[int, PartitionState],
    keyring: Keyring,
    *,
    signed: tuple[Valid, list[Finding]] | None = None,
) -> list[Finding]:
    """Check checkpoint signatures, then the stored chain against each valid checkpoint.

    ``signed``: the result of :func:`signed_checkpoints` when the caller already has it.
    """
    valid, forged = signed if signed is not None else signed_checkpoints(checkpoints, keyring)
    findings = list(forged)
    for part, cps in valid.items():
        cps.sort(key=lambda c: (c["last_sequence"], c["created_at"]))
        state = states.get(part)
        head_seq = state.head_sequence if state is not None else None
        newest = cps[-1]
        for cp in cps:
            first, last, cp_id = cp["first_sequence"], cp["last_sequence"], cp["checkpoint_id"]
            is_newest = cp is newest
            if state is None or head_seq is None or last > head_seq:
                if is_newest:
                    findings.append(
                        Finding(
                            FindingKind.TRUNCATED_TAIL,
                            part,
                            0 if head_seq is None else head_seq + 1,
                            None,
                            f"signed checkpoint {cp_id!r} attests sequence {last}, but the "
                            + (
                                "partition has no stored records"
                                if head_seq is None
                                else f"stored chain ends at {head_seq}"
                            )
                            + ": the tail was deleted",
                            checkpoint_id=cp_id,
                        )
                    )
                continue
            hashes = state.hashes(first, last)
            if hashes is None:
                continue  # a gap inside the interval: already a deleted_record
            head_ok = hashes[-1] == cp["head_hash"]
            root_ok = merkle_root(hashes) == cp["merkle_root"]
            if head_ok and root_ok:
                continue
            first_row = state.row_at(first)
            if is_newest and not head_ok:
                head_row = state.row_at(last)
                findings.append(
                    Finding(
                        FindingKind.TRUNCATED_TAIL,
                        part,
                        last,
                        head_row.get("event_id") if head_row is not None else None,
                        f"the stored record {last} differs from the head hash in the newest "
                        f"signed checkpoint {cp_id!r}: the tail was cut and re-appended",
                        checkpoint_id=cp_id,
                    )
                )
                continue
            findings.append(
                Finding(
                    FindingKind.ALTERED_CHECKPOINT,
                    part,
                    first,
                    first_row.get("event_id") if first_row is not None else None,
                    f"records {first}..{last} disagree with signed checkpoint {cp_id!r} "
                    f"({'merkle root' if not root_ok else 'head hash'} differs): history "
                    "was re-hashed after it was checkpointed; a Merkle root cannot say which "
                    "record in the interval changed first",
                    checkpoint_id=cp_id,
                )
            )
    findings.sort(key=Finding.sort_key)
    return findings

