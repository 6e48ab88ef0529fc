"""Checkpoint verification: signatures, then the stored chain against each valid checkpoint.

Both record formats (:mod:`trust.checkpoints`) are checked; the decision table is in
:mod:`trust.verify` (the package docstring). For whole-log checkpoints the stored hashes
are hashed once into :class:`~trust.merkle.TreeLevels`, whose root is read at every
checkpoint's size (O(n + c log n) for n events and c checkpoints), and a pair of
consecutive checkpoints is checked for consistency with an RFC 6962 proof built from the
stored events and verified literally (RFC 9162 §2.1.4.2).

Copies: a verifier looks at every record it is given. Field-for-field identical copies (a
redelivery, a retried insert) are one record; every other record is verified on its own,
so a copy that keeps a genuine checkpoint's ``checkpoint_id`` and ``signature`` but edits
another field can neither hide behind the genuine one nor, stored first, push it out. What
a legitimate copy is: for an interval checkpoint the signature covers every field, so two
copies that both verify were both signed (a re-issue); a whole-log checkpoint's note does
not sign ``head_hash``, ``created_at`` or ``processor_id``, and the witnesses' copies add
cosignature lines to the note — those lines are the only way two copies of one signed note
may differ (the lines themselves are judged by :mod:`trust.verify.cosignatures`). Copies
of one note that differ in ``head_hash`` are told apart by the stored chain where it
reproduces the note's root (the root commits to the last leaf, so the chain's hash at
``size - 1`` is the genuine head); ``created_at`` and ``processor_id`` nothing signed covers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.records import CHECKPOINT_FIELDS
from trust.checkpoints import INTERVAL_FORMAT, checkpoint_format, verify_checkpoint
from trust.errors import CheckpointError
from trust.keys import Keyring
from trust.merkle import TreeLevels, merkle_root, verify_consistency
from trust.tlog import NOTE_FORMAT, LogCheckpoint, open_log_checkpoint
from trust.verify.findings import Finding, FindingKind, PartitionState
from trust.verify.record_fields import differing_fields, field_identity, json_value, plain_bytes

__all__ = ["NoteCopies", "SignedCheckpoints", "signed_checkpoints", "verify_checkpoints"]


_COMPARED = tuple(f for f in CHECKPOINT_FIELDS if f != "signature_format")
"""Every Checkpoint field but the format, which is compared as :func:`checkpoint_format` reads it
(a record written before the field existed is an interval one)."""
_UNSIGNED_BY_NOTE = tuple(f for f in _COMPARED if f != "signature")
"""What two copies of one whole-log checkpoint must agree on besides the log's signed note."""


def _identity(cp: Mapping[str, Any]) -> tuple[Any, ...]:
    return (*field_identity(cp, _COMPARED), checkpoint_format(cp))


def _differs(cp: Mapping[str, Any], other: Mapping[str, Any], fields: tuple[str, ...] = _COMPARED) -> list[str]:
    diff = differing_fields(cp, other, fields)
    if checkpoint_format(cp) != checkpoint_format(other):
        diff.append("signature_format")
    return diff


def _distinct(checkpoints: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One of each set of field-for-field identical copies (a re-delivered or re-inserted record),
    buffers as ``bytes`` (the type a reader returns is not part of the record)."""
    kept: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    odd: list[Mapping[str, Any]] = []
    for cp in checkpoints:
        try:
            ident = _identity(cp)
            if ident not in kept:
                kept[ident] = plain_bytes(cp)
        except TypeError:  # an unhashable value in a field: keep it, it cannot verify
            odd.append(cp)
    return [*kept.values(), *odd]


@dataclass(frozen=True)
class _Copy:
    """One distinct stored checkpoint record and what its signature says."""

    record: Mapping[str, Any]
    opened: LogCheckpoint | None = None
    """The opened whole-log checkpoint, when the record is one and verifies."""
    problem: str | None = None
    """Why the record is not validly signed; None when it is."""

    @property
    def checkpoint_id(self) -> str | None:
        cp_id = self.record.get("checkpoint_id")
        return cp_id if isinstance(cp_id, str) else None


def _check(cp: Mapping[str, Any], keyring: Keyring, log_name: str | None) -> _Copy:
    fmt = checkpoint_format(cp)
    if fmt == NOTE_FORMAT:
        try:
            return _Copy(cp, opened=open_log_checkpoint(cp, keyring, log_name=log_name))
        except CheckpointError as exc:
            return _Copy(cp, problem=str(exc))
    if fmt != INTERVAL_FORMAT or not verify_checkpoint(cp, keyring) or type(cp.get("ledger_partition")) is not int:
        return _Copy(cp, problem=f"forged, altered, or signed by an unknown or expired key (signature_format {fmt!r})")
    return _Copy(cp)


def _closest(cp: Mapping[str, Any], genuine: list[_Copy]) -> tuple[Mapping[str, Any], list[str]] | None:
    """The validly signed copy ``cp`` differs least from, and the fields it differs in
    (ties broken by the copies' values, so the choice does not depend on storage order)."""
    ranked = sorted(((len(d), repr(_identity(g.record)), g.record, d)
                     for g in genuine for d in [_differs(cp, g.record)]), key=lambda t: t[:2])
    return (ranked[0][2], ranked[0][3]) if ranked else None


def _forged(cp: Mapping[str, Any], reason: str, twin: tuple[Mapping[str, Any], list[str]] | None) -> Finding:
    part, first, cp_id = cp.get("ledger_partition"), cp.get("first_sequence"), cp.get("checkpoint_id")
    message = (f"checkpoint {cp_id!r} is not validly signed by a processor key (key_id "
               f"{cp.get('key_id')!r}): {reason}")
    evidence: dict[str, Any] = {}
    if twin is not None:
        genuine, diff = twin
        shared = "checkpoint_id and signature" if "signature" not in diff else "checkpoint_id"
        message += (f"; a validly signed copy with the same {shared} is stored, and this one differs from it in "
                    f"{', '.join(diff)}: an edited copy (the signed one counts, this one does not)")
        evidence = {"table": "checkpoints", "column": ", ".join(diff),
                    "stored": {f: json_value(cp.get(f)) for f in diff},
                    "ledger": {f: json_value(genuine.get(f)) for f in diff}}
    return Finding(
        FindingKind.FORGED_CHECKPOINT,
        part if type(part) is int else None,
        first if type(first) is int else None,
        None,
        message,
        checkpoint_id=cp_id if isinstance(cp_id, str) else None,
        **evidence,
    )


def _log_signed_part(opened: LogCheckpoint) -> tuple[Any, ...]:
    """The note as the log signed it: the body (origin, size, root: a Lockgate checkpoint has
    no extension lines) and the log's own lines, not the cosignatures."""
    return opened.origin, opened.size, opened.root, tuple(sorted(s.line() for s in opened.log_signatures))


@dataclass(frozen=True)
class NoteCopies:
    """Whole-log copies of one checkpoint that carry the same signed note (cosignature lines
    aside) but differ in a field the note does not sign (``head_hash``, ``created_at``,
    ``processor_id``): one or more was edited in the store."""

    opened: LogCheckpoint
    """The note they share (origin, size, root)."""
    records: list[Mapping[str, Any]]
    """One record per distinct set of unsigned values, in an order that does not depend on storage."""


def _note_copies(copies: list[_Copy]) -> list[NoteCopies]:
    by_note: dict[tuple[Any, ...], tuple[LogCheckpoint, dict[tuple[Any, ...], Mapping[str, Any]]]] = {}
    for c in copies:
        if c.opened is not None:
            _, variants = by_note.setdefault(_log_signed_part(c.opened), (c.opened, {}))
            variants.setdefault((*field_identity(c.record, _UNSIGNED_BY_NOTE), checkpoint_format(c.record)), c.record)
    return [NoteCopies(opened, [variants[k] for k in sorted(variants, key=repr)])
            for opened, variants in by_note.values() if len(variants) > 1]


def _committed_head(opened: LogCheckpoint, state: PartitionState | None) -> bytes | None:
    """The hash of event ``size - 1``, the last leaf the signed root commits to, when the stored
    chain from sequence 0 reproduces that root; ``None`` when the chain cannot say (nothing stored,
    verified from an anchor, or the chain is missing or altered there: its own finding)."""
    if state is None or state.first_sequence != 0 or opened.size < 1:
        return None
    hashes = state.hashes(0, opened.size - 1)
    if hashes is None or merkle_root(hashes) != opened.root:
        return None
    return hashes[-1]


def _unsigned_edits(copies: NoteCopies, state: PartitionState | None) -> list[Finding]:
    """Findings for copies of one signed note that differ in unsigned fields.

    ``head_hash`` is decided by a signature after all: the root commits to every leaf, so where
    the stored chain reproduces the root, a copy whose ``head_hash`` is not the hash of event
    ``size - 1`` is the edited one (a ``forged_checkpoint`` each, naming its values against
    the genuine copy's) and a copy that has it is not blamed. ``created_at`` and
    ``processor_id`` are covered by nothing signed: copies that differ there, or in
    ``head_hash`` where the chain cannot decide, are one finding naming every copy and saying
    that no signature says which was edited.
    """
    head = _committed_head(copies.opened, state)
    if head is None:
        return _unattributed(copies.records)
    kept = [r for r in copies.records if r.get("head_hash") == head]
    return [_edited_head(r, copies.opened, head, kept) for r in copies.records
            if r.get("head_hash") != head] + _unattributed(kept)


def _edited_head(record: Mapping[str, Any], opened: LogCheckpoint, head: bytes,
                 kept: list[Mapping[str, Any]]) -> Finding:
    genuine: Mapping[str, Any] = kept[0] if kept else {"head_hash": head}
    diff = differing_fields(record, genuine, _UNSIGNED_BY_NOTE if kept else ("head_hash",))
    cp_id = record["checkpoint_id"]
    return Finding(
        FindingKind.FORGED_CHECKPOINT, record["ledger_partition"], record["first_sequence"], None,
        f"a stored copy of whole-log checkpoint {cp_id!r} has head_hash {json_value(record.get('head_hash'))!r}, "
        f"but the signed root commits to event {opened.size - 1}, whose stored hash reproduces the root, "
        f"and that hash is {head.hex()!r}: this copy was edited in the store"
        + (f" (it differs from the genuine copy in {', '.join(diff)}); the genuine copy counts" if kept else ""),
        checkpoint_id=cp_id, table="checkpoints", column=", ".join(diff),
        stored={f: json_value(record.get(f)) for f in diff},
        ledger={f: json_value(genuine.get(f)) for f in diff},
    )


def _unattributed(records: list[Mapping[str, Any]]) -> list[Finding]:
    if len(records) < 2:
        return []
    diff = sorted({f for r in records[1:] for f in _differs(r, records[0], _UNSIGNED_BY_NOTE)},
                  key=_COMPARED.index)
    first = records[0]
    return [Finding(
        FindingKind.FORGED_CHECKPOINT, first["ledger_partition"], first["first_sequence"], None,
        f"{len(records)} stored copies of whole-log checkpoint {first['checkpoint_id']!r} carry the same "
        f"signed note but differ in {', '.join(diff)}, which the note does not sign: a copy was edited in "
        "the store and no signature says which (compare the store with the replay topics: "
        "verify --against-topics)",
        checkpoint_id=first["checkpoint_id"], table="checkpoints", column=", ".join(diff),
        stored=[{f: json_value(r.get(f)) for f in diff} for r in records],
    )]


@dataclass
class SignedCheckpoints:
    """Checkpoints sorted by what their signatures say: valid (by partition, both formats, as
    stored records; whole-log ones also opened) and a ``forged_checkpoint`` per other one."""

    intervals: dict[int, list[Mapping[str, Any]]] = field(default_factory=dict)
    logs: dict[int, list[LogCheckpoint]] = field(default_factory=dict)
    valid: dict[int, list[Mapping[str, Any]]] = field(default_factory=dict)
    forged: list[Finding] = field(default_factory=list)
    edited: list[NoteCopies] = field(default_factory=list)
    """Whole-log copies that differ in unsigned fields: all valid; the findings need the stored
    chain (:func:`verify_checkpoints`)."""


def signed_checkpoints(checkpoints: Iterable[Mapping[str, Any]], keyring: Keyring, *,
                       log_name: str | None = None) -> SignedCheckpoints:
    """Verify the signature of every distinct checkpoint record, whatever order they come in.

    Only field-for-field identical copies are one record. Any other copy is checked on its
    own: one that does not verify is a ``forged_checkpoint`` naming the fields it differs in
    from the validly signed copy of the same ``checkpoint_id`` (that one still counts);
    whole-log copies that verify and differ only in cosignature lines are the witnesses'
    republished copies, all valid; whole-log copies whose signed note is the same but whose
    unsigned fields differ are valid (the note fixes what they cover) and are kept in
    ``edited`` for :func:`verify_checkpoints`, which judges them against the stored chain.
    ``log_name``, when given, is the log every whole-log checkpoint's origin must name.
    """
    out = SignedCheckpoints()
    copies = [_check(cp, keyring, log_name) for cp in _distinct(checkpoints)]
    genuine: dict[str | None, list[_Copy]] = {}
    for c in copies:
        if c.problem is not None:
            continue
        genuine.setdefault(c.checkpoint_id, []).append(c)
        part = c.opened.partition if c.opened is not None else c.record["ledger_partition"]
        out.valid.setdefault(part, []).append(c.record)
        if c.opened is not None:
            out.logs.setdefault(part, []).append(c.opened)
        else:
            out.intervals.setdefault(part, []).append(c.record)
    for c in copies:
        if c.problem is not None:
            twins = genuine.get(c.checkpoint_id, []) if c.checkpoint_id is not None else []
            out.forged.append(_forged(c.record, c.problem, _closest(c.record, twins)))
    for cp_id, group in genuine.items():
        if cp_id is not None:
            out.edited.extend(_note_copies(group))
    return out


def verify_checkpoints(
    checkpoints: Iterable[Mapping[str, Any]],
    states: Mapping[int, PartitionState],
    keyring: Keyring,
    *,
    log_name: str | None = None,
    signed: SignedCheckpoints | None = None,
) -> list[Finding]:
    """Check checkpoint signatures, then the stored chain against each valid checkpoint.

    ``signed``: the result of :func:`signed_checkpoints` when the caller already has it.
    """
    s = signed if signed is not None else signed_checkpoints(checkpoints, keyring, log_name=log_name)
    findings = list(s.forged)
    for copies in s.edited:
        findings.extend(_unsigned_edits(copies, states.get(copies.opened.partition)))
    for part, cps in s.intervals.items():
        newest_log = max((c.size - 1 for c in s.logs.get(part, [])), default=-1)
        findings.extend(_interval_findings(part, cps, states.get(part), newest_log))
    for part, log_cps in s.logs.items():
        findings.extend(_log_findings(part, log_cps, states.get(part)))
    findings.sort(key=Finding.sort_key)
    return findings


def _truncated(part: int, cp_id: str, last: int, head_seq: int | None) -> Finding:
    return Finding(
        FindingKind.TRUNCATED_TAIL,
        part,
        0 if head_seq is None else head_seq + 1,
        None,
        f"signed checkpoint {cp_id!r} attests sequence {last}, but the "
        + ("partition has no stored records" if head_seq is None else f"stored chain ends at {head_seq}")
        + ": the tail was deleted",
        checkpoint_id=cp_id,
    )


def _cut_and_reappended(part: int, cp_id: str, last: int, state: PartitionState) -> Finding:
    head_row = state.row_at(last)
    return Finding(
        FindingKind.TRUNCATED_TAIL,
        part,
        last,
        head_row.get("event_id") if head_row is not None else None,
        f"the stored record {last} differs from the head hash in the newest "
        f"signed checkpoint {cp_id!r}: the tail was cut and re-appended",
        checkpoint_id=cp_id,
    )


def _interval_findings(
    part: int, cps: list[Mapping[str, Any]], state: PartitionState | None, newest_log: int
) -> list[Finding]:
    findings: list[Finding] = []
    cps.sort(key=lambda c: (c["last_sequence"], c["created_at"]))
    head_seq = state.head_sequence if state is not None else None
    newest = cps[-1] if cps[-1]["last_sequence"] > newest_log else None
    for cp in cps:
        first, last, cp_id = cp["first_sequence"], cp["last_sequence"], cp["checkpoint_id"]
        is_newest = cp is newest
        if state is None or head_seq is None or last > head_seq:
            if is_newest:
                findings.append(_truncated(part, cp_id, last, head_seq))
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
            findings.append(_cut_and_reappended(part, cp_id, last, state))
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
    return findings


def _stored_tree(state: PartitionState, sizes: list[int]) -> TreeLevels:
    """The stored events' tree, up to the largest size in ``sizes`` the stored chain reaches.

    Stops at the stored head or at the first missing sequence (a gap is already a
    ``deleted_record``; nothing after it can be root-checked).
    """
    head = state.head_sequence
    top = min(max(sizes), head + 1) if head is not None else 0
    hashes = state.hashes(0, top - 1) if top > 0 else []
    if hashes is None:  # a gap: take the contiguous prefix
        hashes = []
        for s in range(top):
            row = state.row_at(s)
            if row is None or not isinstance(row.get("hash"), bytes):
                break
            hashes.append(row["hash"])
    return TreeLevels(hashes)


def _log_findings(part: int, opened: list[LogCheckpoint], state: PartitionState | None) -> list[Finding]:
    """Whole-log checkpoints of one partition against each other and the stored chain."""
    findings: list[Finding] = []
    by_size: dict[int, LogCheckpoint] = {}
    for cp in sorted(opened, key=lambda c: (c.size, c.record["created_at"])):
        first = by_size.setdefault(cp.size, cp)
        if first.root != cp.root:
            findings.append(_inconsistent(part, cp, first, "both sign the same size with different roots: a fork"))
    sizes = sorted(by_size)
    newest = by_size[sizes[-1]]
    head_seq = state.head_sequence if state is not None else None
    if state is None or head_seq is None or newest.size - 1 > head_seq:
        findings.append(_truncated(part, newest.record["checkpoint_id"], newest.size - 1, head_seq))
    if state is None or head_seq is None or state.first_sequence != 0:
        return findings  # nothing stored, or verified from an anchor: roots need every event from 0
    tree = _stored_tree(state, sizes)
    matches = {s: s <= tree.size and tree.root(s) == by_size[s].root for s in sizes}
    explained: set[int] = set()
    for older, newer in itertools.pairwise(sizes):
        if not matches[newer] or matches[older]:
            continue
        # The stored history reproduces the newer checkpoint: prove the older against it.
        proof = tree.consistency_proof(older, newer)
        if not verify_consistency(older, newer, by_size[older].root, by_size[newer].root, proof):
            findings.append(_inconsistent(
                part, by_size[older], by_size[newer],
                "the newer one's tree (the stored history) does not extend the older one: the first "
                f"{older} events were deleted, reordered or rewritten after the older was signed",
            ))
            explained.add(older)
    for s in sizes:
        cp = by_size[s]
        if matches[s] or s in explained or s > tree.size:
            continue
        cp_id, last = cp.record["checkpoint_id"], s - 1
        last_row = state.row_at(last)
        if cp is newest and last_row is not None and last_row.get("hash") != cp.record["head_hash"]:
            findings.append(_cut_and_reappended(part, cp_id, last, state))
            continue
        first_row = state.row_at(0)
        findings.append(Finding(
            FindingKind.ALTERED_CHECKPOINT, part, 0,
            first_row.get("event_id") if first_row is not None else None,
            f"records 0..{last} disagree with signed whole-log checkpoint {cp_id!r} (merkle root "
            "differs): history was re-hashed after it was checkpointed; a Merkle root cannot "
            "say which record changed first",
            checkpoint_id=cp_id,
        ))
    return findings


def _inconsistent(part: int, cp: LogCheckpoint, other: LogCheckpoint, why: str) -> Finding:
    return Finding(
        FindingKind.INCONSISTENT_CHECKPOINTS,
        part,
        cp.size - 1,
        None,
        f"signed checkpoints {cp.record['checkpoint_id']!r} (size {cp.size}) and "
        f"{other.record['checkpoint_id']!r} (size {other.size}) of {cp.origin} are inconsistent: {why}",
        checkpoint_id=cp.record["checkpoint_id"],
    )
