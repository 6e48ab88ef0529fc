"""The per-action summary: how readers fold ``action_summary``, and the same fold in Python.

``action_summary`` (migrations ``003_action_summary.sql``, ``005``) holds partial rows keyed by
(tenant, day, action_id): its materialized view turns each ``action``, ``verdict`` (but a
replay block) and ``outcome`` event that has an action id into a partial row of the event's extracted
columns, and the AggregatingMergeTree keeps the ``max`` of each column. Readers finish the
fold with ``GROUP BY`` and the expressions of :data:`SUMMARY_COLUMNS` (``sinks.query``).

:func:`partial_row` and :func:`fold` are those two steps in Python, over the columns
:func:`sinks.rows.extracted_columns` derives from a chained payload. ``verify`` uses them to
compute what every summary row must hold (:mod:`sinks.view_check`); the single-action view
uses them to render an action from its payloads (:mod:`sinks.action_record`). One
definition of "what a reader sees for an action", two engines.

Why the Python fold equals ClickHouse's (pinned by the integration tests, which build a
real store through the sink's writer and its materialized view and compare both ways):
``max`` compares strings bytewise (for valid UTF-8 that is code point order, as Python
compares ``str``), arrays element by element and then by length (as Python compares
lists), maps as their lists of (key, value) pairs in stored order — so the Python side
carries a map as a list of pairs, never as a dict.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sinks.rows import EXTRACTED_COLUMNS

__all__ = [
    "SUMMARY_COLUMNS",
    "SUMMARY_KINDS",
    "SUMMARY_NAMES",
    "fold",
    "is_summarized",
    "partial_row",
    "summary_day",
]

SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("proposed_at", "toUnixTimestamp64Micro(max(proposed_at))"),
    ("decided_at", "toUnixTimestamp64Micro(max(decided_at))"),
    ("outcome_at", "toUnixTimestamp64Micro(max(outcome_at))"),
    ("has_action", "max(has_action)"),
    ("has_verdict", "max(has_verdict)"),
    ("has_outcome", "max(has_outcome)"),
    ("actor_id", "max(actor_id)"),
    ("actor_roles", "max(actor_roles)"),
    ("service", "max(service)"),
    ("type", "max(type)"),
    ("resource", "max(resource)"),
    ("attributes", "max(attributes)"),
    ("sql", "max(sql)"),
    ("change_json", "max(change_json)"),
    ("before_json", "max(before_json)"),
    ("after_json", "max(after_json)"),
    ("decision", "max(decision)"),
    ("basis", "max(basis)"),
    ("rule_ids", "max(rule_ids)"),
    ("rule_effects", "max(rule_effects)"),
    ("rule_modes", "max(rule_modes)"),
    ("policy_name", "max(policy_name)"),
    ("policy_version", "max(policy_version)"),
    ("reason", "max(reason)"),
    ("eval_latency_us", "max(eval_latency_us)"),
    ("outcome_status", "max(outcome_status)"),
    ("error_type", "max(error_type)"),
    ("error_message", "max(error_message)"),
)
"""(column, the aggregate that finishes its fold) — every column a reader of the summary sees."""

SUMMARY_NAMES: tuple[str, ...] = tuple(name for name, _ in SUMMARY_COLUMNS)

SUMMARY_KINDS: frozenset[str] = frozenset({"action", "verdict", "outcome"})
"""Event kinds the materialized view summarizes (when the event has an action id)."""

_FLAGS = {"has_action": "action", "has_verdict": "verdict", "has_outcome": "outcome"}
# The view takes these from the proposal only: verdicts and outcomes repeat them.
_FROM_PROPOSAL_ONLY = frozenset({"actor_id", "service"})
_AT = {name: i for i, name in enumerate(EXTRACTED_COLUMNS)}
# A partial row is picked, in one C call, from the extracted columns extended by the three
# flags of the event's kind and an empty string (what proposal-only columns hold elsewhere).
_N = len(EXTRACTED_COLUMNS)
_FLAG_AT = {flag: _N + i for i, flag in enumerate(_FLAGS)}
_EXTENSION = {kind: (*(int(kind == k) for k in _FLAGS.values()), "") for kind in SUMMARY_KINDS}


def _picker(kind: str) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    at = [
        _FLAG_AT[name] if name in _FLAG_AT
        else _N + len(_FLAGS) if name in _FROM_PROPOSAL_ONLY and kind != "action"
        else _AT[name]
        for name in SUMMARY_NAMES
    ]
    return itemgetter(*at)


_PICK = {kind: _picker(kind) for kind in SUMMARY_KINDS}
_DAY_US = 86_400_000_000
_EPOCH = dt.date(1970, 1, 1)


def is_summarized(kind: Any, action_id: Any, columns: Sequence[Any]) -> bool:
    """Whether the materialized view writes a partial row for this event (its WHERE clause):
    an action, verdict or outcome with an action id, but no replay block (a verdict with
    basis ``replay``: not the action's decision; migration 005). ``columns``: the event's
    extracted columns."""
    return (kind in SUMMARY_KINDS and isinstance(action_id, str) and action_id != ""
            and not (kind == "verdict" and columns[_AT["basis"]] == "replay"))


def partial_row(kind: str, columns: Sequence[Any]) -> tuple[Any, ...]:
    """The partial summary row the view writes for one event, in :data:`SUMMARY_NAMES` order.

    ``columns`` are the event's extracted columns in ``EXTRACTED_COLUMNS`` order, maps as
    lists of (key, value) pairs (the comparable form of :mod:`sinks.view_check`).
    """
    return _PICK[kind]((*columns, *_EXTENSION[kind]))


def fold(partials: Iterable[tuple[Any, ...]]) -> tuple[Any, ...]:
    """``max`` of each column over the partial rows: what ``GROUP BY`` + ``max`` yields."""
    rows = list(partials)
    if len(rows) == 1:
        return rows[0]
    return tuple(map(max, zip(*rows, strict=True)))


@lru_cache(maxsize=4096)
def _day_of(day_number: int) -> str:
    return (_EPOCH + dt.timedelta(days=day_number)).isoformat()


def summary_day(recorded_at_us: int) -> str:
    """The summary's ``day`` of an event: ``toDate(recorded_at)`` in UTC, as ISO text."""
    return _day_of(recorded_at_us // _DAY_US)
