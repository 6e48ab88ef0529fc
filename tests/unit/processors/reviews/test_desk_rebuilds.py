"""A reviews partition is rebuilt when the worker is assigned it, whether or not a record follows.

:class:`DeskRebuilds` over a real :class:`ReviewDesk`; the group's position and the
partition's records are in memory, the blocking reads run in the default executor as in
the worker. Each test says which race it plays.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from lockgate.kernel.partition_reader import StoredRecord
from processors.reviews.desk import DeskResult, ReviewDesk
from processors.reviews.rebuilds import DeskRebuilds
from processors.stage import Source
from schemas.codec import get_codec
from tests.unit.trust.review_fixtures import NOW, REVIEW_RULE, World, proposal, reviews_topic, world

TOPIC = "lockgate.reviews"
LATER = NOW + 601 * 1_000_000  # past REVIEW_RULE's 600 s expiry


class Failed(Exception):
    pass


class Log:
    """One reviews partition, the group's position on it, and what the rebuilds did with them."""

    def __init__(self, records: list[bytes], position: int) -> None:
        self.records = records
        self.at = position
        self.reads: list[int | tuple[int, int]] = []  # end, or (start, end) when not from 0
        self.published: list[tuple[str, bytes]] = []
        self.failures: list[str] = []
        self.replayed: list[tuple[int, DeskResult]] = []
        self.desk: ReviewDesk | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.broken = False

    def position(self, _partition: int) -> int:
        return self.at

    def read(self, partition: int, start: int, end: int) -> Iterable[StoredRecord]:
        self.reads.append(end if start == 0 else (start, end))
        assert self.gate.wait(10)
        if self.broken:
            raise Failed("broker gone")
        return [StoredRecord(partition, offset, None, raw, timestamp_ms=(NOW + 10) // 1000)
                for offset, raw in enumerate(self.records) if start <= offset < end]

    async def replay(self, record: StoredRecord) -> None:
        assert self.desk is not None
        out = self.desk.handle(record.value, Source(TOPIC, record.partition, record.offset), NOW + 10)
        self.replayed.append((record.offset, out))

    async def publish(self, closures: list[tuple[str, bytes]]) -> None:
        self.published.extend(closures)

    def fail(self, reason: str) -> None:
        self.failures.append(reason)


@pytest.fixture
def w(tmp_path: Path) -> World:
    return world(tmp_path)


def _setup(w: World, records: list[bytes], position: int) -> tuple[ReviewDesk, Log, DeskRebuilds]:
    desk = ReviewDesk(w.key, "p2", w.registry)
    log = Log(records, position)
    log.desk = desk
    return desk, log, DeskRebuilds(desk, log.position, log.read, log.replay, log.publish, log.fail)


async def _settle(rebuilds: DeskRebuilds, partition: int = 0) -> None:
    """Wait for the partition's rebuild without handing a record (nothing ever comes)."""
    task = rebuilds._tasks[partition]
    await asyncio.wait([task])


def test_an_assigned_partition_expires_its_reviews_with_no_record_handed(w: World) -> None:
    opened, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk, log, rebuilds = _setup(w, opened[:2], position=2)

    async def run() -> None:
        rebuilds.assigned([0])
        await _settle(rebuilds)

    asyncio.run(run())
    assert log.reads == [2]
    assert desk.expire(NOW + 1) == []  # not due yet
    [(review_id, raw)] = desk.expire(LATER)
    closure = get_codec().decode_as("Verdict", raw)
    assert (closure["decision"], closure["basis"]) == ("block", "review_expired")
    assert closure["review"]["review_id"] == review_id


def test_an_assigned_partition_closes_a_decided_review_without_closure(w: World) -> None:
    records, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    _desk, log, rebuilds = _setup(w, records[:-1], position=3)  # the deciding vote is handled, no closure

    async def run() -> None:
        rebuilds.assigned([0])
        await _settle(rebuilds)

    asyncio.run(run())
    [(_rid, raw)] = log.published
    assert get_codec().decode_as("Verdict", raw)["basis"] == "review_approved"


def test_the_first_record_at_the_group_position_is_handled_on_that_state(w: World) -> None:
    records, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk, log, rebuilds = _setup(w, records, position=2)

    async def run() -> None:
        rebuilds.assigned([0])
        await rebuilds.ready(0, 2)  # the vote: judged once, on the rebuilt state

    asyncio.run(run())
    assert log.reads == [2]
    out = desk.handle(records[2], Source(TOPIC, 0, 2), NOW + 10)
    assert [e["detail"].split(":")[0] for e in out.audit] == ["accepted"] and len(out.closures) == 1


def test_a_record_arriving_while_the_rebuild_runs_waits_for_it(w: World) -> None:
    opened, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk, log, rebuilds = _setup(w, opened, position=2)
    log.gate.clear()

    async def run() -> None:
        rebuilds.assigned([0])
        waiting = asyncio.ensure_future(rebuilds.ready(0, 2))
        await asyncio.sleep(0.05)
        assert not waiting.done() and not desk.holds(0)  # the agent does not judge on no state
        log.gate.set()
        await asyncio.wait_for(waiting, 10)

    asyncio.run(run())
    assert log.reads == [2] and desk.holds(0) and not desk.needs_rebuild(0, 2)


def test_a_record_before_the_group_position_rebuilds_down_to_it(w: World) -> None:
    records, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk, log, rebuilds = _setup(w, records, position=3)

    async def run() -> None:
        rebuilds.assigned([0])
        await rebuilds.ready(0, 2)  # Faust started before the vote after all: it is judged live, once

    asyncio.run(run())
    assert log.reads == [3, 2] and not desk.needs_rebuild(0, 2) and log.replayed == []
    out = desk.handle(records[2], Source(TOPIC, 0, 2), NOW + 10)
    assert [str(e["detail"]).split(":")[0] for e in out.audit] == ["accepted"] and len(out.closures) == 1


def test_records_the_consumer_skipped_are_handled_not_just_folded(w: World) -> None:
    records, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk, log, rebuilds = _setup(w, records, position=2)

    async def run() -> None:
        rebuilds.assigned([0])
        await rebuilds.ready(0, 3)  # the group resumed at the vote, the consumer handed the record after it

    asyncio.run(run())
    assert log.reads == [2, (2, 3)] and not desk.needs_rebuild(0, 3)
    [(offset, out)] = log.replayed  # the vote: ledgered and closed as if it had been handed
    assert offset == 2 and [e["kind"] for e in out.audit] == ["review"] and len(out.closures) == 1
    assert log.published == []  # nothing for unclosed() to rescue


def test_a_partition_revoked_before_its_rebuild_ends_gets_no_state(w: World) -> None:
    opened, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk, log, rebuilds = _setup(w, opened[:2], position=2)
    log.gate.clear()

    async def run() -> None:
        rebuilds.assigned([0])
        await asyncio.sleep(0.05)  # the read is under way
        rebuilds.revoked([0])
        log.gate.set()
        await _settle(rebuilds)
        assert not desk.holds(0) and desk.expire(LATER) == []  # the late result was dropped
        rebuilds.assigned([])  # the group gave it to another worker

    asyncio.run(run())
    assert not desk.holds(0) and desk.partitions() == set()
    assert desk.expire(LATER) == []  # the new owner expires it, not this worker


def test_a_revoked_partition_expires_nothing_until_it_is_handed_back(w: World) -> None:
    opened, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk, log, rebuilds = _setup(w, opened[:2], position=2)

    async def run() -> None:
        rebuilds.assigned([0])
        await _settle(rebuilds)
        rebuilds.revoked([0])
        assert desk.expire(LATER) == []
        rebuilds.assigned([0])  # back, at the same position: resumed, not read again
        await _settle(rebuilds)

    asyncio.run(run())
    assert log.reads == [2]
    assert len(desk.expire(LATER)) == 1


def test_a_partition_handed_back_after_others_moved_it_is_read_again(w: World) -> None:
    records, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk, log, rebuilds = _setup(w, records, position=2)

    async def run() -> None:
        rebuilds.assigned([0])
        await _settle(rebuilds)
        rebuilds.revoked([0])
        log.at = 4  # another worker handled the vote and the closure meanwhile
        rebuilds.assigned([0])
        await _settle(rebuilds)

    asyncio.run(run())
    assert log.reads == [2, 4] and not desk.needs_rebuild(0, 4)
    assert desk.expire(LATER) == []  # closed: nothing to expire


def test_a_failed_rebuild_stops_the_worker_and_judges_nothing(w: World) -> None:
    opened, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk, log, rebuilds = _setup(w, opened, position=2)
    log.broken = True

    async def run() -> None:
        rebuilds.assigned([0])
        with pytest.raises(RuntimeError, match="no review state"):
            await rebuilds.ready(0, 2)

    asyncio.run(run())
    assert log.failures == ["cannot rebuild the review state of reviews[0]: broker gone"]
    assert not desk.holds(0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _stalling(w: World, records: list[bytes], position: int) -> tuple[ReviewDesk, Log, DeskRebuilds, Clock, list[int]]:
    """A desk whose partition ends at ``len(records)``; ``ends`` counts the end-offset reads."""
    desk, log, _ = _setup(w, records, position)
    clock, ends = Clock(), []

    def end(partition: int) -> int:
        ends.append(partition)
        if log.broken:
            raise Failed("broker gone")
        return len(log.records)

    rebuilds = DeskRebuilds(desk, log.position, log.read, log.replay, log.publish, log.fail,
                            end=end, stall_s=5.0, clock=clock)
    return desk, log, rebuilds, clock, ends


def test_a_last_record_the_consumer_never_hands_is_handled_after_the_stall(w: World) -> None:
    records, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk, log, rebuilds, clock, ends = _stalling(w, records[:3], position=2)  # the vote, nothing after it

    async def run() -> list[bool]:
        rebuilds.assigned([0])
        await _settle(rebuilds)
        await rebuilds.check_stalls()  # first look: the state's end is noted
        clock.now += 4.9
        await rebuilds.check_stalls()
        assert log.replayed == [] and ends == []  # not stalled yet: the consumer may still hand it
        clock.now += 0.2
        await rebuilds.check_stalls()
        return [await rebuilds.ready(0, 2), await rebuilds.ready(0, 3)]  # the consumer hands it after all

    handed = asyncio.run(run())
    [(offset, out)] = log.replayed  # the vote: ledgered and closed once
    assert offset == 2 and [e["kind"] for e in out.audit] == ["review"] and len(out.closures) == 1
    assert handed == [False, True]  # passed by, not rebuilt and judged again; the next record is the agent's
    assert log.reads == [2, (2, 3)] and ends == [0] and log.failures == []
    assert not desk.needs_rebuild(0, 3)


def test_a_partition_the_agent_keeps_up_with_is_never_read_by_the_stall_check(w: World) -> None:
    records, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk, log, rebuilds, clock, ends = _stalling(w, records[:3], position=2)

    async def run() -> None:
        rebuilds.assigned([0])
        await _settle(rebuilds)
        await rebuilds.check_stalls()
        assert await rebuilds.ready(0, 2)
        desk.handle(records[2], Source(TOPIC, 0, 2), NOW + 10)  # the agent handles the vote in time
        clock.now += 5.1
        await rebuilds.check_stalls()  # the state moved since the last look: no stall
        clock.now += 5.1
        await rebuilds.check_stalls()  # at the end: one cheap end read, nothing handled

    asyncio.run(run())
    assert log.replayed == [] and log.reads == [2] and ends == [0]


def test_a_failed_stall_check_stops_nothing_and_tries_again(w: World) -> None:
    records, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk, log, rebuilds, clock, ends = _stalling(w, records[:3], position=2)

    async def run() -> None:
        rebuilds.assigned([0])
        await _settle(rebuilds)
        await rebuilds.check_stalls()
        log.broken = True
        clock.now += 5.1
        await rebuilds.check_stalls()  # the end cannot be read: nothing handled, the worker runs on
        log.broken = False
        clock.now += 5.1
        await rebuilds.check_stalls()

    asyncio.run(run())
    assert log.failures == [] and ends == [0, 0]
    [(offset, _out)] = log.replayed
    assert offset == 2 and not desk.needs_rebuild(0, 3)


def test_an_end_with_no_record_before_it_is_not_read_again_until_it_moves(w: World) -> None:
    records, _ = reviews_topic(w, proposal(), rule=REVIEW_RULE)
    desk, log, rebuilds, clock, ends = _stalling(w, records[:2], position=2)
    log.records = [*records[:2]]

    def end(partition: int) -> int:
        ends.append(partition)
        return 3  # a transaction marker, say: an offset with no record to hand

    rebuilds.end = end

    async def run() -> None:
        rebuilds.assigned([0])
        await _settle(rebuilds)
        for _ in range(3):
            await rebuilds.check_stalls()
            clock.now += 5.1

    asyncio.run(run())
    assert log.reads == [2, (2, 3)] and log.replayed == [] and ends == [0, 0]
    assert desk.next_offset(0) == 2
