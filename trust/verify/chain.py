"""Chain verification: recompute every partition's hash chain and diagnose breaks.

The decision table is in :mod:`trust.verify` (the package docstring). The common case, a
clean chain, takes :func:`_fast_pass`; anything unusual goes to the careful diagnosis.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from trust.canonical import CANONICAL_VERSION
from trust.chain import AUDIT_FIELDS, GENESIS, ChainError, hashed_bytes, v1_body
from trust.verify.findings import Event, Finding, FindingKind, PartitionState, finding_at

__all__ = ["verify_chain"]

_sha256 = hashlib.sha256
_FULL_SEARCH_LIMIT = 1000  # suspects that get the wide reorder search; the rest try s±1
_NEIGHBOURS = 16
_BY_SEQUENCE = operator.itemgetter("sequence")


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

    The hashed bytes come from :func:`trust.chain.v1_body`, the function the chain writer
    uses; this loop is the verifier's hot path, so fields are unpacked once and type-checked
    inline (integers must be exactly ``int``: a bool would print as ``True``). Anything
    unusual returns False and the careful pass decides.
    """
    sha = _sha256
    body_of = v1_body
    version = CANONICAL_VERSION
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
                or ver != version
                or type(seq) is not int
                or type(ver) is not int
                or type(part) is not int
                or type(rec) is not int
                or type(prev) is not bytes
            ):
                return False
            if type(payload) is not bytes:
                return False
            body = body_of(aid, det, eid, kind, tenant, part, rec, seq, payload)
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
                    finding_at(
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
                finding_at(
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
                    finding_at(
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
                    finding_at(
                        FindingKind.MODIFIED_RECORD,
                        partition,
                        row,
                        f"first record of the partition does not start from "
                        f"{'GENESIS' if start_prev == GENESIS else 'the anchor hash'}",
                    )
                )
            elif linked_from_next:
                findings.append(
                    finding_at(
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
                    finding_at(
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
                    finding_at(
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
                    _shiftfinding_at(partition, run, delta, claimed=claimed, chosen=chosen, handled=handled)
                )
            run = [s]
        if run:
            findings.extend(
                _shiftfinding_at(partition, run, delta, claimed=claimed, chosen=chosen, handled=handled)
            )

    for row in suspects:
        s = row["sequence"]
        if s in handled:
            continue
        if s in origin:
            findings.append(
                finding_at(
                    FindingKind.REORDERED_RECORDS,
                    partition,
                    row,
                    f"record stored at sequence {s} was chained at sequence {origin[s]}: "
                    "records were moved within the chain",
                )
            )
        else:
            findings.append(
                finding_at(
                    FindingKind.MODIFIED_RECORD,
                    partition,
                    row,
                    f"record {s} was modified: its content no longer hashes to its stored hash",
                )
            )
    return findings


def _shiftfinding_at(
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
            finding_at(
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
            finding_at(
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
        finding_at(
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
                finding_at(
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

