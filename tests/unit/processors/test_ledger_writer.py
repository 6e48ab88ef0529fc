"""The ledger writer core without Kafka: chaining, dedup, checkpoint schedule, recovery.

The last test drives the core through the shell's protocol (one transaction per batch,
recovery from the committed log only) against an in-memory log and crashes it at random
points, with the upstream re-delivering inputs: the committed ledger must never hold an
event twice, never lose one, and end fully checkpointed.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.ledger_writer import LedgerWriter
from schemas.records import AuditKind, audit_event, event_id_for
from trust.chain import ChainError
from trust.keys import Keyring, SigningKey
from trust.merkle import consistency_proof, merkle_root, verify_consistency
from trust.partition_log import LogFrontier, checkpointed_frontier
from trust.tlog import DEFAULT_LOG_NAME, NOTE_FORMAT, open_log_checkpoint, verify_log_checkpoint
from trust.verify import CoverageRule, verify_ledger

KEY = SigningKey.generate()
RING = Keyring([KEY.public()])


def writer(every: int = 1000, interval_s: float = 5.0, window: int = 1000) -> LedgerWriter:
    return LedgerWriter(KEY, "proc-test", checkpoint_every=every, checkpoint_interval_s=interval_s,
                        dedup_window=window)


def intake(n: int, start: int = 0) -> list[dict[str, Any]]:
    """Unchained events as the upstream stages emit them (ids derived from input coordinates)."""
    return [audit_event(AuditKind.ACTION, "acme", f"a{i}", b"payload %d" % i, now_us=1_000 + i,
                        event_id=event_id_for(AuditKind.ACTION, "lockgate.actions", 0, i))
            for i in range(start, start + n)]


def test_chains_from_genesis_and_verifies() -> None:
    w = writer()
    w.recover(0, [], None)
    chained = [w.append(0, ev, now=0.0) for ev in intake(5)]
    assert [c["sequence"] for c in chained if c] == [0, 1, 2, 3, 4]
    assert verify_ledger([c for c in chained if c], [], RING) == []


def test_a_repeated_event_id_is_dropped() -> None:
    w = writer()
    w.recover(0, [], None)
    events = intake(3)
    assert w.append(0, events[1], 0.0) is not None
    assert w.append(0, events[0], 0.0) is not None
    assert w.append(0, dict(events[1], recorded_at=9_999), 0.0) is None  # same id, re-processed later
    assert w.pending(0) == 2


def test_the_dedup_window_is_bounded_and_rebuilt_from_the_tail() -> None:
    w = writer(window=3)
    w.recover(0, [], None)
    events = intake(6)
    log = [c for c in (w.append(0, ev, 0.0) for ev in events) if c]
    assert w.append(0, events[0], 0.0) is not None  # fell out of a 3-event window: chained again
    # A new owner rebuilds the window from the committed tail only.
    fresh = writer(window=3)
    fresh.recover(0, log, None)
    assert fresh.append(0, events[5], 0.0) is None
    assert fresh.append(0, events[4], 0.0) is None
    assert fresh.append(0, events[2], 0.0) is not None


def test_an_event_without_an_id_or_an_unowned_partition_is_refused() -> None:
    w = writer()
    w.recover(0, [], None)
    with pytest.raises(ChainError):
        w.append(0, dict(intake(1)[0], event_id=""), 0.0)
    with pytest.raises(KeyError):
        w.append(1, intake(1)[0], 0.0)


def test_checkpoints_fall_due_by_count_and_by_age_and_cover_the_whole_log() -> None:
    w = writer(every=4, interval_s=5.0)
    w.recover(0, [], None)
    log = [c for c in (w.append(0, ev, now=10.0) for ev in intake(3)) if c]
    assert w.due_checkpoints(now=10.0, now_us=1) == []  # 3 < 4 pending, none waited 5 s
    log += [c for c in (w.append(0, ev, now=10.0) for ev in intake(7, start=3)) if c]
    by_count = w.due_checkpoints(now=10.0, now_us=1)
    assert [(c["first_sequence"], c["last_sequence"]) for c in by_count] == [(0, 9)]
    assert w.due_checkpoints(now=20.0, now_us=2) == []  # nothing pending
    log += [c for c in (w.append(0, ev, now=21.0) for ev in intake(2, start=10)) if c]
    assert w.due_checkpoints(now=25.9, now_us=3) == []
    by_age = w.due_checkpoints(now=26.0, now_us=4)
    assert [(c["first_sequence"], c["last_sequence"]) for c in by_age] == [(0, 11)]
    assert all(verify_log_checkpoint(c, RING) for c in by_count + by_age)
    assert verify_ledger(log, by_count + by_age, RING, coverage=CoverageRule(1, 10**15)) == []


def test_the_age_is_the_oldest_pending_events_own() -> None:
    w = writer(interval_s=5.0)
    w.recover(0, [], None)
    w.append(0, intake(1)[0], now=0.0)
    w.append(0, intake(1, start=1)[0], now=4.0)
    (cp,) = w.due_checkpoints(now=5.0, now_us=1)  # the first event waited 5 s: both are covered
    assert (cp["first_sequence"], cp["last_sequence"]) == (0, 1)


def test_checkpoints_are_whole_log_and_each_is_consistent_with_the_last() -> None:
    w = writer(every=3, window=5)
    w.recover(0, [], None)
    log: list[dict[str, Any]] = []
    cps: list[dict[str, Any]] = []
    for start in (0, 3, 6, 9):
        log += [c for c in (w.append(0, ev, 0.0) for ev in intake(3, start=start)) if c]
        cps += w.due_checkpoints(now=0.0, now_us=start + 1)
    # A new owner rebuilds the log from the stored hashes, with a tail shorter than the log.
    nxt = writer(every=3, window=5)
    nxt.recover(0, log[-5:], cps[-1]["last_sequence"], [c["hash"] for c in log])
    log += [c for c in (nxt.append(0, ev, 0.0) for ev in intake(3, start=12)) if c]
    cps += nxt.due_checkpoints(now=0.0, now_us=99)
    assert [(c["signature_format"], c["first_sequence"], c["last_sequence"], c["checkpoint_id"]) for c in cps] == [
        (NOTE_FORMAT, 0, size - 1, f"p0@{size}") for size in (3, 6, 9, 12, 15)]
    opened = [open_log_checkpoint(c, RING, log_name=DEFAULT_LOG_NAME) for c in cps]
    hashes = [c["hash"] for c in log]
    for cp, lc in zip(cps, opened, strict=True):
        assert lc.root == cp["merkle_root"] == merkle_root(hashes[: lc.size])
    for old, new in itertools.pairwise(opened):
        proof = consistency_proof(hashes[: new.size], old.size)
        assert verify_consistency(old.size, new.size, old.root, new.root, proof)
    assert verify_ledger(log, cps, RING, coverage=CoverageRule(1, 10**15), log_name=DEFAULT_LOG_NAME) == []


def test_recovery_continues_the_committed_chain_and_covers_what_the_last_owner_left() -> None:
    first = writer()
    first.recover(0, [], None)
    log = [c for c in (first.append(0, ev, 0.0) for ev in intake(8)) if c]
    cps = first.due_checkpoints(now=100.0, now_us=1)
    log += [c for c in (first.append(0, ev, 100.0) for ev in intake(5, start=8)) if c]
    # The first owner dies before checkpointing 8..12; the next one starts from the log alone.
    nxt = writer()
    state = nxt.recover(0, log, cps[-1]["last_sequence"])
    assert (state.next_sequence, state.uncovered) == (13, 5)
    recovered = nxt.due_checkpoints(now=100.0, now_us=2)  # due at once, not after an interval
    assert [(c["first_sequence"], c["last_sequence"]) for c in recovered] == [(0, 12)]
    log += [c for c in (nxt.append(0, ev, 100.0) for ev in intake(2, start=13)) if c]
    assert [c["sequence"] for c in log] == list(range(15))
    final = nxt.due_checkpoints(now=200.0, now_us=3)
    assert verify_ledger(log, cps + recovered + final, RING, coverage=CoverageRule(1, 10**15)) == []


def test_recovery_signs_the_stored_log_and_verify_names_what_does_not_link() -> None:
    w = writer()
    w.recover(0, [], None)
    log = [c for c in (w.append(0, ev, 0.0) for ev in intake(6)) if c]
    forked = [*log[:4], dict(log[4], detail="someone else's event 4"), log[5]]  # a fork left by old code
    nxt = writer()
    state = nxt.recover(0, forked, None)
    assert state.uncovered == 6
    (cp,) = nxt.due_checkpoints(now=0.0, now_us=1)
    assert (cp["first_sequence"], cp["last_sequence"]) == (0, 5)
    findings = verify_ledger(forked, [cp], RING, enforcement=False)
    assert findings and {f.sequence for f in findings} == {4}


def test_recovery_refuses_hashes_that_do_not_end_at_the_head() -> None:
    w = writer()
    w.recover(0, [], None)
    log = [c for c in (w.append(0, ev, 0.0) for ev in intake(4)) if c]
    nxt = writer()
    with pytest.raises(ChainError):
        nxt.recover(0, log[-2:], None, [c["hash"] for c in log[:3]])  # one event short
    with pytest.raises(ChainError):
        nxt.recover(0, [*log[:2], log[3]], None)  # sequence 2 missing
    assert not nxt.owns(0)


# -- recovery from a checkpointed frontier ----------------------------------------------------


def _checkpointed(n: int, at: int, window: int) -> tuple[list[dict[str, Any]], dict[str, Any], LogFrontier]:
    """``n`` chained events of partition 0, a checkpoint at size ``at``, and its proven frontier."""
    w = writer(window=window)
    w.recover(0, [], None)
    log = [c for c in (w.append(0, ev, 0.0) for ev in intake(at)) if c]
    (cp,) = w.due_checkpoints(now=100.0, now_us=1)
    raw = w.partition_log(0).frontier().to_bytes()  # what the stage publishes with the checkpoint
    log += [c for c in (w.append(0, ev, 100.0) for ev in intake(n - at, start=at)) if c]
    return log, cp, checkpointed_frontier(cp, raw, KEY.public(), log_name=DEFAULT_LOG_NAME)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 400), st.data())
def test_recovery_from_the_frontier_and_the_suffix_equals_the_full_rebuild(n: int, data: st.DataObject) -> None:
    at = data.draw(st.integers(1, n), label="checkpoint size")
    window = data.draw(st.integers(1, 50), label="dedup window")
    log, cp, frontier = _checkpointed(n, at, window)
    full, resumed = writer(window=window), writer(window=window)
    whole = full.recover(0, log, cp["last_sequence"], [c["hash"] for c in log])
    # What the stage reads: back to the checkpoint's last event and the dedup window.
    tail = log[max(0, min(at - 1, n - window)):]
    fast = resumed.recover(0, tail, cp["last_sequence"], frontier=frontier)
    assert fast == whole
    assert resumed.partition_log(0).size == full.partition_log(0).size == n
    assert resumed.partition_log(0).root() == full.partition_log(0).root() == merkle_root([c["hash"] for c in log])
    assert resumed.partition_log(0).head == full.partition_log(0).head == log[-1]["hash"]
    more = intake(3, start=n)
    after = [[c for c in (w.append(0, ev, 200.0) for ev in more) if c] for w in (full, resumed)]
    assert after[0] == after[1]
    roots = [[c["merkle_root"] for c in w.due_checkpoints(300.0, 2)] for w in (full, resumed)]
    assert roots[0] == roots[1] and len(roots[0]) == 1


def test_recovery_from_a_frontier_refuses_events_that_do_not_continue_it() -> None:
    log, cp, frontier = _checkpointed(10, 6, window=3)
    last = cp["last_sequence"]
    cases = {
        "without the checkpoint's last event": log[last + 1:],
        "with that event stored under another hash": [*log[:last], dict(log[last], hash=b"" * 32), *log[last + 1:]],
        "with an event after it repeated": [*log[last:8], log[7], *log[8:]],
        "with an event after it missing": [*log[last:7], *log[8:]],
    }
    for what, tail in cases.items():
        nxt = writer(window=3)
        with pytest.raises(ChainError):
            nxt.recover(0, tail, last, frontier=frontier)
        assert not nxt.owns(0), what
    with pytest.raises(ValueError, match="last_checkpointed = size - 1"):
        writer().recover(0, log, last - 1, frontier=frontier)
    with pytest.raises(ValueError, match="not both"):
        writer().recover(0, log, last, [c["hash"] for c in log], frontier=frontier)


def test_release_forgets_the_partition() -> None:
    w = writer()
    w.recover(0, [], None)
    w.release(0)
    assert not w.owns(0) and w.due_checkpoints(0.0, 0) == []


# -- crash anywhere -----------------------------------------------------------------------


@dataclass
class _Log:
    """The committed state of one intake partition and its audit partition."""

    audit: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    frontiers: list[bytes] = field(default_factory=list)  # published with each checkpoint
    committed_offset: int = 0
    from_frontier: bool = False

    def recover(self, w: LedgerWriter) -> None:
        last = max((c["last_sequence"] for c in self.checkpoints), default=None)
        if not self.from_frontier or last is None:
            w.recover(0, self.audit, last)
            return
        cp, raw = next((c, f) for c, f in zip(reversed(self.checkpoints), reversed(self.frontiers), strict=True)
                       if c["last_sequence"] == last)
        frontier = checkpointed_frontier(cp, raw, KEY.public(), log_name=DEFAULT_LOG_NAME)
        w.recover(0, self.audit[max(0, min(last, len(self.audit) - w.dedup_window)):], last, frontier=frontier)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=60),
    batches=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=30),
    crashes=st.sets(st.integers(min_value=0, max_value=40), max_size=8),
    redeliver=st.lists(st.tuples(st.integers(0, 59), st.integers(1, 6)), max_size=6),
    from_frontier=st.booleans(),
)
def test_a_crash_at_any_batch_never_duplicates_loses_or_leaves_events_unprovable(
        n: int, batches: list[int], crashes: set[int], redeliver: list[tuple[int, int]],
        from_frontier: bool) -> None:
    unique = intake(n)
    # The upstream is at-least-once: after its own crashes it re-sends a run of earlier inputs.
    stream: list[dict[str, Any]] = []
    for i, ev in enumerate(unique):
        stream.append(ev)
        for at, length in redeliver:
            if at == i:
                stream.extend(dict(e, recorded_at=e["recorded_at"] + 1) for e in unique[max(0, i - length):i])
    log = _Log(from_frontier=from_frontier)
    w = writer(every=7, interval_s=1.0, window=50)
    log.recover(w)
    clock, step = 0.0, 0
    while log.committed_offset < len(stream):
        size = batches[step % len(batches)]
        batch = stream[log.committed_offset:log.committed_offset + size]
        clock += 0.4
        chained = [c for c in (w.append(0, ev, clock) for ev in batch) if c]
        cps = w.due_checkpoints(clock, int(clock * 1e6))
        frontiers = [w.partition_log(0).frontier().to_bytes() for _ in cps]
        if step in crashes:  # the transaction never commits; a new owner takes over
            w = writer(every=7, interval_s=1.0, window=50)
            log.recover(w)
        else:
            log.audit += chained
            log.checkpoints += cps
            log.frontiers += frontiers
            log.committed_offset += len(batch)
        step += 1
    log.checkpoints += w.due_checkpoints(clock + 10.0, 0)

    ids = [e["event_id"] for e in log.audit]
    assert len(ids) == len(set(ids)), "an event was chained twice"
    assert set(ids) == {e["event_id"] for e in unique}, "an event was lost"
    assert verify_ledger(log.audit, log.checkpoints, RING, coverage=CoverageRule(1, 10**15)) == []


def test_ids_are_uuids() -> None:
    assert uuid.UUID(intake(1)[0]["event_id"]).version == 5
