"""The decide agent decides the actions records the consumer never hands it.

:class:`InputGaps` over a real :class:`DecisionMemory`; the partition's records, the group's
position and the stored decisions are in memory, the blocking reads run in the default
executor as in the worker, and ``decide`` takes the record's stored decision from the
memory exactly as the agent's path does. Each test says which gap or race it plays.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Iterable, Sequence

import pytest

from lockgate.kernel.partition_reader import StoredRecord
from processors.decider import StoredDecision
from processors.decisions import DecisionMemory
from processors.input_gaps import InputGaps
from processors.replay import ActionIds
from trust.registry import ServiceVerification


class Broken(Exception):
    pass


def _d(tag: str) -> StoredDecision:
    return StoredDecision(tag.encode(), ServiceVerification.OK, carries_events=True)


class Actions:
    """One actions partition (``offsets`` that hold a record; others are markers), the group's
    position, the stored decisions, and what the gaps core did with them."""

    def __init__(self, offsets: Iterable[int], position: int = 0,
                 stored: Sequence[tuple[int, StoredDecision]] = ()) -> None:
        self.offsets = sorted(offsets)
        self.at = position
        self.end_offset = (self.offsets[-1] + 1) if self.offsets else 0
        self.stored_decisions = list(stored)
        self.memory = DecisionMemory()
        self.decided: list[tuple[int, StoredDecision | None]] = []
        self.finished: list[int] = []
        self.reads: list[tuple[int, int]] = []
        self.read_backs: list[int] = []
        self.ends = 0
        self.failures: list[str] = []
        self.broken = False
        self.gate = threading.Event()
        self.gate.set()
        self.reading = threading.Event()
        self.now = 0.0
        self.replay = ActionIds(1, 3_600_000_000)  # the replay memory, loaded with the read-back as in the worker
        self.action_ids: dict[int, str] = {}  # offsets whose record proposes another offset's action id
        self.refused: list[int] = []  # offsets decided as replays
        self.stored_gate = threading.Event()  # holds a read-back after it read, before it returns
        self.stored_gate.set()
        self.storing = threading.Event()

    def position(self, _partition: int) -> int:
        if self.broken:
            raise Broken("broker gone")
        return self.at

    def read(self, partition: int, start: int, end: int) -> list[StoredRecord]:
        self.reads.append((start, end))
        self.reading.set()
        assert self.gate.wait(10)
        if self.broken:
            raise Broken("broker gone")
        return [StoredRecord(partition, o, b"k", f"action-{o}".encode()) for o in self.offsets if start <= o < end]

    def end(self, _partition: int) -> int:
        self.ends += 1
        if self.broken:
            raise Broken("broker gone")
        return self.end_offset

    def action_id(self, offset: int) -> str:
        return self.action_ids.get(offset, f"action-{offset}")

    def stored(self, partition: int, from_offset: int) -> list[tuple[int, StoredDecision]]:
        self.read_backs.append(from_offset)
        if self.broken:
            raise Broken("broker gone")
        found = list(self.stored_decisions)
        self.replay.loaded(partition, (self.action_id(o) for o, _ in found), 0)
        self.storing.set()
        assert self.stored_gate.wait(10)
        return found

    def decide(self, record: StoredRecord) -> Awaitable[None]:
        return self.decide_at(record.partition, record.offset)

    def decide_at(self, partition: int, offset: int) -> Awaitable[None]:
        """What the agent's path does, synchronously: take the stored decision, decide (and
        store a new decision, as the agent does on ``decisions``)."""
        stored = self.memory.take(partition, offset)
        self.decided.append((offset, stored))
        if stored is None:
            if self.replay.admit({"action_id": self.action_id(offset), "proposed_at": 0}, partition, 0) is not None:
                self.refused.append(offset)
            self.stored_decisions.append((offset, _d(f"decided-{offset}")))

        async def finish() -> None:
            self.finished.append(offset)

        return finish()

    def fail(self, reason: str) -> None:
        self.failures.append(reason)

    def clock(self) -> float:
        return self.now

    def gaps(self, **kw: float) -> InputGaps:
        gaps = InputGaps(self.memory, self.position, self.read, self.end, self.stored, self.decide, self.fail,
                         clock=self.clock, forget=self.replay.forget, **kw)  # type: ignore[arg-type]
        gaps.assigned([0])
        return gaps


async def _agent(actions: Actions, gaps: InputGaps, offset: int) -> bool:
    """The agent handed ``actions[0]@offset``: False when it passed the record by."""
    earlier = await gaps.handed(0, offset)
    if earlier is None:
        return False
    own = actions.decide_at(0, offset)
    await asyncio.gather(*earlier)
    await own
    return True


def test_a_gap_in_the_middle_is_decided_first_in_order(caplog: pytest.LogCaptureFixture) -> None:
    actions = Actions(range(8), position=0)
    gaps = actions.gaps()

    async def run() -> list[bool]:
        return [await _agent(actions, gaps, o) for o in (0, 1, 2, 5, 6)]  # 3 and 4 dropped by the consumer

    with caplog.at_level(logging.WARNING, "lockgate.processor"):
        handed = asyncio.run(run())
    assert handed == [True] * 5
    assert [o for o, _ in actions.decided] == [0, 1, 2, 3, 4, 5, 6]
    assert actions.finished == [0, 1, 2, 3, 4, 5, 6]  # 5 finished only after the records before it
    assert actions.reads == [(3, 5)] and actions.read_backs == [0]  # the memory's state was this delivery's
    assert actions.failures == []
    assert any("actions[0]" in r.message and "offsets 3 to 4" in r.message and "offset 5" in r.message
               for r in caplog.records if r.levelno == logging.WARNING)


def test_a_gap_at_the_start_of_a_delivery_is_decided_from_the_group_position_with_its_stored_decisions() -> None:
    # A crashed owner decided offset 2 (stored) but never committed; the consumer then drops 2 and 3.
    actions = Actions(range(6), position=2, stored=[(1, _d("one")), (2, _d("two"))])
    gaps = actions.gaps()

    async def run() -> None:
        await _agent(actions, gaps, 4)

    asyncio.run(run())
    assert actions.read_backs == [2] and actions.reads == [(2, 4)]
    assert actions.decided == [(2, _d("two")), (3, None), (4, None)]  # 2 answered from its stored decision


def test_offsets_with_no_record_are_no_gap() -> None:
    actions = Actions([0, 1, 4, 5], position=0)  # 2 and 3: a transaction's marker and an aborted record
    gaps = actions.gaps()

    async def run() -> None:
        for o in (0, 1, 4, 5):
            await _agent(actions, gaps, o)

    asyncio.run(run())
    assert [o for o, _ in actions.decided] == [0, 1, 4, 5]
    assert actions.reads == [(2, 4)] and actions.read_backs == [0]  # looked, found nothing, no read-back


def test_another_owner_decided_past_the_expected_offset_is_no_gap() -> None:
    actions = Actions(range(10), position=0)
    gaps = actions.gaps()

    async def run() -> None:
        await _agent(actions, gaps, 0)
        actions.at = 7  # the partition was away; another owner decided and committed up to 7
        await _agent(actions, gaps, 8)

    asyncio.run(run())
    assert [o for o, _ in actions.decided] == [0, 7, 8]  # 7 was dropped; 1 to 6 were the other owner's
    assert actions.read_backs == [0, 7] and actions.reads == [(7, 8)]


def test_a_gap_that_cannot_be_read_stops_the_worker() -> None:
    actions = Actions(range(6), position=0)
    gaps = actions.gaps()

    async def run() -> None:
        await _agent(actions, gaps, 0)
        actions.broken = True
        with pytest.raises(Broken):
            await _agent(actions, gaps, 3)

    asyncio.run(run())
    assert len(actions.failures) == 1 and "actions[0]" in actions.failures[0]
    assert [o for o, _ in actions.decided] == [0]  # 3 was not decided past the gap


def test_a_tail_the_consumer_never_hands_is_decided_after_the_stall_and_passed_by_if_handed_later() -> None:
    actions = Actions(range(5), position=0)
    gaps = actions.gaps(stall_s=5.0)

    async def run() -> list[bool]:
        for o in (0, 1, 2):
            await _agent(actions, gaps, o)
        await gaps.check_stalls()  # first look: the expected offset (3) is noted
        actions.now += 4.9
        await gaps.check_stalls()
        assert actions.decided[3:] == [] and actions.ends == 0  # not stalled yet
        actions.now += 0.2
        await gaps.check_stalls()
        assert actions.finished == [0, 1, 2, 3, 4]  # decided and finished before the check returned
        return [await _agent(actions, gaps, o) for o in (3, 4, 5)]  # the consumer was only slow

    handed = asyncio.run(run())
    assert handed == [False, False, True]  # decided once; the next record is the agent's
    assert [o for o, _ in actions.decided] == [0, 1, 2, 3, 4, 5]
    assert actions.reads == [(3, 5)] and actions.read_backs == [0] and actions.failures == []


def test_a_tail_dropped_at_the_resume_position_is_decided_with_nothing_handed_at_all() -> None:
    actions = Actions(range(4), position=2, stored=[(2, _d("two"))])
    gaps = actions.gaps(stall_s=5.0)

    async def run() -> None:
        await gaps.check_stalls()
        actions.now += 5.0
        await gaps.check_stalls()

    asyncio.run(run())
    assert actions.decided == [(2, _d("two")), (3, None)]
    assert actions.read_backs == [2] and actions.memory.next_offset(0) == 4


def test_the_stall_check_never_fires_while_the_agent_keeps_up() -> None:
    actions = Actions(range(100), position=0)
    gaps = actions.gaps(stall_s=5.0)

    async def run() -> None:
        for o in range(0, 100, 10):
            for k in range(o, o + 10):
                await _agent(actions, gaps, k)
            await gaps.check_stalls()
            actions.now += 4.0
        actions.now += 5.0
        await gaps.check_stalls()  # at the end, idle: one cheap end read, nothing decided
        actions.now += 5.0
        await gaps.check_stalls()

    asyncio.run(run())
    assert [o for o, _ in actions.decided] == list(range(100))
    assert actions.reads == [] and actions.ends == 2


def test_a_failed_read_decides_nothing_and_is_retried_on_the_next_tick() -> None:
    actions = Actions(range(4), position=0)
    gaps = actions.gaps(stall_s=5.0)

    async def run() -> None:
        await _agent(actions, gaps, 0)
        await gaps.check_stalls()
        actions.broken = True
        actions.now += 5.0
        await gaps.check_stalls()  # the end cannot be read: nothing decided, the worker runs on
        assert [o for o, _ in actions.decided] == [0]
        actions.broken = False
        actions.now += 1.0  # the next tick, not another stall_s
        await gaps.check_stalls()

    asyncio.run(run())
    assert actions.failures == [] and [o for o, _ in actions.decided] == [0, 1, 2, 3]


def test_an_end_with_no_record_before_it_is_not_read_again_until_it_moves() -> None:
    actions = Actions([0, 1], position=0)
    actions.end_offset = 3  # offset 2: a transaction marker, nothing to hand
    gaps = actions.gaps(stall_s=5.0)

    async def run() -> None:
        for o in (0, 1):
            await _agent(actions, gaps, o)
        for _ in range(4):
            await gaps.check_stalls()
            actions.now += 5.1

    asyncio.run(run())
    assert actions.reads == [(2, 3)] and actions.ends == 3 and [o for o, _ in actions.decided] == [0, 1]


def test_a_record_handed_while_the_stall_check_reads_is_decided_once() -> None:
    actions = Actions(range(4), position=0)
    gaps = actions.gaps(stall_s=5.0)

    async def run() -> None:
        await _agent(actions, gaps, 0)
        await gaps.check_stalls()
        actions.now += 5.0
        actions.gate.clear()  # the stall check's read hangs in the executor...
        check = asyncio.ensure_future(gaps.check_stalls())
        assert await asyncio.get_running_loop().run_in_executor(None, actions.reading.wait, 10)
        for o in (1, 2, 3):  # ...while the consumer hands the records after all (the fast path)
            await _agent(actions, gaps, o)
        actions.gate.set()
        await check

    asyncio.run(run())
    assert [o for o, _ in actions.decided] == [0, 1, 2, 3]  # none decided twice


def test_no_partition_counts_as_stalled_while_the_consumer_hands_nothing_at_all() -> None:
    # A rebalance, or the policies table still loading: deciding now could use no policy.
    actions = Actions(range(3), position=0)
    ready = [False]
    gaps = InputGaps(actions.memory, actions.position, actions.read, actions.end, actions.stored, actions.decide,
                     actions.fail, clock=actions.clock, ready=lambda: ready[0])
    gaps.assigned([0])

    async def run() -> None:
        for _ in range(3):
            await gaps.check_stalls()
            actions.now += 5.0
        assert actions.decided == [] and actions.ends == 0
        ready[0] = True
        await gaps.check_stalls()  # ready now: the wait starts from here, not from the rebalance
        assert actions.decided == []
        actions.now += 5.0
        await gaps.check_stalls()

    asyncio.run(run())
    assert [o for o, _ in actions.decided] == [0, 1, 2]


def test_a_record_the_stall_check_decided_handed_after_a_rebalance_is_answered_from_its_stored_decision() -> None:
    actions = Actions(range(5), position=0)
    gaps = actions.gaps(stall_s=5.0)

    async def run() -> list[bool]:
        for o in (0, 1, 2):
            await _agent(actions, gaps, o)
        await gaps.check_stalls()
        actions.now += 5.0
        await gaps.check_stalls()  # 3 and 4 decided here
        gaps.revoked([0])  # a rebalance: the group hands the partition back from its position (3)
        gaps.assigned([0])
        actions.at = 3
        return [await _agent(actions, gaps, o) for o in (3, 4)]

    handed = asyncio.run(run())
    assert handed == [True, True]  # not passed by: this worker's run was forgotten with the partition...
    assert actions.decided[-2:] == [(3, _d("decided-3")), (4, _d("decided-4"))]  # ...but never decided anew
    assert actions.read_backs == [0, 3]


def _another_owner_decided(actions: Actions, offsets: Iterable[int]) -> None:
    """Another worker held the partition meanwhile, decided ``offsets`` (stored on ``decisions``)
    and lost it before committing them: the group's position did not move."""
    actions.stored_decisions += [(o, _d(f"other-{o}")) for o in offsets]


def test_a_partition_handed_back_at_the_expected_offset_after_another_owner_had_it_is_read_back() -> None:
    actions = Actions(range(8), position=0)
    gaps = actions.gaps()

    held: list[object] = []

    async def run() -> list[bool]:
        handed = [await _agent(actions, gaps, o) for o in (0, 1, 2)]  # expects 3 next
        gaps.revoked([0])
        held.extend((actions.replay.held(), actions.memory.next_offset(0)))
        actions.at = 3
        _another_owner_decided(actions, (3, 4, 5))
        gaps.assigned([0])  # back here at 3, the offset this worker expected
        actions.action_ids[6] = "action-4"  # a replay of what the other owner decided at 4
        return handed + [await _agent(actions, gaps, o) for o in (3, 4, 5, 6)]

    assert asyncio.run(run()) == [True] * 7
    assert actions.decided[3:6] == [(3, _d("other-3")), (4, _d("other-4")), (5, _d("other-5"))]  # re-sent
    assert actions.decided[6] == (6, None) and actions.refused == [6]  # its id came back with the read-back
    assert actions.read_backs == [0, 3]
    assert held == [0, None]  # neither memory was kept for the revoked partition


def test_a_read_back_overtaken_by_a_revocation_installs_nothing_and_is_done_again() -> None:
    actions = Actions(range(4), position=0)
    gaps = actions.gaps()

    async def run() -> bool:
        actions.stored_gate.clear()  # the read-back has read (nothing stored yet) and hangs...
        agent = asyncio.ensure_future(_agent(actions, gaps, 0))
        assert await asyncio.get_running_loop().run_in_executor(None, actions.storing.wait, 10)
        gaps.revoked([0])  # ...while the partition goes to another owner, which decides 0 and 1...
        _another_owner_decided(actions, (0, 1))
        gaps.assigned([0])  # ...and comes back, uncommitted
        actions.stored_gate.set()
        handed = await agent
        await _agent(actions, gaps, 1)
        return handed

    assert asyncio.run(run())
    assert actions.decided == [(0, _d("other-0")), (1, _d("other-1"))]  # the stale read-back was not installed
    assert actions.read_backs == [0, 0]
    assert actions.replay.held() == 2


def test_a_stall_check_overtaken_by_a_revocation_decides_and_installs_nothing() -> None:
    actions = Actions(range(3), position=0)
    gaps = actions.gaps(stall_s=5.0)

    async def run() -> None:
        await gaps.check_stalls()  # handing starts: nothing handed at all yet
        actions.now += 5.0
        actions.gate.clear()  # the stall check's read of 0..2 hangs...
        check = asyncio.ensure_future(gaps.check_stalls())
        assert await asyncio.get_running_loop().run_in_executor(None, actions.reading.wait, 10)
        gaps.revoked([0])  # ...while the partition is revoked
        actions.gate.set()
        await check

    asyncio.run(run())
    assert actions.decided == [] and actions.read_backs == []
    assert actions.memory.next_offset(0) is None


def test_a_record_decided_after_its_partition_was_revoked_leaves_no_memory_for_the_next_assignment() -> None:
    actions = Actions(range(8), position=0)
    gaps = actions.gaps()

    async def run() -> list[bool]:
        handed = [await _agent(actions, gaps, o) for o in (0, 1, 2)]
        actions.at = 3  # committed before the revocation
        gaps.revoked([0])
        handed.append(await _agent(actions, gaps, 3))  # a record handed late, after the revocation
        _another_owner_decided(actions, (4, 5))  # the partition's owner since, which never committed
        actions.at = 4
        gaps.assigned([0])  # back here at 4, the offset the late record left this worker expecting
        return handed + [await _agent(actions, gaps, o) for o in (4, 5)]

    assert asyncio.run(run()) == [True] * 6
    assert actions.decided[3] == (3, None)
    assert actions.decided[4:] == [(4, _d("other-4")), (5, _d("other-5"))]  # re-sent, not decided anew
    assert actions.read_backs == [0, 3, 4]
