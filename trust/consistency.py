"""Consistency proof files: the newer whole-log checkpoint provably extends the older one.

Why: an auditor who kept a checkpoint (size ``m``) can later be shown that the current
checkpoint (size ``n``) contains those same ``m`` events unchanged, with ``log2 n`` hashes
and no access to the ledger. A log that deleted, reordered or rewrote anything before
``m`` cannot produce such a proof (that would take a SHA-256 collision).

Format (JSON object; exactly these keys)::

    {
      "format": "lockgate.consistency-proof",
      "version": 1,
      "old_checkpoint": "<signed note, as stored>",
      "new_checkpoint": "<signed note, as stored>",
      "proof": ["<base64 hash>", ...]        # RFC 6962 PROOF(m, D[n]), canonical base64
    }

Verification (:func:`verify_consistency_file`), in order:

1. format, version, keys; the proof is a list of canonical base64 strings of 32 bytes.
2. both checkpoints are whole-log checkpoint notes signed by the processor key under
   their origin (:func:`trust.tlog.open_checkpoint_note`) and have the same origin; the
   new one carries a valid cosignature of every witness the verifier requires.
3. ``m <= n`` and RFC 9162 §2.1.4.2 verifies the proof from ``(m, old root)`` to
   ``(n, new root)`` (:func:`trust.merkle.verify_consistency`).

Compare ``old_checkpoint`` with the copy you kept: the file proves consistency with the
checkpoint it carries, not with one it does not.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from trust.checkpoints import checkpoint_format
from trust.cosignature import CosignatureV1Verifier
from trust.errors import CheckpointError, ProofError
from trust.frontier import CompactRange
from trust.keys import PublicKey
from trust.merkle import verify_consistency
from trust.tlog import NOTE_FORMAT, open_checkpoint_note

__all__ = ["CONSISTENCY_FORMAT", "CONSISTENCY_VERSION", "build_consistency_file", "verify_consistency_file"]

CONSISTENCY_FORMAT = "lockgate.consistency-proof"
CONSISTENCY_VERSION = 1
_KEYS = frozenset({"format", "version", "old_checkpoint", "new_checkpoint", "proof"})


def build_consistency_file(
    leaves: Sequence[bytes], old: Mapping[str, Any], new: Mapping[str, Any]
) -> dict[str, Any]:
    """A consistency proof file between two whole-log Checkpoint records of one partition.

    ``leaves`` are the partition's event hashes from sequence 0, at least up to the new
    checkpoint's size. Raises :class:`ProofError` unless both records are whole-log
    checkpoints of the same partition, ``old`` is not larger, and the leaves reproduce both
    roots — a proof that could not verify is never handed out.
    """
    for cp in (old, new):
        if checkpoint_format(cp) != NOTE_FORMAT:
            raise ProofError(f"checkpoint {cp.get('checkpoint_id')!r} is an interval checkpoint; "
                             "consistency needs whole-log checkpoints")
    if old["ledger_partition"] != new["ledger_partition"]:
        raise ProofError("the two checkpoints are of different partitions")
    m, n = old["last_sequence"] + 1, new["last_sequence"] + 1
    if m > n:
        raise ProofError(f"the old checkpoint ({m} events) is larger than the new one ({n})")
    if len(leaves) < n:
        raise ProofError(f"only {len(leaves)} stored events; the new checkpoint covers {n}")
    tree = CompactRange()
    for leaf in leaves[:m]:
        tree.append(leaf)
    if tree.root() != old["merkle_root"]:
        raise ProofError(f"the stored events 0..{m - 1} do not reproduce checkpoint "
                         f"{old['checkpoint_id']!r}'s root; run `lockgate verify`")
    proof = tree.consistency_proof(leaves[m:n])
    for leaf in leaves[m:n]:
        tree.append(leaf)
    if tree.root() != new["merkle_root"]:
        raise ProofError(f"the stored events 0..{n - 1} do not reproduce checkpoint "
                         f"{new['checkpoint_id']!r}'s root; run `lockgate verify`")
    return {
        "format": CONSISTENCY_FORMAT,
        "version": CONSISTENCY_VERSION,
        "old_checkpoint": bytes(old["signature"]).decode("utf-8"),
        "new_checkpoint": bytes(new["signature"]).decode("utf-8"),
        "proof": [base64.b64encode(h).decode("ascii") for h in proof],
    }


def _hashes(items: Any) -> list[bytes] | None:
    if not isinstance(items, list) or not all(isinstance(h, str) for h in items):
        return None
    out = []
    for h in items:
        try:
            raw = base64.b64decode(h, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != 32 or base64.b64encode(raw).decode("ascii") != h:
            return None
        out.append(raw)
    return out


def verify_consistency_file(
    doc: Mapping[str, Any],
    public_key: PublicKey,
    *,
    witnesses: Sequence[CosignatureV1Verifier] = (),
    log_name: str | None = None,
) -> tuple[bool, str]:
    """Check a consistency proof file offline (module docstring): ``(ok, reason)``. Never raises."""
    try:
        return _verify(doc, public_key, witnesses, log_name)
    except Exception as exc:  # a verifier answers, whatever it is fed
        return False, f"malformed consistency proof: {type(exc).__name__}: {exc}"


def _verify(
    doc: Mapping[str, Any],
    public_key: PublicKey,
    witnesses: Sequence[CosignatureV1Verifier],
    log_name: str | None,
) -> tuple[bool, str]:
    if not isinstance(doc, Mapping) or doc.get("format") != CONSISTENCY_FORMAT:
        return False, f"malformed consistency proof: not a {CONSISTENCY_FORMAT} document"
    if doc.get("version") != CONSISTENCY_VERSION or set(doc) != _KEYS:
        return False, f"malformed consistency proof: version {CONSISTENCY_VERSION} has exactly the keys " + ", ".join(
            sorted(_KEYS))
    proof = _hashes(doc["proof"])
    if proof is None:
        return False, "malformed consistency proof: proof is a list of canonical base64 32-byte hashes"
    if not isinstance(doc["old_checkpoint"], str) or not isinstance(doc["new_checkpoint"], str):
        return False, "malformed consistency proof: checkpoints are signed-note strings"
    try:
        old = open_checkpoint_note(doc["old_checkpoint"], public_key, log_name=log_name)
    except CheckpointError as exc:
        return False, f"old checkpoint: {exc}"
    try:
        new = open_checkpoint_note(doc["new_checkpoint"], public_key, witnesses=witnesses, log_name=log_name)
    except CheckpointError as exc:
        return False, f"new checkpoint: {exc}"
    if old.origin != new.origin:
        return False, f"the checkpoints are of different logs ({old.origin} and {new.origin})"
    if old.size > new.size:
        return False, f"the old checkpoint ({old.size}) is larger than the new one ({new.size}): a rollback"
    if not verify_consistency(old.size, new.size, old.root, new.root, proof):
        return False, (
            f"log {new.origin} at size {new.size} is not an extension of its checkpoint at size "
            f"{old.size}: history was rewritten, or the proof is wrong"
        )
    return True, f"log {new.origin}: size {new.size} extends size {old.size} ({len(proof)} hashes)"
