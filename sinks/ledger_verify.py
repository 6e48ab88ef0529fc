"""The ledger verification engine: chain, checkpoints, and proof of enforcement.

Pure: it reads AuditEvent dicts (as stored, in any order) and Checkpoint dicts, and
returns :class:`Finding` objects sorted by partition and sequence, so that for every
partition the first finding names the first bad record. It talks to nothing.

What is checked
===============

1. **Chain** (per ``ledger_partition``): rows are grouped by partition and sorted by
   ``sequence`` (then by storage position, when one is given). Each row's ``hash`` is
   recomputed (:func:`processors.ledger_chain.event_hash`, contract in
   ``docs/CONTRACTS.md``); ``prev_hash`` must equal the hash of the row before it; the
   partition starts at sequence 0 with ``prev_hash = GENESIS`` (or at an *anchor*, for a
   ledger whose prefix was pruned on purpose); sequences are contiguous.

   A byte-identical duplicate row (every field equal) is collapsed silently: at-least-once
   storage (a retried insert before a ReplacingMergeTree merge) produces those, and they
   add no information. Any other second row at a sequence is an insertion.

2. **Checkpoints**: the Ed25519 signature (processor keyring, key expiry judged at the
   checkpoint's ``created_at``), then the RFC 6962 root over the stored hashes of
   ``first_sequence..last_sequence`` and the stored hash at ``last_sequence``.

3. **Enforcement** (from decoded payloads): every ``committed`` ActionOutcome needs a
   validly signed ``allow`` Verdict for its action in the ledger, decided no later than
   the outcome was recorded; the Verdict embedded in the outcome must be for the same
   action, validly signed, and equal to a ledger verdict for that action.

Decision table (chain)
======================

``self-consistent`` = the recomputed hash equals the stored ``hash``.
``links`` = ``prev_hash`` equals the stored hash of the chosen row one sequence lower.

=====================================================  =====================  ===========
Observation                                            Finding                Named row
=====================================================  =====================  ===========
sequence ``s`` absent, rows exist above it             ``deleted_record``     ``s`` (the
                                                                              first gap)
two distinct rows at ``s``: the one that is            ``inserted_record``    each extra
self-consistent, links, and is linked from ``s+1``                            row
is kept; the rest are extras
row not self-consistent; it *is* self-consistent with  ``reordered_records``  the row
another row's sequence (its ``sequence`` was swapped),
or with another row's sequence and chain fields (its
content was swapped)
rows from ``a`` up are each self-consistent one        ``deleted_record``     ``a``
sequence *higher* and nobody claims ``a``
(a deletion, then renumbering to hide the gap)
rows from ``a+1`` up are each self-consistent one      ``inserted_record``    ``a``
sequence *lower*, nobody claims the run's top
(an insertion, then renumbering to make room)
row not self-consistent, no other place explains it    ``modified_record``    the row
row self-consistent but does not link; the next row    ``modified_record``    ``s-1``
links to it (row ``s-1`` was edited and re-hashed:
its successor still commits to the old hash)
row self-consistent, does not link, nothing links to   ``modified_record``    the row
it, though a row follows (replaced, or its
``prev_hash`` edited, then re-hashed)
as above, but no row follows to arbitrate (the tail    ``modified_record``    ``s-1``
of the stored chain, or just before a gap): either
row may have been re-hashed; the earlier is named,
the message names both
position (storage/insertion order) decreases while     ``reordered_records``  each row
sequence increases: rows outside the longest                                  out of
increasing run of positions                                                   place
=====================================================  =====================  ===========

A link break right after a row that is already flagged is not reported again (the
flagged row explains it).

Decision table (checkpoints)
============================

=========================================================  ======================
signature does not verify, key unknown or expired           ``forged_checkpoint``
valid; ``last_sequence`` beyond the stored head, or the     ``truncated_tail``
partition is absent (the newest checkpoint decides)
valid; newest for its partition; stored hash at             ``truncated_tail``
``last_sequence`` differs from ``head_hash`` (the tail was
cut and re-appended)
valid; Merkle root or head differs from the stored hashes   ``altered_checkpoint``
(history re-hashed after it was checkpointed)
=========================================================  ======================

A Merkle root says *that* an interval differs, not *where*: ``altered_checkpoint``
names the interval's first record, and the message says so. An interval with a sequence
gap is not root-checked (the gap is already a ``deleted_record``).

Limits (by design, stated so nobody relies on more): a wholesale re-chained ledger after
the last checkpoint, or events appended after it, are indistinguishable from genuine
ones — checkpoints bound what can be rewritten; verdict signatures bound what can be
forged. Storage positions, when given, must be comparable within a partition (e.g. the
audit topic offset).
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import itertools
import operator
from binascii import b2a_base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _json_str
from typing import Any

from processors.checkpoints import verify_checkpoint
from processors.ledger_chain import AUDIT_FIELDS, GENESIS, ChainError, hashed_bytes
from processors.merkle import merkle_root
from schemas.canonical import CANONICAL_VERSION, canonical_bytes
from schemas.codec import get_codec
from schemas.errors import CodecError
from schemas.signing import Keyring, verify_record

__all__ = [
    "Finding",
    "FindingKind",
    "PartitionState",
    "reconcile_enforcement",
    "verify_chain",
    "verify_checkpoints",
    "verify_ledger",
]

Event = Mapping[str, Any]
_sha256 = hashlib.sha256
_FULL_SEARCH_LIMIT = 1000  # suspects that get the wide reorder search; the rest try s±1
_NEIGHBOURS = 16
_BY_SEQUENCE = operator.itemgetter("sequence")


class FindingKind(enum.StrEnum):
    """What is wrong. The first group is the chain, then checkpoints, then enforcement."""

    MODIFIED_RECORD = "modified_record"
    DELETED_RECORD = "deleted_record"
    INSERTED_RECORD = "inserted_record"
    REORDERED_RECORDS = "reordered_records"
    TRUNCATED_TAIL = "truncated_tail"
    FORGED_CHECKPOINT = "forged_checkpoint"
    ALTERED_CHECKPOINT = "altered_checkpoint"
    FORGED_VERDICT = "forged_verdict"
    UNDECODABLE_PAYLOAD = "undecodable_payload"
    COMMIT_WITHOUT_ALLOW = "commit_without_allow"
    VERDICT_AFTER_COMMIT = "verdict_after_commit"
    VERDICT_FOR_OTHER_ACTION = "verdict_for_other_action"
    EMBEDDED_VERDICT_MISSING = "embedded_verdict_missing"
    EMBEDDED_VERDICT_FORGED = "embedded_verdict_forged"
    EMBEDDED_VERDICT_MISMATCH = "embedded_verdict_mismatch"


_CHAIN_KINDS = frozenset(
    {
        FindingKind.MODIFIED_RECORD,
        FindingKind.DELETED_RECORD,
        FindingKind.INSERTED_RECORD,
        FindingKind.REORDERED_RECORDS,
    }
)
_ORDER = {kind: i for i, kind in enumerate(FindingKind)}


@dataclass(frozen=True)
class Finding:
    """One problem, located as precisely as the evidence allows.

    ``sequence`` is the ledger sequence the finding is about (``None`` when a row has
    none); ``event_id`` the stored row's id when there is a row (a deletion has none).
    """

    kind: FindingKind
    partition: int | None
    sequence: int | None
    event_id: str | None
    message: str
    checkpoint_id: str | None = None
    action_id: str | None = None

    @property
    def is_chain(self) -> bool:
        return self.kind in _CHAIN_KINDS

    def sort_key(self) -> tuple[int, int, int]:
        part = -1 if self.partition is None else self.partition
        seq = -1 if self.sequence is None else self.sequence
        return (part, seq, _ORDER[self.kind])


@dataclass
class PartitionState:
    """The stored chain of one partition after verification, for the checkpoint checks."""

    partition: int
    first_sequence: int = 0
    _contiguous: list[Event] = field(default_factory=list)
    _by_seq: dict[int, Event] | None = None

    @property
    def head_sequence(self) -> int | None:
        """Highest stored sequence (``None`` for an empty partition)."""
        if self._by_seq is not None:
            return max(self._by_seq) if self._by_seq else None
        return self.first_sequence + len(self._contiguous) - 1 if self._contiguous else None

    def row_at(self, sequence: int) -> Event | None:
        if self._by_seq is not None:
            return self._by_seq.get(sequence)
        i = sequence - self.first_sequence
        return self._contiguous[i] if 0 <= i < len(self._contiguous) else None

    def hashes(self, first: int, last: int) -> list[bytes] | None:
        """Stored hashes of ``first..last``, or ``None`` if any of them is missing."""
        if self._by_seq is None and first >= self.first_sequence:
            lo = first - self.first_sequence
            hi = last - self.first_sequence
            if hi < len(self._contiguous):
                return [r["hash"] for r in self._contiguous[lo : hi + 1]]
            return None
        out = []
        for s in range(first, last + 1):
            row = self.row_at(s)
            if row is None or not isinstance(row.get("hash"), bytes):
                return None
            out.append(row["hash"])
        return out


def _finding(
    kind: FindingKind,
    partition: int | None,
    row: Event | None,
    message: str,
    sequence: int | None = None,
) -> Finding:
    seq = sequence if sequence is not None or row is None else row.get("sequence")
    eid = row.get("event_id") if row is not None else None
    return Finding(
        kind,
        partition,
        seq if isinstance(seq, int) else None,
        eid if isinstance(eid, str) else None,
        message,
        action_id=(row.get("action_id") if row is not None else None),
    )


def _self_consistent(row: Event) -> bool:
    try:
        return bool(
            row["canonical_version"] == CANONICAL_VERSION
            and _sha256(hashed_bytes(row) + row["prev_hash"]).digest() == row["hash"]
        )
    except (ChainError, KeyError, TypeError, ValueError):
        return False


def _hash_with(row: Event, sequence: int, prev: Any) -> bytes | None:
    moved = dict(row)
    moved["sequence"] = sequence
    try:
        return _sha256(hashed_bytes(moved) + prev).digest()
    except (ChainError, TypeError, ValueError):
        return None


def _row_identity(row: Event) -> tuple[Any, ...]:
    return tuple(row.get(f) for f in AUDIT_FIELDS)


_ROW_FIELDS = operator.itemgetter(
    "action_id",
    "canonical_version",
    "detail",
    "event_id",
    "kind",
    "ledger_partition",
    "payload",
    "recorded_at",
    "sequence",
    "tenant",
    "prev_hash",
    "hash",
)


def _fast_pass(rows: Sequence[Event], start_seq: int, start_prev: bytes, position_key: str | None) -> bool:
    """True iff the sorted rows are one clean chain from the anchor (the common case).

    The canonical form is inlined here (same text as ``ledger_chain.hashed_bytes``; the
    tests compare both with ``schemas.canonical``): this loop is the verifier's hot path.
    ``encode_basestring`` raises on a non-string; integers must be exactly ``int`` (a
    bool would print as ``True``). Anything unusual returns False and the careful pass
    decides.
    """
    sha = _sha256
    b64 = b2a_base64
    js = _json_str
    fields = _ROW_FIELDS
    expected_seq = start_seq
    expected_prev = start_prev
    last_pos: Any = None
    try:
        for row in rows:
            aid, ver, det, eid, kind, part, payload, rec, seq, tenant, prev, stored = fields(row)
            if (
                seq != expected_seq
                or prev != expected_prev
                or ver != 1
                or type(seq) is not int
                or type(ver) is not int
                or type(part) is not int
                or type(rec) is not int
                or type(prev) is not bytes
            ):
                return False
            body = (
                f'{{"action_id":{"null" if aid is None else js(aid)}'
                f',"canonical_version":1'
                f',"detail":{"null" if det is None else js(det)}'
                f',"event_id":{js(eid)}'
                f',"kind":{js(kind)}'
                f',"ledger_partition":{part}'
                f',"payload":{{"$b64":"{b64(payload, newline=False).decode()}"}}'
                f',"recorded_at":{rec}'
                f',"sequence":{seq}'
                f',"tenant":{js(tenant)}}}'
            ).encode()
            if sha(body + prev).digest() != stored:
                return False
            if position_key is not None:
                pos = row[position_key]
                if last_pos is not None and pos <= last_pos:
                    return False
                last_pos = pos
            expected_seq = seq + 1
            expected_prev = stored
    except (KeyError, TypeError, ValueError):
        return False
    return True


def _choose(
    cands: list[Event],
    ok: dict[int, bool],
    expected_prev: bytes | None,
    next_prevs: set[Any],
) -> Event:
    def score(row: Event) -> int:
        return (
            4 * ok[id(row)]
            + 2 * (expected_prev is not None and row.get("prev_hash") == expected_prev)
            + (row.get("hash") in next_prevs)
        )

    best = cands[0]
    best_score = score(best)
    for row in cands[1:]:
        sc = score(row)
        if sc > best_score:
            best, best_score = row, sc
    return best


def _diagnose(
    partition: int,
    rows: list[Event],
    start_seq: int,
    start_prev: bytes,
    position_key: str | None,
) -> tuple[list[Finding], dict[int, Event]]:
    """Slow, careful pass over a partition whose fast pass failed: name what is wrong."""
    findings: list[Finding] = []
    by_seq: dict[int, list[Event]] = {}
    seen: dict[int, set[tuple[Any, ...]]] = {}
    for row in rows:
        s = row["sequence"]
        ident = _row_identity(row)
        try:
            if ident in seen.setdefault(s, set()):
                continue  # byte-identical duplicate: collapsed (see module docstring)
            seen[s].add(ident)
        except TypeError:  # unhashable junk in a field: keep it, it will be flagged
            pass
        by_seq.setdefault(s, []).append(row)
    ok: dict[int, bool] = {id(r): _self_consistent(r) for cands in by_seq.values() for r in cands}

    chosen: dict[int, Event] = {}
    suspects: list[Event] = []
    flagged: set[int] = set()  # ids of rows already named (a link break after them is theirs)
    seqs = sorted(by_seq)
    expected_seq = start_seq
    expected_prev: bytes | None = start_prev
    prev_row: Event | None = None
    for s in seqs:
        cands = by_seq[s]
        if s < start_seq:
            for row in cands:
                findings.append(
                    _finding(
                        FindingKind.INSERTED_RECORD,
                        partition,
                        row,
                        f"row at sequence {s} lies before the partition's start ({start_seq})",
                    )
                )
            continue
        if s > expected_seq:
            missing = f"{expected_seq}" if s == expected_seq + 1 else f"{expected_seq}..{s - 1}"
            findings.append(
                _finding(
                    FindingKind.DELETED_RECORD,
                    partition,
                    None,
                    f"sequence {missing} missing: the chain jumps from {expected_seq - 1} to {s}",
                    sequence=expected_seq,
                )
            )
            expected_prev = None
            prev_row = None
        nxt = by_seq.get(s + 1, [])
        next_prevs = {r.get("prev_hash") for r in nxt if isinstance(r.get("prev_hash"), bytes)}
        row = cands[0] if len(cands) == 1 else _choose(cands, ok, expected_prev, next_prevs)
        for extra in cands:
            if extra is not row:
                findings.append(
                    _finding(
                        FindingKind.INSERTED_RECORD,
                        partition,
                        extra,
                        f"second row at sequence {s} (event_id {extra.get('event_id')!r}); the "
                        f"row that belongs to the chain is event_id {row.get('event_id')!r}",
                    )
                )
        chosen[s] = row
        if not ok[id(row)]:
            suspects.append(row)
        elif (
            expected_prev is not None
            and row.get("prev_hash") != expected_prev
            and (prev_row is None or (ok[id(prev_row)] and id(prev_row) not in flagged))
        ):
            linked_from_next = row.get("hash") in next_prevs
            if prev_row is None:
                findings.append(
                    _finding(
                        FindingKind.MODIFIED_RECORD,
                        partition,
                        row,
                        f"first record of the partition does not start from "
                        f"{'GENESIS' if start_prev == GENESIS else 'the anchor hash'}",
                    )
                )
            elif linked_from_next:
                findings.append(
                    _finding(
                        FindingKind.MODIFIED_RECORD,
                        partition,
                        prev_row,
                        f"record {s - 1} was rewritten and re-hashed: record {s} commits to "
                        f"prev_hash {bytes(row['prev_hash']).hex()[:16]}…, record {s - 1} now "
                        f"hashes to {bytes(prev_row['hash']).hex()[:16]}…",
                    )
                )
            elif not nxt:
                # Nothing after ``s`` to arbitrate: name the earlier of the two candidates.
                findings.append(
                    _finding(
                        FindingKind.MODIFIED_RECORD,
                        partition,
                        prev_row,
                        f"records {s - 1} and {s} do not link and no record follows {s} to "
                        f"tell which changed: record {s - 1} was rewritten and re-hashed, or "
                        f"record {s} was (or was appended with a foreign prev_hash)",
                    )
                )
            else:
                findings.append(
                    _finding(
                        FindingKind.MODIFIED_RECORD,
                        partition,
                        row,
                        f"record {s} was replaced or rewritten and re-hashed: it links to no "
                        f"stored predecessor and record {s + 1} commits to a different hash",
                    )
                )
                flagged.add(id(row))
        h = row.get("hash")
        expected_prev = h if isinstance(h, bytes) else None
        expected_seq = s + 1
        prev_row = row

    findings.extend(_classify_suspects(partition, suspects, chosen))
    if position_key is not None:
        findings.extend(_position_reorders(partition, chosen, position_key, findings))
    return findings, chosen


def _origin_of(row: Event, chosen: Mapping[int, Event], candidates: Iterable[int]) -> int | None:
    """The sequence this (not self-consistent) row was chained at, if another place fits."""
    s = row["sequence"]
    stored = row.get("hash")
    prev = row.get("prev_hash")
    for cand in candidates:
        if cand == s or cand < 0:
            continue
        if isinstance(prev, bytes) and _hash_with(row, cand, prev) == stored:
            return cand  # only the sequence number was changed
        other = chosen.get(cand)
        if other is not None and isinstance(other.get("prev_hash"), bytes):
            h = _hash_with(row, cand, other["prev_hash"])
            if h is not None and h == other.get("hash"):
                return cand  # the content moved, the chain fields stayed
    return None


def _classify_suspects(partition: int, suspects: list[Event], chosen: Mapping[int, Event]) -> list[Finding]:
    if not suspects:
        return []
    suspect_seqs = [r["sequence"] for r in suspects]
    origin: dict[int, int] = {}
    for i, row in enumerate(suspects):
        s = row["sequence"]
        cands = [s + 1, s - 1]
        if i < _FULL_SEARCH_LIMIT:
            near = suspect_seqs[max(0, i - _NEIGHBOURS) : i + _NEIGHBOURS + 1]
            cands.extend(sorted(near, key=lambda x: abs(x - s)))
        found = _origin_of(row, chosen, dict.fromkeys(cands))
        if found is not None:
            origin[s] = found
    claimed = set(origin.values())
    handled: set[int] = set()
    findings: list[Finding] = []

    # Renumbering after a deletion (+1) or an insertion (-1): collapse each run.
    for delta in (1, -1):
        run: list[int] = []
        for s in sorted(origin):
            if origin[s] != s + delta:
                continue
            if run and s == run[-1] + 1:
                run.append(s)
                continue
            if run:
                findings.extend(
                    _shift_finding(partition, run, delta, claimed=claimed, chosen=chosen, handled=handled)
                )
            run = [s]
        if run:
            findings.extend(
                _shift_finding(partition, run, delta, claimed=claimed, chosen=chosen, handled=handled)
            )

    for row in suspects:
        s = row["sequence"]
        if s in handled:
            continue
        if s in origin:
            findings.append(
                _finding(
                    FindingKind.REORDERED_RECORDS,
                    partition,
                    row,
                    f"record stored at sequence {s} was chained at sequence {origin[s]}: "
                    "records were moved within the chain",
                )
            )
        else:
            findings.append(
                _finding(
                    FindingKind.MODIFIED_RECORD,
                    partition,
                    row,
                    f"record {s} was modified: its content no longer hashes to its stored hash",
                )
            )
    return findings


def _shift_finding(
    partition: int,
    run: list[int],
    delta: int,
    *,
    claimed: set[int],
    chosen: Mapping[int, Event],
    handled: set[int],
) -> list[Finding]:
    first, last = run[0], run[-1]
    if delta == 1 and first not in claimed:
        handled.update(run)
        return [
            _finding(
                FindingKind.DELETED_RECORD,
                partition,
                None,
                f"the record chained at sequence {first} is gone and records {first}..{last} "
                "were renumbered down by one to hide the gap",
                sequence=first,
            )
        ]
    if delta == -1 and last not in claimed:
        handled.update(run)
        handled.add(first - 1)
        return [
            _finding(
                FindingKind.INSERTED_RECORD,
                partition,
                chosen.get(first - 1),
                f"record {first - 1} was inserted and records {first}..{last} were renumbered "
                "up by one to make room",
                sequence=first - 1,
            )
        ]
    return []


def _position_reorders(
    partition: int, chosen: Mapping[int, Event], position_key: str, already: list[Finding]
) -> list[Finding]:
    seqs = sorted(chosen)
    try:
        positions = [chosen[s][position_key] for s in seqs]
        if all(a < b for a, b in itertools.pairwise(positions)):
            return []
        # Longest strictly increasing subsequence of positions (patience sorting).
        tails: list[Any] = []
        tail_idx: list[int] = []
        parent = [-1] * len(positions)
        for i, p in enumerate(positions):
            j = bisect.bisect_left(tails, p)
            if j == len(tails):
                tails.append(p)
                tail_idx.append(i)
            else:
                tails[j] = p
                tail_idx[j] = i
            parent[i] = tail_idx[j - 1] if j else -1
    except (KeyError, TypeError):
        return [
            Finding(
                FindingKind.REORDERED_RECORDS,
                partition,
                None,
                None,
                f"storage positions ({position_key!r}) are missing or not comparable",
            )
        ]
    keep: set[int] = set()
    i = tail_idx[-1] if tail_idx else -1
    while i >= 0:
        keep.add(i)
        i = parent[i]
    flagged = {f.sequence for f in already}
    return [
        _finding(
            FindingKind.REORDERED_RECORDS,
            partition,
            chosen[s],
            f"record {s} is stored out of order (position {positions[i]!r}) relative to its "
            "neighbours in the chain",
        )
        for i, s in enumerate(seqs)
        if i not in keep and s not in flagged
    ]


def verify_chain(
    events: Iterable[Event],
    *,
    position_key: str | None = None,
    anchors: Mapping[int, tuple[int, bytes]] | None = None,
) -> tuple[list[Finding], dict[int, PartitionState]]:
    """Verify every partition's hash chain.

    ``position_key`` names a key of each row holding its storage/insertion position (an
    offset, a row number); rows are then also checked to be stored in sequence order.
    ``anchors`` maps a partition to ``(first_sequence, prev_hash)`` where its stored
    chain legitimately begins (default ``(0, GENESIS)``).

    Returns the findings (sorted) and each partition's stored state for checkpoint checks.
    """
    findings: list[Finding] = []
    groups: dict[int, list[Event]] = {}
    current: list[Event] | None = None
    current_part: Any = None
    for row in events:
        part = row.get("ledger_partition")
        if type(part) is not int or type(row.get("sequence")) is not int:
            findings.append(
                _finding(
                    FindingKind.MODIFIED_RECORD,
                    part if type(part) is int else None,
                    row,
                    "row has no integer ledger_partition/sequence: it is not an AuditEvent",
                )
            )
            continue
        if part != current_part or current is None:  # rows mostly come in runs
            current = groups.get(part)
            if current is None:
                current = groups[part] = []
            current_part = part
        current.append(row)

    states: dict[int, PartitionState] = {}
    for part, rows in groups.items():
        if position_key is None:
            rows.sort(key=_BY_SEQUENCE)
        else:
            try:
                rows.sort(key=lambda r: (r["sequence"], r[position_key]))
            except (KeyError, TypeError):
                rows.sort(key=_BY_SEQUENCE)
        start_seq, start_prev = (anchors or {}).get(part, (0, GENESIS))
        if _fast_pass(rows, start_seq, start_prev, position_key):
            states[part] = PartitionState(part, start_seq, rows)
            continue
        part_findings, chosen = _diagnose(part, rows, start_seq, start_prev, position_key)
        findings.extend(part_findings)
        states[part] = PartitionState(part, start_seq, [], chosen)
    findings.sort(key=Finding.sort_key)
    return findings, states


def verify_checkpoints(
    checkpoints: Iterable[Mapping[str, Any]],
    states: Mapping[int, PartitionState],
    keyring: Keyring,
) -> list[Finding]:
    """Check checkpoint signatures, then the stored chain against each valid checkpoint."""
    findings: list[Finding] = []
    valid: dict[int, list[Mapping[str, Any]]] = {}
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


@dataclass
class _LedgerVerdict:
    record: dict[str, Any]
    canonical: bytes
    valid: bool


def _loc(event: Event) -> tuple[int | None, int | None, str | None]:
    part, seq, eid = event.get("ledger_partition"), event.get("sequence"), event.get("event_id")
    return (
        part if type(part) is int else None,
        seq if type(seq) is int else None,
        eid if isinstance(eid, str) else None,
    )


def reconcile_enforcement(events: Iterable[Event], keyring: Keyring) -> list[Finding]:
    """Proof of enforcement: every committed outcome ran under a valid, earlier allow.

    ``keyring`` holds the processor's verdict keys (expiry judged at ``decided_at``).
    """
    codec = get_codec()
    verdicts: dict[str, list[_LedgerVerdict]] = {}
    outcomes: list[tuple[Event, dict[str, Any]]] = []
    findings: list[Finding] = []
    for ev in events:
        kind = ev.get("kind")
        if kind not in ("verdict", "outcome"):
            continue
        name = "Verdict" if kind == "verdict" else "ActionOutcome"
        part, seq, eid = _loc(ev)
        payload = ev.get("payload")
        try:
            if not isinstance(payload, bytes):
                raise CodecError(f"payload is {type(payload).__name__}, not bytes")
            rec = codec.decode_as(name, payload)
        except CodecError as exc:
            findings.append(
                Finding(
                    FindingKind.UNDECODABLE_PAYLOAD,
                    part,
                    seq,
                    eid,
                    f"{kind} event payload is not a {name} record: {exc}",
                )
            )
            continue
        if kind == "outcome":
            outcomes.append((ev, rec))
            continue
        valid = verify_record(rec, "signature", b"", keyring, at_us=rec["decided_at"])
        verdicts.setdefault(rec["action_id"], []).append(_LedgerVerdict(rec, canonical_bytes(rec), valid))
        if not valid:
            findings.append(
                Finding(
                    FindingKind.FORGED_VERDICT,
                    part,
                    seq,
                    eid,
                    f"verdict for action {rec['action_id']!r} in the ledger does not verify "
                    f"against the processor keyring (key_id {rec.get('key_id')!r})",
                    action_id=rec["action_id"],
                )
            )

    for ev, out in outcomes:
        if out["status"] != "committed":
            continue
        findings.extend(_check_outcome(ev, out, verdicts.get(out["action_id"], []), keyring))
    findings.sort(key=Finding.sort_key)
    return findings


def _check_outcome(
    ev: Event, out: dict[str, Any], ledger: list[_LedgerVerdict], keyring: Keyring
) -> list[Finding]:
    part, seq, eid = _loc(ev)
    aid: str = out["action_id"]
    recorded_at: int = out["recorded_at"]
    found: list[Finding] = []

    def add(kind: FindingKind, message: str) -> None:
        found.append(Finding(kind, part, seq, eid, message, action_id=aid))

    allows = [v for v in ledger if v.valid and v.record["decision"] == "allow"]
    if not allows:
        others = sorted({v.record["decision"] if v.valid else "forged" for v in ledger})
        add(
            FindingKind.COMMIT_WITHOUT_ALLOW,
            f"outcome committed action {aid!r} but the ledger holds no validly signed allow "
            f"verdict for it (ledger verdicts: {', '.join(others) or 'none'})",
        )
    elif all(v.record["decided_at"] > recorded_at for v in allows):
        add(
            FindingKind.VERDICT_AFTER_COMMIT,
            f"the allow verdict for {aid!r} was decided at "
            f"{min(v.record['decided_at'] for v in allows)}, after the commit was recorded "
            f"at {recorded_at}",
        )

    raw = out.get("verdict")
    if raw is None:
        add(
            FindingKind.EMBEDDED_VERDICT_MISSING,
            f"committed outcome for {aid!r} carries no verdict",
        )
        return found
    try:
        emb = get_codec().decode_as("Verdict", raw)
    except CodecError as exc:
        add(FindingKind.EMBEDDED_VERDICT_FORGED, f"embedded verdict is not a Verdict record: {exc}")
        return found
    if emb["action_id"] != aid:
        add(
            FindingKind.VERDICT_FOR_OTHER_ACTION,
            f"outcome for action {aid!r} embeds a verdict for action {emb['action_id']!r}",
        )
        return found
    if not verify_record(emb, "signature", b"", keyring, at_us=emb["decided_at"]):
        add(
            FindingKind.EMBEDDED_VERDICT_FORGED,
            f"the verdict embedded in the outcome for {aid!r} does not verify against the "
            f"processor keyring (key_id {emb.get('key_id')!r})",
        )
        return found
    if ledger and all(v.canonical != canonical_bytes(emb) for v in ledger):
        add(
            FindingKind.EMBEDDED_VERDICT_MISMATCH,
            f"the verdict embedded in the outcome for {aid!r} ({emb['decision']}, decided at "
            f"{emb['decided_at']}) differs from every verdict the ledger holds for that action",
        )
    elif (
        emb["decided_at"] > recorded_at
        and allows
        and not any(f.kind is FindingKind.VERDICT_AFTER_COMMIT for f in found)
    ):
        add(
            FindingKind.VERDICT_AFTER_COMMIT,
            f"the embedded verdict for {aid!r} was decided at {emb['decided_at']}, after the "
            f"commit was recorded at {recorded_at}",
        )
    return found


def verify_ledger(
    events: Iterable[Event],
    checkpoints: Iterable[Mapping[str, Any]],
    keyring: Keyring,
    *,
    position_key: str | None = None,
    anchors: Mapping[int, tuple[int, bytes]] | None = None,
    enforcement: bool = True,
) -> list[Finding]:
    """Everything: chain, checkpoints, and (unless ``enforcement=False``) enforcement.

    Findings are sorted by (partition, sequence, kind); an empty list means the ledger
    verified. ``keyring`` holds the processor's public keys (checkpoints and verdicts).
    """
    rows = events if isinstance(events, list) else list(events)
    findings, states = verify_chain(rows, position_key=position_key, anchors=anchors)
    findings.extend(verify_checkpoints(checkpoints, states, keyring))
    if enforcement:
        findings.extend(reconcile_enforcement(rows, keyring))
    findings.sort(key=Finding.sort_key)
    return findings
