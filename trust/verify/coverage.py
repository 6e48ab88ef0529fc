"""Completeness: every event chained once, and every event covered by a signed checkpoint.

Neither is tampering, and the chain checks cannot see either: an event chained twice (at
two sequences, each linking correctly) is a valid chain, and an event no checkpoint
covers verifies just as well — it only cannot be *proven* (``lockgate prove``) and could
be rewritten without a trace. The exactly-once ledger stage promises neither happens;
this pass checks the promise.

=========================================================  ==================
Observation                                                Finding
=========================================================  ==================
an ``event_id`` stored at two or more places (partition,   ``duplicate_event``
sequence); byte-identical copies of one row (a retried     at every place
insert) are one place                                      after the first
a run of events no validly signed checkpoint of their      ``uncovered_event``
partition covers, ``recorded_at`` older than twice the     at the run's first
checkpoint interval (the writer signs one within one       event, the message
interval of chaining an event)                             gives the run
=========================================================  ==================

"First" place: the lowest (partition, sequence). A checkpoint counts as covering when
its signature verifies; whether the stored events match it is the checkpoint pass's job.
Age is judged by the event's own ``recorded_at``, which the stage that created it set: an
event recorded during a ledger outage and chained afterwards is reported until the next
checkpoint (seconds) — re-run ``verify`` rather than act on a fresh one.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trust.verify.findings import Event, Finding, FindingKind, finding_at

__all__ = ["CoverageRule", "duplicate_events", "uncovered_events"]


@dataclass(frozen=True)
class CoverageRule:
    """When an uncovered event becomes a finding: older than ``2 * interval_us`` at ``now_us``."""

    interval_us: int
    now_us: int

    @property
    def cutoff_us(self) -> int:
        return self.now_us - 2 * self.interval_us


def duplicate_events(rows: Iterable[Event]) -> list[Finding]:
    """A ``duplicate_event`` finding for every extra place an event id is stored at."""
    places: dict[str, dict[tuple[int, int], Event]] = {}
    for row in rows:
        eid, part, seq = row.get("event_id"), row.get("ledger_partition"), row.get("sequence")
        if not isinstance(eid, str) or type(part) is not int or type(seq) is not int:
            continue  # not an AuditEvent: the chain pass names it
        places.setdefault(eid, {}).setdefault((part, seq), row)
    findings: list[Finding] = []
    for eid, at in places.items():
        if len(at) < 2:
            continue
        ordered = sorted(at)
        first_part, first_seq = ordered[0]
        for part, seq in ordered[1:]:
            findings.append(finding_at(
                FindingKind.DUPLICATE_EVENT, part, at[(part, seq)],
                f"event {eid} is chained {len(ordered)} times; its first place is partition {first_part} "
                f"sequence {first_seq}: an input was recorded twice",
            ))
    return findings


def uncovered_events(rows: Iterable[Event], checkpoints: Mapping[int, Sequence[Mapping[str, Any]]],
                     rule: CoverageRule) -> list[Finding]:
    """An ``uncovered_event`` finding per run of old events no valid checkpoint covers.

    ``checkpoints``: the validly signed checkpoints by partition.
    """
    by_part: dict[int, dict[int, Event]] = {}
    for row in rows:
        part, seq = row.get("ledger_partition"), row.get("sequence")
        if type(part) is int and type(seq) is int:
            by_part.setdefault(part, {}).setdefault(seq, row)
    findings: list[Finding] = []
    for part in sorted(by_part):
        intervals = _merged((int(c["first_sequence"]), int(c["last_sequence"])) for c in checkpoints.get(part, ()))
        starts = [a for a, _ in intervals]
        run: list[Event] = []
        for seq in sorted(by_part[part]):
            row = by_part[part][seq]
            i = bisect.bisect_right(starts, seq) - 1
            covered = i >= 0 and intervals[i][1] >= seq
            recorded = row.get("recorded_at")
            old = type(recorded) is int and recorded < rule.cutoff_us
            if not covered and old and (not run or run[-1]["sequence"] == seq - 1):
                run.append(row)
                continue
            findings.extend(_run_finding(part, run, rule))
            run = [row] if not covered and old else []
        findings.extend(_run_finding(part, run, rule))
    return findings


def _merged(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _run_finding(part: int, run: list[Event], rule: CoverageRule) -> list[Finding]:
    if not run:
        return []
    first, last = run[0]["sequence"], run[-1]["sequence"]
    span = f"sequence {first}" if first == last else f"sequences {first}..{last} ({len(run)} events)"
    return [finding_at(
        FindingKind.UNCOVERED_EVENT, part, run[0],
        f"{span} of partition {part}: no signed checkpoint covers them, and they were recorded more than "
        f"twice the checkpoint interval ({rule.interval_us / 1e6:g}s) ago; they cannot be proven and could "
        "be rewritten unnoticed",
    )]
