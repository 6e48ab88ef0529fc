"""``duplicate_event`` and ``uncovered_event``: each event chained once, each event provable.

The cases try to break the findings: chains that verify perfectly yet hold an event twice,
copies that must *not* count (byte-identical rows, a tampered row at the same place),
checkpoints that must not count as cover (forged, another partition's), and the exact
age boundary.
"""

from __future__ import annotations

from typing import Any

from tests.factories.ledger import T0, LedgerBuilder
from trust.chain import Chain
from trust.checkpoints import build_checkpoint
from trust.keys import Keyring, SigningKey
from trust.verify import CoverageRule, FindingKind, verify_ledger

KEY = SigningKey.generate()
RING = Keyring([KEY.public()])
K = FindingKind
INTERVAL_US = 5_000_000


def _ledger(flows: int = 4, partition: int = 0) -> LedgerBuilder:
    b = LedgerBuilder(KEY)
    for _ in range(flows):
        b.flow(partition)
    return b


def _kinds(findings: list[Any]) -> list[tuple[FindingKind, int | None, int | None]]:
    return [(f.kind, f.partition, f.sequence) for f in findings]


def _rechain(events: list[dict[str, Any]], partition: int = 0) -> list[dict[str, Any]]:
    """Chain copies of ``events`` (ids kept) as one valid chain: what a double write looks like."""
    chain = Chain()
    return [chain.append({k: v for k, v in e.items() if k not in ("hash", "prev_hash")}, partition)
            for e in events]


def _late(now_offset_us: int) -> CoverageRule:
    """A rule judged ``now_offset_us`` after the builder's clock started."""
    return CoverageRule(INTERVAL_US, T0 + now_offset_us)


# -- duplicate_event --------------------------------------------------------------------


def test_an_event_chained_twice_in_a_valid_chain_is_named_at_its_second_place() -> None:
    evs = _ledger().partition(0)
    doubled = _rechain([*evs[:5], evs[3], *evs[5:]])  # a crash re-chained event 3 at sequence 5
    findings = verify_ledger(doubled, [], RING)
    assert _kinds(findings) == [(K.DUPLICATE_EVENT, 0, 5)]
    assert findings[0].event_id == evs[3]["event_id"]
    assert "partition 0 sequence 3" in findings[0].message


def test_the_same_event_in_two_partitions_is_a_duplicate() -> None:
    b = _ledger()
    p0 = b.partition(0)
    p1 = _rechain([p0[2]], partition=1)
    findings = verify_ledger(p0 + p1, [], RING, enforcement=False)
    assert _kinds(findings) == [(K.DUPLICATE_EVENT, 1, 0)]


def test_three_copies_are_two_findings() -> None:
    evs = _ledger().partition(0)
    tripled = _rechain([*evs, evs[0], evs[0]])
    assert _kinds(verify_ledger(tripled, [], RING)) == [
        (K.DUPLICATE_EVENT, 0, len(evs)), (K.DUPLICATE_EVENT, 0, len(evs) + 1)]


def test_byte_identical_rows_are_one_place_not_a_duplicate() -> None:
    evs = _ledger().partition(0)
    assert verify_ledger(evs + [dict(e) for e in evs], [], RING) == []


def test_a_tampered_copy_at_the_same_place_is_an_insertion_not_a_duplicate() -> None:
    evs = _ledger().partition(0)
    forged = dict(evs[4], detail="edited")
    kinds = {f.kind for f in verify_ledger([*evs, forged], [], RING)}
    assert K.DUPLICATE_EVENT not in kinds
    assert kinds & {K.INSERTED_RECORD, K.MODIFIED_RECORD}


def test_rows_without_a_place_do_not_break_the_duplicate_pass() -> None:
    evs = _ledger().partition(0)
    junk = [{"event_id": evs[0]["event_id"], "ledger_partition": "0", "sequence": None}]
    kinds = {f.kind for f in verify_ledger([*evs, *junk], [], RING)}
    assert K.DUPLICATE_EVENT not in kinds


# -- uncovered_event --------------------------------------------------------------------


def test_every_event_covered_is_clean_however_old() -> None:
    evs = _ledger().partition(0)
    cps = [build_checkpoint(evs[:5], KEY, "p", 1), build_checkpoint(evs[5:], KEY, "p", 2)]
    assert verify_ledger(evs, cps, RING, coverage=_late(10**12)) == []


def test_an_old_uncovered_tail_is_one_finding_naming_its_first_event_and_span() -> None:
    evs = _ledger().partition(0)
    cps = [build_checkpoint(evs[:7], KEY, "p", 1)]
    findings = verify_ledger(evs, cps, RING, coverage=_late(10**12))
    assert _kinds(findings) == [(K.UNCOVERED_EVENT, 0, 7)]
    assert findings[0].event_id == evs[7]["event_id"]
    assert f"sequences 7..{len(evs) - 1} ({len(evs) - 7} events)" in findings[0].message


def test_a_gap_between_checkpoints_is_found_and_runs_are_separate() -> None:
    evs = _ledger(6).partition(0)
    cps = [build_checkpoint(evs[:5], KEY, "p", 1), build_checkpoint(evs[8:12], KEY, "p", 2)]
    findings = verify_ledger(evs, cps, RING, coverage=_late(10**12))
    assert _kinds(findings) == [(K.UNCOVERED_EVENT, 0, 5), (K.UNCOVERED_EVENT, 0, 12)]
    assert "sequences 5..7 (3 events)" in findings[0].message


def test_overlapping_checkpoints_cover() -> None:
    evs = _ledger().partition(0)
    cps = [build_checkpoint(evs[:8], KEY, "p", 1), build_checkpoint(evs[3:], KEY, "p", 2)]
    assert verify_ledger(evs, cps, RING, coverage=_late(10**12)) == []


def test_a_forged_checkpoint_covers_nothing() -> None:
    evs = _ledger().partition(0)
    forged = build_checkpoint(evs, SigningKey.generate(), "p", 1)
    assert _kinds(verify_ledger(evs, [forged], RING, coverage=_late(10**12))) == [
        (K.FORGED_CHECKPOINT, 0, 0), (K.UNCOVERED_EVENT, 0, 0)]


def test_another_partitions_checkpoint_covers_nothing() -> None:
    b = LedgerBuilder(KEY)
    b.flow(0)
    b.flow(1)
    cps = [build_checkpoint(b.partition(1), KEY, "p", 1)]
    assert _kinds(verify_ledger(b.events, cps, RING, coverage=_late(10**12))) == [(K.UNCOVERED_EVENT, 0, 0)]


def test_young_events_are_not_yet_findings_and_the_boundary_is_exact() -> None:
    evs = _ledger(1).partition(0)  # recorded at T0+1000 .. T0+3000
    newest = max(e["recorded_at"] for e in evs)
    oldest = min(e["recorded_at"] for e in evs)
    at_cutoff = CoverageRule(INTERVAL_US, oldest + 2 * INTERVAL_US)  # age exactly 2 intervals: not yet
    assert verify_ledger(evs, [], RING, coverage=at_cutoff) == []
    just_past = CoverageRule(INTERVAL_US, oldest + 2 * INTERVAL_US + 1)
    assert _kinds(verify_ledger(evs, [], RING, coverage=just_past)) == [(K.UNCOVERED_EVENT, 0, 0)]
    all_old = CoverageRule(INTERVAL_US, newest + 2 * INTERVAL_US + 1)
    (finding,) = verify_ledger(evs, [], RING, coverage=all_old)
    assert f"sequences 0..{len(evs) - 1}" in finding.message


def test_without_a_rule_nothing_is_judged_by_age() -> None:
    evs = _ledger().partition(0)
    assert verify_ledger(evs, [], RING) == []
