"""Witness cosignatures: the newest whole-log checkpoint of every partition must carry a
valid ``cosignature/v1`` of every witness the verifier trusts.

Why the newest: a witness cosigns a checkpoint only if it is consistent with everything
it cosigned before (:mod:`trust.tlog_witness`), so a valid cosignature on the newest
checkpoint vouches for the whole history up to it. A log that was rolled back or forked
cannot obtain one, and a partition whose newest checkpoint lacks it is reported.

Cosignatures travel inside the checkpoint record's note (``signature``), as extra
signature lines; a checkpoint may be stored several times (as first signed, then with
the witnesses' lines added): the lines of every stored copy of the same checkpoint count,
provided the copy's own note verifies (an edited copy is a ``forged_checkpoint`` of the
checkpoint pass, :mod:`trust.verify.checkpoints`, and its lines count for nothing).

====================================================================  =======================
a line with a trusted witness's name and key id does not verify         ``forged_cosignature``
(on any checkpoint)
the partition's newest checkpoint has no valid line of a trusted        ``missing_cosignature``
witness (or the partition has events but no whole-log checkpoint)
====================================================================  =======================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from trust.checkpoints import checkpoint_format
from trust.cosignature import CosignatureV1Verifier
from trust.errors import CheckpointError
from trust.keys import Keyring
from trust.tlog import NOTE_FORMAT, LogCheckpoint, open_log_checkpoint
from trust.verify.findings import Finding, FindingKind

__all__ = ["verify_cosignatures"]


def verify_cosignatures(
    checkpoints: Iterable[Mapping[str, Any]],
    partitions: Iterable[int],
    keyring: Keyring,
    witnesses: Sequence[CosignatureV1Verifier],
    *,
    log_name: str | None = None,
) -> list[Finding]:
    """Findings about witness cosignatures (module docstring). ``partitions`` are those
    with stored events; partitions with checkpoints are checked too."""
    if not witnesses:
        return []
    findings: list[Finding] = []
    by_part: dict[int, list[LogCheckpoint]] = {}
    for record in checkpoints:
        if checkpoint_format(record) != NOTE_FORMAT:
            continue
        try:
            opened = open_log_checkpoint(record, keyring, log_name=log_name)
        except CheckpointError:
            continue  # reported as forged_checkpoint by the checkpoint pass
        by_part.setdefault(opened.partition, []).append(opened)
    wanted = {(w.name, w.key_id): w for w in witnesses}
    valid: dict[tuple[int, int, bytes], set[tuple[str, int]]] = {}
    for part, cps in by_part.items():
        for cp in cps:
            key = (part, cp.size, cp.root)
            good = valid.setdefault(key, set())
            text = cp.body.text().encode("utf-8")
            for sig in cp.unverified:
                w = wanted.get((sig.name, sig.key_id))
                if w is None:
                    continue
                if w.verify(text, sig.signature):
                    good.add((sig.name, sig.key_id))
                else:
                    findings.append(Finding(
                        FindingKind.FORGED_COSIGNATURE, part, cp.size - 1, None,
                        f"checkpoint {cp.record['checkpoint_id']!r} carries a cosignature line of witness "
                        f"{w.name} that does not verify: it was forged or the checkpoint altered",
                        checkpoint_id=cp.record["checkpoint_id"],
                    ))
    for part in sorted(set(partitions) | set(by_part)):
        found = by_part.get(part)
        if not found:
            findings.append(Finding(
                FindingKind.MISSING_COSIGNATURE, part, None, None,
                f"partition {part} has no whole-log checkpoint, so no witness cosigned its history",
            ))
            continue
        newest = max(found, key=lambda c: (c.size, c.record["created_at"]))
        good = valid[(part, newest.size, newest.root)]
        for w in witnesses:
            if (w.name, w.key_id) not in good:
                findings.append(Finding(
                    FindingKind.MISSING_COSIGNATURE, part, newest.size - 1, None,
                    f"the newest checkpoint {newest.record['checkpoint_id']!r} of {newest.origin} has no "
                    f"valid cosignature of witness {w.name}: the witness refused it (a rollback or "
                    "fork) or was never asked",
                    checkpoint_id=newest.record["checkpoint_id"],
                ))
    findings.sort(key=Finding.sort_key)
    return findings
