"""Prove what people read: the store's derived columns and per-action summary, re-derived
from the chained payloads.

Why: ``verify``'s chain pass proves the ledger fields (payload included) of every stored
row, but readers — ``lockgate audit query``, the API list and detail, the dashboard,
``/api/stats`` — read the columns the sink derived from each payload and the per-action
summary folded from them. Someone with write access to the store could edit those (turn a
block into an allow, drop a rule id, hide an action from block searches) without touching
one hashed byte. This check closes that gap:

* every stored ``audit_events`` row: each of :data:`sinks.rows.EXTRACTED_COLUMNS` must equal
  :func:`sinks.rows.extracted_columns` of the row's own kind and payload — the function the
  sink wrote it with, not a copy — else ``altered_view`` for that (row, column);
* every ``action_summary`` group (tenant, day, action_id), folded with the aggregates
  readers use, must equal the Python fold (:mod:`sinks.summary`) of the chained events of
  that action on that day, else ``altered_summary`` per column. A stored group that no
  ledger event explains is ``inserted_summary``; a ledger group with no stored row is
  ``missing_summary``. Comparing per day, not only per action, also catches a partial row
  moved to another day (which changes what a time-windowed query shows).

Each finding names the action, the table, the column, the stored value and the ledger
value. The ledger values come from the very rows the chain pass verifies in the same run
(ledger fields and stored columns are read together, one SELECT), so a finding here next
to a clean chain means: the payload is genuine and the column lies. A row the chain pass
flags is still compared with its own (altered) payload; act on the chain finding first.

Reading the store: :data:`EVENT_COLUMNS_SELECT` (appended to the one ledger SELECT of
:mod:`sinks.ledger_rows`) and :data:`SUMMARY_FOLD_SELECT` give stored values in a JSON-safe
form — times as int microseconds, maps as (key, value) pairs so that a duplicated key is
seen — used alike by the store source and the sink's API (``/api/verify/events``,
``/api/verify/summary``). :func:`stored_columns` and :func:`stored_summary` turn a row of
either back into the comparable form that :func:`derived_columns` produces.

Pure apart from the codec: no I/O here; the sources read, the CLI wires.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import Codec, get_codec
from sinks.errors import SinkError
from sinks.rows import EXTRACTED_COLUMNS, extracted_columns
from sinks.summary import SUMMARY_COLUMNS, SUMMARY_NAMES, fold, is_summarized, partial_row, summary_day
from trust.verify.findings import Event, Finding, FindingKind

__all__ = [
    "EVENT_COLUMNS_SELECT",
    "SUMMARY_FOLD_SELECT",
    "Recheck",
    "ViewCheck",
    "check_views",
    "derived_columns",
    "display_value",
    "stored_column_values",
    "stored_columns",
    "stored_summary",
]

SummaryKey = tuple[str, str, str]
"""(tenant, day as ISO date, action_id): the key of one ``action_summary`` group."""

_TIMES = frozenset({"proposed_at", "decided_at", "outcome_at"})
_MAPS = frozenset({"attributes"})
_ATTRS = EXTRACTED_COLUMNS.index("attributes")
_SUMMARY_MAPS = tuple(i for i, name in enumerate(SUMMARY_NAMES) if name in _MAPS)


def _pairs(sql: str) -> str:
    return f"arrayZip(mapKeys({sql}), mapValues({sql}))"


def _event_expr(name: str) -> str:
    if name in _TIMES:
        return f"toUnixTimestamp64Micro({name})"
    return _pairs(name) if name in _MAPS else name


EVENT_COLUMNS_SELECT = ", ".join(f"{_event_expr(n)} AS v_{n}" for n in EXTRACTED_COLUMNS)
"""The derived columns of ``audit_events`` in their JSON-safe form (aliases ``v_<column>``)."""

SUMMARY_FOLD_SELECT = "tenant, toString(day) AS day_iso, action_id, " + ", ".join(
    f"{_pairs(expr) if name in _MAPS else expr} AS s_{name}" for name, expr in SUMMARY_COLUMNS
)
"""One folded ``action_summary`` group per row (use with ``GROUP BY tenant, day, action_id``)."""


def derived_columns(kind: str, payload: bytes, codec: Codec | None = None) -> tuple[Any, ...]:
    """What the sink writes for this event, in the comparable form (maps as lists of pairs)."""
    cols = extracted_columns(kind, payload, codec)
    cols[_ATTRS] = list(cols[_ATTRS].items())
    return tuple(cols)


def _as_pairs(value: Any) -> list[tuple[Any, Any]]:
    """A stored map — (key, value) tuples from ClickHouse, [key, value] lists from JSON — as
    a list of tuples (``tuple`` of a tuple is the tuple itself: the store's path costs nothing)."""
    pairs = list(map(tuple, value))
    if any(len(p) != 2 for p in pairs):
        raise ValueError("a stored map entry is not a (key, value) pair")
    return pairs


_EVENT_KEYS = tuple(f"v_{name}" for name in EXTRACTED_COLUMNS)
_SUMMARY_KEYS = tuple(f"s_{name}" for name in SUMMARY_NAMES)


def stored_column_values(values: Sequence[Any]) -> tuple[Any, ...]:
    """The comparable form of the :data:`EVENT_COLUMNS_SELECT` values of one row, in order."""
    try:
        out = list(values)
        out[_ATTRS] = _as_pairs(out[_ATTRS])
    except (IndexError, TypeError, ValueError) as exc:
        raise SinkError(f"a stored row's derived columns are not in the shape verify reads ({exc})") from exc
    return tuple(out)


def stored_columns(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The comparable form of one row read with :data:`EVENT_COLUMNS_SELECT`, by column name
    (a row of the sink's API)."""
    try:
        values = [row[key] for key in _EVENT_KEYS]
    except KeyError as exc:
        raise SinkError(
            f"a stored row lacks its derived column {exc}; the sink's API predates this "
            "verify: upgrade the sink"
        ) from None
    return stored_column_values(values)


def stored_summary(row: Mapping[str, Any]) -> tuple[SummaryKey, tuple[Any, ...]]:
    """Key and comparable values of one row read with :data:`SUMMARY_FOLD_SELECT`."""
    try:
        key = (str(row["tenant"]), str(row["day_iso"]), str(row["action_id"]))
        values = [row[k] for k in _SUMMARY_KEYS]
        for i in _SUMMARY_MAPS:
            values[i] = _as_pairs(values[i])
    except (KeyError, TypeError, ValueError) as exc:
        raise SinkError(f"a stored summary row is not in the shape verify reads ({exc}); "
                        "upgrade the sink") from exc
    return key, tuple(values)


def display_value(column: str, value: Any) -> Any:
    """A JSON-friendly value of ``column`` for a report: a map (a list of pairs) becomes a
    dict, or stays a list of [key, value] pairs when a key repeats (so that shows)."""
    if column in _MAPS and isinstance(value, list):
        keys = [k for k, _ in value]
        if len(set(keys)) == len(keys):
            return dict(value)
        return [list(p) for p in value]
    return value


def _short(column: str, value: Any) -> str:
    text = repr(display_value(column, value))
    return text if len(text) <= 80 else f"{text[:77]}…"


@dataclass
class ViewCheck:
    """What :func:`check_views` compared, and what disagreed."""

    findings: list[Finding] = field(default_factory=list)
    rows: int = 0
    """``audit_events`` rows whose derived columns were compared."""
    summary_rows: int = 0
    """``action_summary`` groups compared (stored or expected)."""
    rechecked: int = 0
    """Actions whose summary differed at first and were read again (a live store)."""


def _place(ev: Event) -> tuple[int, int]:
    part, seq = ev.get("ledger_partition"), ev.get("sequence")
    return (part if type(part) is int else -1, seq if type(seq) is int else -1)


def _at(ev: Event | None) -> dict[str, Any]:
    if ev is None:
        return {"partition": None, "sequence": None, "event_id": None}
    part, seq = _place(ev)
    eid = ev.get("event_id")
    return {"partition": part if part >= 0 else None, "sequence": seq if seq >= 0 else None,
            "event_id": eid if isinstance(eid, str) else None}


def _column_findings(ev: Event, stored: Sequence[Any], derived: Sequence[Any]) -> list[Finding]:
    at = _at(ev)
    aid = ev.get("action_id")
    kind = ev.get("kind")
    what = f"{kind} of action {aid}" if aid else f"{kind} event"
    out = []
    for name, got, want in zip(EXTRACTED_COLUMNS, stored, derived, strict=True):
        if got == want:
            continue
        out.append(Finding(
            FindingKind.ALTERED_VIEW, at["partition"], at["sequence"], at["event_id"],
            f"audit_events.{name} of record {at['sequence']} ({what}) reads {_short(name, got)}, but "
            f"its chained payload yields {_short(name, want)}",
            action_id=aid if isinstance(aid, str) else None, table="audit_events", column=name,
            stored=display_value(name, got), ledger=display_value(name, want),
        ))
    if len(stored) != len(derived):
        out.append(Finding(
            FindingKind.ALTERED_VIEW, at["partition"], at["sequence"], at["event_id"],
            f"record {at['sequence']} has {len(stored)} derived columns, expected {len(derived)}",
            action_id=aid if isinstance(aid, str) else None, table="audit_events",
        ))
    return out


def _first(events: Iterable[Event]) -> Event:
    return min(events, key=_place)


def _summary_findings(
    expected: Mapping[SummaryKey, tuple[Any, ...]],
    stored: Mapping[SummaryKey, tuple[Any, ...]],
    members: Mapping[SummaryKey, list[Event]],
) -> list[Finding]:
    differing = sorted(k for k in expected.keys() | stored.keys() if expected.get(k) != stored.get(k))
    if not differing:
        return []
    by_action: dict[str, list[Event]] = {}
    for (_, _, aid), evs in members.items():
        by_action.setdefault(aid, []).extend(evs)
    out: list[Finding] = []
    for key in differing:
        tenant, day, aid = key
        want, got = expected.get(key), stored.get(key)
        if got is None:
            at = _at(_first(members[key]))
            out.append(Finding(
                FindingKind.MISSING_SUMMARY, at["partition"], at["sequence"], at["event_id"],
                f"action {aid} (tenant {tenant}) has ledger events on {day} but action_summary "
                "has no row for it that day: readers of the summary do not see them",
                action_id=aid, table="action_summary",
                ledger={"tenant": tenant, "day": day, "action_id": aid},
            ))
            continue
        if want is None:
            known = by_action.get(aid)
            at = _at(_first(known) if known else None)
            why = ("the ledger's events of this action are on other days" if known
                   else "the ledger has no event of this action")
            out.append(Finding(
                FindingKind.INSERTED_SUMMARY, at["partition"], at["sequence"], at["event_id"],
                f"action_summary holds a row for action {aid} (tenant {tenant}) on {day} that no "
                f"ledger event explains: {why}",
                action_id=aid, table="action_summary",
                stored={"tenant": tenant, "day": day, "action_id": aid,
                        **{n: display_value(n, v) for n, v in zip(SUMMARY_NAMES, got, strict=True)}},
            ))
            continue
        at = _at(_first(members[key]))
        for name, have, should in zip(SUMMARY_NAMES, got, want, strict=True):
            if have != should:
                out.append(Finding(
                    FindingKind.ALTERED_SUMMARY, at["partition"], at["sequence"], at["event_id"],
                    f"action_summary.{name} of action {aid} (tenant {tenant}, {day}) reads "
                    f"{_short(name, have)}, but the action's chained events yield {_short(name, should)}",
                    action_id=aid, table="action_summary", column=name,
                    stored=display_value(name, have), ledger=display_value(name, should),
                ))
    return out


Recheck = Callable[[set[str]], tuple[Sequence[Event], Sequence[Mapping[str, Any]]]]
"""Re-reads the given actions now: their stored events (any order) and their summary rows."""


@dataclass
class _Derived:
    """The summary side of one pass over events: partial rows and their events per group."""

    partials: dict[SummaryKey, list[tuple[Any, ...]]] = field(default_factory=dict)
    members: dict[SummaryKey, list[Event]] = field(default_factory=dict)
    proposed: set[str] = field(default_factory=set)

    def add(self, ev: Event, kind: str, derived: tuple[Any, ...]) -> None:
        aid, tenant, at = ev.get("action_id"), ev.get("tenant"), ev.get("recorded_at")
        if not (is_summarized(kind, aid, derived) and isinstance(aid, str) and isinstance(tenant, str)
                and type(at) is int):
            return
        key = (tenant, summary_day(at), aid)
        group = self.partials.get(key)
        if group is None:
            self.partials[key] = group = []
            self.members[key] = []
        group.append(partial_row(kind, derived))
        self.members[key].append(ev)
        if kind == "action":
            self.proposed.add(aid)


def _derive(events: Iterable[Event], codec: Codec, result: ViewCheck | None) -> _Derived:
    """Derive every event's columns; compare stored ones into ``result`` (when given)."""
    out = _Derived()
    for ev in events:
        kind, payload = ev.get("kind"), ev.get("payload")
        if not isinstance(kind, str) or not isinstance(payload, bytes):
            continue  # not an AuditEvent: the chain pass names it
        derived = derived_columns(kind, payload, codec)
        stored = ev.get("_columns")
        if result is not None and stored is not None:
            result.rows += 1
            if stored != derived:
                result.findings.extend(_column_findings(ev, stored, derived))
        out.add(ev, kind, derived)
    return out


def _compare_summary(found: _Derived, summary_rows: Iterable[Mapping[str, Any]],
                     judged: Callable[[str], bool]) -> tuple[list[Finding], int]:
    stored: dict[SummaryKey, tuple[Any, ...]] = {}
    for row in summary_rows:
        key, values = stored_summary(row)
        if judged(key[2]):
            stored[key] = values
    expected = {key: fold(rows) for key, rows in found.partials.items() if judged(key[2])}
    return _summary_findings(expected, stored, found.members), len(expected.keys() | stored.keys())


def _newer(fresh: Iterable[Event], heads: Mapping[Any, int]) -> list[Event]:
    """Fresh events stored after the checked snapshot: beyond its head in their partition."""
    return [ev for ev in fresh if type(ev.get("sequence")) is int
            and ev["sequence"] > heads.get(ev.get("ledger_partition"), -1)]


def check_views(
    events: Iterable[Event],
    summary_rows: Iterable[Mapping[str, Any]] | None,
    *,
    complete: bool = True,
    codec: Codec | None = None,
    recheck: Recheck | None = None,
) -> ViewCheck:
    """Compare what readers see with what the chained payloads yield.

    ``events`` are stored AuditEvents as a ledger source returns them; an event carrying
    ``_columns`` (:func:`stored_columns` of its row) has its derived columns compared.
    ``summary_rows`` are rows read with :data:`SUMMARY_FOLD_SELECT` (``None``: skip the
    summary). ``complete=False`` means ``events`` are a window of the ledger (``verify
    --since``): only actions whose proposal is in the window are judged in the summary
    (an action's events share its ledger partition and follow its proposal, so all of
    them are in the window), and stored rows of other actions are not reported.

    A live store keeps growing between the read of the events and of the summary (and a
    materialized view's rows become visible apart from their source rows), so a summary
    difference may be a race, not an edit. With ``recheck``, the actions whose summary
    differs are read again and judged on the checked events plus those stored since
    (beyond the checked head of their partition — an insertion among checked records does
    not count) against their summary rows now; only what still differs is reported. A
    derived-column difference needs no recheck: a row's columns and payload are read together.
    """
    codec = codec or get_codec()
    result = ViewCheck()
    listed = events if isinstance(events, list) else list(events)
    found = _derive(listed, codec, result)
    if summary_rows is None:
        return result

    def judged(aid: str) -> bool:
        return complete or aid in found.proposed

    summary_findings, result.summary_rows = _compare_summary(found, summary_rows, judged)
    suspects = {f.action_id for f in summary_findings if f.action_id is not None}
    if recheck is not None and suspects:
        fresh_events, fresh_summary = recheck(suspects)
        heads: dict[Any, int] = {}
        for ev in listed:
            part, seq = ev.get("ledger_partition"), ev.get("sequence")
            if type(seq) is int and seq > heads.get(part, -1):
                heads[part] = seq
        again = _derive([ev for ev in listed if ev.get("action_id") in suspects]
                        + _newer((ev for ev in fresh_events if ev.get("action_id") in suspects), heads),
                        codec, None)
        confirmed, _ = _compare_summary(again, fresh_summary,
                                        lambda aid: aid in suspects and (complete or aid in again.proposed))
        result.rechecked = len(suspects)
        summary_findings = confirmed
    result.findings.extend(summary_findings)
    return result
