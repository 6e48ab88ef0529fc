"""The witness file: checkpoints kept off-system, and what they prove about the store.

``lockgate checkpoints export FILE`` writes one JSON object per line, each a Checkpoint
with ``"format": "lockgate.checkpoint"``, its string and integer fields as they are and its
bytes fields as lower-case hex (``signature_format`` as a string; a line without it, from
an older export, is an interval checkpoint). ``verify --checkpoints FILE`` then requires
every witnessed checkpoint to be stored unchanged (:func:`witness_findings`), and
``verify --since`` starts each partition after the newest valid checkpoint older than the
cutoff (:func:`since_anchors`).

This file is a copy kept off-system by hand; witnesses that cosign every checkpoint as it
is made (:mod:`trust.tlog_witness`) are the online version of the same idea.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trust.checkpoints import INTERVAL_FORMAT, checkpoint_format, verify_checkpoint
from trust.errors import WitnessFileError
from trust.keys import Keyring

__all__ = ["CHECKPOINT_FILE_FORMAT", "checkpoint_to_json", "load_checkpoint_file", "since_anchors",
           "witness_findings"]

CHECKPOINT_FILE_FORMAT = "lockgate.checkpoint"
_CP_BYTES = ("head_hash", "merkle_root", "signature")
_CP_INTS = ("ledger_partition", "first_sequence", "last_sequence", "created_at")
_CP_STRS = ("checkpoint_id", "processor_id", "key_id")


def checkpoint_to_json(cp: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"format": CHECKPOINT_FILE_FORMAT}
    for name in _CP_STRS + _CP_INTS:
        out[name] = cp[name]
    for name in _CP_BYTES:
        out[name] = bytes(cp[name]).hex()
    out["signature_format"] = checkpoint_format(cp)
    return out


def load_checkpoint_file(path: Path) -> list[dict[str, Any]]:
    """Checkpoints from a ``lockgate checkpoints export`` file (format in its --help)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WitnessFileError(f"cannot read checkpoint file {path}: {exc}") from exc
    out: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            data = json.loads(line)
            if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FILE_FORMAT:
                raise ValueError(f"not a {CHECKPOINT_FILE_FORMAT} line")
            cp: dict[str, Any] = {}
            for name in _CP_STRS:
                if not isinstance(data[name], str):
                    raise ValueError(f"{name} must be a string")
                cp[name] = data[name]
            for name in _CP_INTS:
                if type(data[name]) is not int:
                    raise ValueError(f"{name} must be an integer")
                cp[name] = data[name]
            for name in _CP_BYTES:
                cp[name] = bytes.fromhex(data[name])
            fmt = data.get("signature_format", INTERVAL_FORMAT)
            if not isinstance(fmt, str):
                raise ValueError("signature_format must be a string")
            cp["signature_format"] = fmt
        except (ValueError, KeyError, TypeError) as exc:
            raise WitnessFileError(f"{where}: invalid checkpoint line: {exc}") from exc
        out.append(cp)
    return out

def witness_findings(stored: list[dict[str, Any]], witness: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id: dict[str, list[dict[str, Any]]] = {}
    for cp in stored:
        by_id.setdefault(cp["checkpoint_id"], []).append(cp)
    out: list[dict[str, Any]] = []
    for w in witness:
        found = by_id.get(w["checkpoint_id"], [])
        base = {"partition": w["ledger_partition"], "sequence": w["first_sequence"], "event_id": None,
                "checkpoint_id": w["checkpoint_id"], "action_id": None}
        if not found:
            out.append({**base, "kind": "witness_checkpoint_missing",
                        "message": f"checkpoint {w['checkpoint_id']!r} of the witness file is not stored"})
            continue
        for cp in found:
            diff = [k for k in (*_CP_STRS, *_CP_INTS, *_CP_BYTES) if cp.get(k) != w[k]]
            if checkpoint_format(cp) != checkpoint_format(w):
                diff.append("signature_format")
            if diff:
                out.append({**base, "kind": "witness_checkpoint_differs",
                            "message": f"stored checkpoint {w['checkpoint_id']!r} differs from the "
                            f"witness copy in {', '.join(diff)}"})
    return out

def since_anchors(cps: list[dict[str, Any]], cutoff_us: int, keyring: Keyring) -> dict[int, tuple[int, bytes]]:
    """Per partition, start after the newest validly signed checkpoint created before the cutoff.

    Only interval checkpoints anchor: their signature covers the chain head. A whole-log
    checkpoint signs a root over every event from 0, not the head, so starting after it
    would trust an unsigned ``head_hash``; a partition with only whole-log checkpoints
    before the cutoff is verified from its start.
    """
    best: dict[int, dict[str, Any]] = {}
    for cp in cps:
        if (cp["created_at"] >= cutoff_us or checkpoint_format(cp) != INTERVAL_FORMAT
                or not verify_checkpoint(cp, keyring)):
            continue
        cur = best.get(cp["ledger_partition"])
        if cur is None or cp["last_sequence"] > cur["last_sequence"]:
            best[cp["ledger_partition"]] = cp
    return {p: (cp["last_sequence"] + 1, cp["head_hash"]) for p, cp in best.items()}
