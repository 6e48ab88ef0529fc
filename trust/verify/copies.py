"""The store against the replay topics: two copies of one ledger, compared record by record.

Why: a chain proves itself only up to its newest signed checkpoint. Someone who can write
the store can rewrite (and re-hash) the records after it, and ``verify`` on the store alone
cannot tell — the rewritten tail is a valid chain. The replay topics are a second copy
that the store's writer cannot edit; comparing the two names the first record where they
part, whatever the chain says.

Contract: records are keyed by (ledger partition, sequence), checkpoints by checkpoint id,
and compared on every field of their schema (``AUDIT_FIELDS``, ``CHECKPOINT_FIELDS``).
Byte-identical duplicates on either side collapse (at-least-once delivery and storage
produce them). Each difference is a ``store_differs_from_topics`` finding:

==========================================  =============================================
observation                                 finding names
==========================================  =============================================
a topic record the store should hold         the record (partition, sequence), "missing in
(``landed`` says so) is not stored           store"; ``ledger`` = the topic's record
a stored record no topic record has          the stored row, "extra in store"
a stored record differs from the topic's     the stored row and the differing fields;
record at the same place                     ``stored``/``ledger`` = those fields' values
==========================================  =============================================

``landed`` decides which topic records the store must already hold: the sink commits an
offset only after the rows below it are inserted, so a record below the sink's committed
offset is owed; one above it may still be on its way and is counted as pending, not
reported. Pure: the caller reads both copies (and the sink's committed offsets).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.records import AUDIT_FIELDS, CHECKPOINT_FIELDS
from trust.verify.findings import Event, Finding, FindingKind
from trust.verify.record_fields import differing_fields, field_identity, json_value

__all__ = ["CopiesReport", "compare_copies"]

Landed = Callable[[Mapping[str, Any]], bool]
"""Whether the store must already hold this replay record (see the module docstring)."""


@dataclass
class CopiesReport:
    """What was compared, what was still on its way, and what differed."""

    findings: list[Finding] = field(default_factory=list)
    records: int = 0
    """Distinct (partition, sequence) places and checkpoint ids compared."""
    pending: int = 0
    """Topic records absent from the store but not yet owed by it (beyond the sink's commit)."""


def _group(records: Iterable[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], Any],
           fields: tuple[str, ...]) -> dict[Any, dict[tuple[Any, ...], Mapping[str, Any]]]:
    out: dict[Any, dict[tuple[Any, ...], Mapping[str, Any]]] = {}
    for rec in records:
        out.setdefault(key(rec), {}).setdefault(field_identity(rec, fields), rec)
    return out


def _where(rec: Mapping[str, Any]) -> str:
    pos = rec.get("_position")
    return f" (topic partition {pos[0]}, offset {pos[1]})" if isinstance(pos, tuple) else ""


@dataclass
class _Shape:
    """How one record type is keyed, located and named in findings."""

    fields: tuple[str, ...]
    table: str
    key: Callable[[Mapping[str, Any]], Any]
    place: Callable[[Any, Mapping[str, Any]], tuple[int | None, int | None, str | None, str | None]]
    label: Callable[[Any], str]


def _event_place(key: Any, rec: Mapping[str, Any]) -> tuple[int | None, int | None, str | None, str | None]:
    eid = rec.get("event_id")
    return key[0], key[1], eid if isinstance(eid, str) else None, None


def _checkpoint_place(key: Any, rec: Mapping[str, Any]) -> tuple[int | None, int | None, str | None, str | None]:
    part, first = rec.get("ledger_partition"), rec.get("first_sequence")
    return (part if type(part) is int else None, first if type(first) is int else None, None,
            key if isinstance(key, str) else None)


_EVENTS = _Shape(AUDIT_FIELDS, "audit_events",
                 lambda r: (r.get("ledger_partition"), r.get("sequence")), _event_place,
                 lambda k: f"record {k[1]} of partition {k[0]}")
_CHECKPOINTS = _Shape(CHECKPOINT_FIELDS, "checkpoints", lambda r: r.get("checkpoint_id"),
                      _checkpoint_place, lambda k: f"checkpoint {k!r}")


def _finding(shape: _Shape, key: Any, rec: Mapping[str, Any], message: str, *, column: str | None = None,
             stored: Any = None, ledger: Any = None) -> Finding:
    part, seq, eid, cp_id = shape.place(key, rec)
    aid = rec.get("action_id")
    return Finding(FindingKind.STORE_DIFFERS_FROM_TOPICS, part, seq, eid, message, checkpoint_id=cp_id,
                   action_id=aid if isinstance(aid, str) else None, table=shape.table, column=column,
                   stored=stored, ledger=ledger)


def _compare(shape: _Shape, stored: Iterable[Mapping[str, Any]], replay: Iterable[Mapping[str, Any]],
             landed: Landed, report: CopiesReport) -> None:
    mine = _group(stored, shape.key, shape.fields)
    theirs = _group(replay, shape.key, shape.fields)
    for key in mine.keys() | theirs.keys():
        report.records += 1
        have, want = mine.get(key, {}), theirs.get(key, {})
        if have.keys() == want.keys():
            continue
        extra = [rec for ident, rec in have.items() if ident not in want]
        owed = [rec for ident, rec in want.items() if ident not in have]
        label = shape.label(key)
        for rec in extra:
            if not want:
                report.findings.append(_finding(
                    shape, key, rec, f"{label} is in the store but in no replay topic record: extra in store",
                    stored={f: json_value(rec.get(f)) for f in shape.fields}))
                continue
            other = next(iter(want.values()))
            diff = differing_fields(rec, other, shape.fields)
            report.findings.append(_finding(
                shape, key, rec,
                f"{label} differs from the replay topic's copy{_where(other)} in {', '.join(diff)}",
                column=", ".join(diff), stored={f: json_value(rec.get(f)) for f in diff},
                ledger={f: json_value(other.get(f)) for f in diff}))
        if extra:
            continue  # the owed variants are what the differing rows replaced
        for rec in owed:
            if not landed(rec):
                report.pending += 1
                continue
            report.findings.append(_finding(
                shape, key, rec,
                f"{label} is in the replay topics{_where(rec)} and the sink has committed past it, "
                "but the store does not hold it: missing in store",
                ledger={f: json_value(rec.get(f)) for f in shape.fields}))


def compare_copies(
    stored_events: Iterable[Event],
    replay_events: Iterable[Event],
    *,
    stored_checkpoints: Iterable[Mapping[str, Any]] = (),
    replay_checkpoints: Iterable[Mapping[str, Any]] = (),
    landed: Landed = lambda _: True,
) -> CopiesReport:
    """Compare the store's records and checkpoints with the replay topics' (module docstring).

    ``landed(record)`` gets a replay record (with its ``_position`` when the reader gave
    one) and says whether the store must hold it by now; default: everything.
    """
    report = CopiesReport()
    _compare(_EVENTS, stored_events, replay_events, landed, report)
    _compare(_CHECKPOINTS, stored_checkpoints, replay_checkpoints, landed, report)
    report.findings.sort(key=Finding.sort_key)
    return report
