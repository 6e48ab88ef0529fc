"""The view check's comparison logic, in memory (the real engine: tests/integration/test_verify_views.py)."""

from __future__ import annotations

from typing import Any

from sinks.rows import AUDIT_COLUMNS, EXTRACTED_COLUMNS, audit_event_row
from sinks.summary import SUMMARY_NAMES, fold, partial_row, summary_day
from sinks.view_check import check_views, derived_columns, display_value, stored_column_values
from tests.factories.ledger import MIDNIGHT, reader_scenario
from trust.keys import SigningKey
from trust.verify import FindingKind

_FIRST = AUDIT_COLUMNS.index(EXTRACTED_COLUMNS[0])


def _as_stored(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event with ``_columns`` as the sink writes them (its own row builder)."""
    out = []
    for ev in events:
        row = audit_event_row(ev, ("t", 0, 0))
        values = list(row[_FIRST:])
        values[EXTRACTED_COLUMNS.index("attributes")] = list(values[EXTRACTED_COLUMNS.index("attributes")].items())
        out.append({**ev, "_columns": stored_column_values(values)})
    return out


def _summary_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary a faithful view would hold (rows shaped like SUMMARY_FOLD_SELECT's)."""
    groups: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}
    for ev in events:
        if ev["kind"] in ("action", "verdict", "outcome") and ev["action_id"]:
            key = (ev["tenant"], summary_day(ev["recorded_at"]), ev["action_id"])
            groups.setdefault(key, []).append(partial_row(ev["kind"], derived_columns(ev["kind"], ev["payload"])))
    return [{"tenant": t, "day_iso": d, "action_id": a,
             **{f"s_{n}": v for n, v in zip(SUMMARY_NAMES, fold(p), strict=True)}}
            for (t, d, a), p in groups.items()]


def _scenario() -> tuple[list[dict[str, Any]], dict[str, str]]:
    lb, _, ids = reader_scenario(SigningKey.generate())
    return _as_stored(lb.events), ids


def test_the_sinks_rows_verify_clean() -> None:
    events, _ = _scenario()
    report = check_views(events, _summary_rows(events))
    assert report.findings == [] and report.rows == len(events) and report.summary_rows == 8


def test_an_edited_column_names_row_column_and_both_values() -> None:
    events, ids = _scenario()
    verdict = next(e for e in events if e["action_id"] == ids["blocked"] and e["kind"] == "verdict")
    cols = list(verdict["_columns"])
    cols[EXTRACTED_COLUMNS.index("decision")] = "allow"
    cols[EXTRACTED_COLUMNS.index("attributes")] = [("sql", "a"), ("sql", "b")]  # a duplicated map key
    verdict["_columns"] = tuple(cols)
    found = check_views(events, None).findings
    assert [(f.kind, f.column, f.stored, f.ledger) for f in found] == [
        (FindingKind.ALTERED_VIEW, "attributes", [["sql", "a"], ["sql", "b"]], {}),
        (FindingKind.ALTERED_VIEW, "decision", "allow", "block"),
    ]
    assert {(f.partition, f.sequence, f.event_id, f.action_id, f.table) for f in found} == {
        (0, verdict["sequence"], verdict["event_id"], ids["blocked"], "audit_events")}


def test_summary_fold_is_max_per_column_as_clickhouse_folds() -> None:
    a = ("b", ["x"], [("b", "1")], 5)
    b = ("a", ["x", "y"], [("a", "2"), ("z", "0")], 7)
    assert fold([a, b]) == ("b", ["x", "y"], [("b", "1")], 7)
    assert display_value("attributes", [("a", "1")]) == {"a": "1"} and display_value("attributes", []) == {}
    assert display_value("rule_ids", []) == []
    assert summary_day(MIDNIGHT - 1) == "2023-11-14" and summary_day(MIDNIGHT) == "2023-11-15"


def test_undecodable_payload_is_summarized_with_empty_columns() -> None:
    events, ids = _scenario()
    bad = next(e for e in events if e["action_id"] == ids["undecodable"])
    derived = dict(zip(EXTRACTED_COLUMNS, derived_columns(bad["kind"], bad["payload"]), strict=True))
    assert derived["decode_error"].startswith("TruncatedRecord") and derived["payload_schema"] == ""
    partial = dict(zip(SUMMARY_NAMES, partial_row("action", tuple(derived.values())), strict=True))
    assert partial["has_action"] == 1 and partial["actor_id"] == "" and partial["attributes"] == []


def test_a_window_judges_only_actions_proposed_in_it() -> None:
    events, ids = _scenario()
    summary = _summary_rows(events)
    window = [e for e in events if not (e["action_id"] == ids["allowed"] and e["kind"] == "action")]
    partial = check_views(window, summary, complete=False)
    assert partial.findings == []  # 'allowed' lost its proposal to the window: not judged
    whole = check_views(window, summary)
    assert {(f.kind, f.action_id) for f in whole.findings} >= {(FindingKind.ALTERED_SUMMARY, ids["allowed"])}


def test_a_live_store_is_rechecked_before_a_summary_difference_is_reported() -> None:
    events, ids = _scenario()
    summary = _summary_rows(events)  # the view already holds the failed action's outcome...
    outcome = next(e for e in events if e["action_id"] == ids["failed"] and e["kind"] == "outcome")
    read = [e for e in events if e is not outcome]  # ...that landed after the events were read
    assert {f.action_id for f in check_views(read, summary).findings} == {ids["failed"]}

    asked: list[set[str]] = []

    def recheck(actions: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        asked.append(actions)
        return [e for e in events if e["action_id"] in actions], summary

    report = check_views(read, summary, recheck=recheck)
    assert report.findings == [] and report.rechecked == 1 and asked == [{ids["failed"]}]

    # A row that appears among the checked records (not after them) explains nothing.
    forged = outcome | {"sequence": 2}
    report = check_views(read, summary, recheck=lambda a: ([*read, forged], summary))
    assert {(f.kind, f.action_id) for f in report.findings} == {(FindingKind.ALTERED_SUMMARY, ids["failed"])}


def test_an_action_whose_verdict_is_still_in_flight_has_consistent_views() -> None:
    # verify's enforcement pass calls such an outcome pending; the views must not flag it
    # either: the stored events and the summary folded from them agree without the verdict.
    events, ids = _scenario()
    verdict = next(e for e in events if e["action_id"] == ids["allowed"] and e["kind"] == "verdict")
    in_flight = [e for e in events if e["payload"] != verdict["payload"]]  # both chained copies
    assert len(in_flight) == len(events) - 2
    report = check_views(in_flight, _summary_rows(in_flight))
    assert report.findings == [] and report.rechecked == 0
    # The verdict lands (chained after the outcome, so above the read head) between reading
    # the events and the summary: the summary differs at first, the recheck sees the verdict.
    head = max(e["sequence"] for e in in_flight if e["ledger_partition"] == 0)
    landed = [e | {"sequence": head + 1 + i} for i, e in enumerate(x for x in events if x not in in_flight)]
    summary = _summary_rows(in_flight + landed)
    assert {f.action_id for f in check_views(in_flight, summary).findings} == {ids["allowed"]}
    report = check_views(in_flight, summary, recheck=lambda a: ([*in_flight, *landed], summary))
    assert report.findings == [] and report.rechecked == 1
