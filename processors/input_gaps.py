"""The decide agent decides the ``actions`` records Faust never hands it.

Why: Faust's consumer (``faust/transport/consumer.py``, ``Consumer.getmany``) silently
drops the fetched records of a partition it does not yet count active, and the rest of a
batch on a consumer generation change; its commit can then pass the gap. A dropped
``actions`` record was never decided: its Guard timed out (fail-closed) but the proposal
never reached the ledger, which it reaches only inside its ``decisions`` record
(:mod:`processors.decisions`). So the decide agent finds such gaps and decides the records
in them itself, through the same path as a handed record (stored decisions, replay
refusal, ledger events, dead letters). Deciding a record twice is safe on that path (a
re-delivered input whose stored decision exists is answered with the stored verdict bytes
and adds no ledger event); deciding one never is what this module prevents.

Where the decide agent is in a partition: :meth:`DecisionMemory.next_offset` (set by
``take`` as each record starts, in input order). Offsets that hold no record (transaction
markers, aborted or compacted records) are no gap: the reader returns the records that
exist, and only those are decided.

* **A gap in the middle** (:meth:`InputGaps.handed`). The agent is handed ``actions[p]@n``
  while it expects ``e < n`` (the next offset after its previous handed record, or, for a
  partition's first record, the group's committed position, where the delivery started;
  the larger of the two, since a position past ``e`` means another owner decided those):
  the records in ``[e, n)`` are read and decided first, in order, then ``n``. Their outputs
  are enqueued before ``n``'s (decisions stay in input order per partition, which the
  read-back relies on) and ``n`` is acknowledged to Faust only when they are finished too,
  so Faust's commit never passes one of them unfinished. A read that fails stops the worker
  (``fail``): carrying on would pass the gap. Fail-closed; the supervisor restarts it.
* **A gap at the tail** (:meth:`InputGaps.check_stalls`, on a timer). No record after the
  gap reveals it (say the last records of a partition, dropped at the resume position).
  When a partition's expected offset has stood still for ``stall_s`` while its stable end
  lies beyond, the records in between are decided here and their outputs waited for. A
  read that fails is logged and tried again on the next call: nothing was decided. The
  wait counts only while the consumer hands records at all (``ready``: no rebalance, tables
  recovered): a worker still loading the policies table would block for want of a policy.
* **The consumer was only slow.** A record decided by the stall check and handed later is
  passed by (:class:`processors.unhanded.HandledRun`): its verdict was sent and its decision
  stored; answering it again would be harmless (its stored decision), only wasted work.

Races: every slow path (reading stored decisions back, a gap, a stall) runs under one lock,
which also keeps the blocking readers single-threaded. The agent's fast path (the handed
record is the expected one) takes no lock; deciding a record (``decide``) is synchronous, so
a record is decided by whoever finds it to be the expected one first, and never by both.

Ownership: a revoked partition's memories (:class:`DecisionMemory` and the replay memory,
``forget``) are dropped, and so are those of a partition assigned without having been held
just before. Otherwise a partition handed back after another owner had it — and decided
records there without committing them — would resume at this worker's expected offset, be
taken for a contiguous delivery, and be decided again (a second verdict, and the other
owner's action ids missing from the replay memory). Its next record now triggers the
read-back. Faust revokes every partition and assigns again on each rebalance, so a partition
kept across a rebalance is also read back once, the same cost as a restart (the reads run
under the lock, one partition at a time). Each revocation or new assignment bumps the
partition's epoch: a read-back, gap or stall read begun before installs nothing and decides
nothing after it (``handed`` starts over with a fresh read-back; the stall check stops).

Faust commits only offsets the agent acknowledged, and a handed record is acknowledged only
once the skipped records decided before it have finished, so a commit can no longer pass a
dropped record that was not decided. Not caught: a record dropped *and committed past* by a
worker without this module (before an upgrade) lies before the group's position, where
nothing here looks (that would take checking every input offset of a read-back window for
a stored decision, and reading ``actions`` there to tell records from markers).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final, TypeVar

from lockgate.kernel.partition_reader import StoredRecord
from processors.decider import StoredDecision
from processors.decisions import DecisionMemory
from processors.unhanded import HandledRun, StallWatch

__all__ = ["InputGaps"]

log = logging.getLogger("lockgate.processor")

T = TypeVar("T")



class _Overtaken(enum.Enum):
    """What the slow path of :meth:`InputGaps.handed` returns when a revocation overtook it."""

    SUPERSEDED = 0


_SUPERSEDED: Final = _Overtaken.SUPERSEDED


class InputGaps:
    """Finds and decides the ``actions`` records the decide agent was never handed (module docstring).

    ``position(partition)``: where the group resumes ``partition`` (blocking).
    ``read(partition, start, end)``: its records with ``start <= offset < end`` (blocking).
    ``end(partition)``: its stable end offset (blocking).
    ``stored(partition, from_offset)``: the stored decisions of its inputs at or after
    ``from_offset`` (blocking; also loads the replay memory).
    ``decide(record)``: decide one record now, as the agent does (synchronously: take its
    stored decision, decide, enqueue its outputs); returns what finishes it, which never raises.
    ``fail(reason)``: stop the worker (it does not return in production).
    ``stall_s``: how long the expected offset may stand still behind the stable end before
    the records in between are decided here. ``chunk``: records read at a time by the stall check.
    ``ready()``: whether the consumer hands records at all now (not rebalancing, tables
    recovered); until it does, no partition counts as stalled, and its wait starts afresh.
    ``forget(partition)``: drop the partition's replay memory (revoked, or assigned anew);
    ``stored`` rebuilds it.
    """

    def __init__(self, memory: DecisionMemory, position: Callable[[int], int],
                 read: Callable[[int, int, int], Sequence[StoredRecord]], end: Callable[[int], int],
                 stored: Callable[[int, int], Iterable[tuple[int, StoredDecision]]],
                 decide: Callable[[StoredRecord], Awaitable[None]], fail: Callable[[str], None],
                 stall_s: float = 5.0, clock: Callable[[], float] = time.monotonic, chunk: int = 256,
                 ready: Callable[[], bool] = lambda: True, forget: Callable[[int], None] = lambda _p: None) -> None:
        self.memory = memory
        self.position = position
        self.read = read
        self.end = end
        self.stored = stored
        self.decide = decide
        self.fail = fail
        self.clock = clock
        self.chunk = chunk
        self.ready = ready
        self.forget = forget
        self._stalls = StallWatch(stall_s)
        self._handled_here = HandledRun()
        self._assigned: set[int] = set()
        self._lock = asyncio.Lock()
        self._paused = True
        self._epoch: dict[int, int] = {}

    def assigned(self, partitions: Iterable[int]) -> None:
        """The group's whole new assignment of ``actions`` partitions. A partition not held
        until now starts with no memory (module docstring, "Ownership")."""
        assignment = set(partitions)
        for partition in assignment - self._assigned:
            self._drop(partition)
        self._assigned = assignment

    def revoked(self, partitions: Iterable[int]) -> None:
        """``partitions`` are no longer this worker's: their memories are no longer trusted."""
        for partition in partitions:
            self._assigned.discard(partition)
            self._stalls.forget(partition)
            self._handled_here.clear(partition)
            self._drop(partition)

    def _drop(self, partition: int) -> None:
        """Forget ``partition``'s memories; a read-back begun before now installs nothing."""
        self._epoch[partition] = self._epoch.get(partition, 0) + 1
        self.memory.forget(partition)
        self.forget(partition)

    def _current(self, partition: int, epoch: int) -> bool:
        return self._epoch.get(partition, 0) == epoch

    async def handed(self, partition: int, offset: int) -> list[Awaitable[None]] | None:
        """Call before deciding the handed ``actions[partition]@offset``.

        Returns the finishes of the skipped records decided first (usually none: then this
        costs one comparison), which the handed record's own finish must wait for; or
        ``None`` when the record was already decided here and must be passed by. If the
        partition is revoked (or assigned anew) while this waits for a read, what was read
        is dropped and the delivery starts over from a fresh read-back.
        """
        while self.memory.needs_recovery(partition, offset):
            epoch = self._epoch.get(partition, 0)
            async with self._lock:
                found = await self._recover(partition, offset, epoch)
            if found is not _SUPERSEDED:
                return found
            log.info("actions[%d]: revoked while handed offset %d was being prepared; starting over",
                     partition, offset)
        return []

    async def _recover(self, partition: int, offset: int, epoch: int) -> list[Awaitable[None]] | _Overtaken | None:
        """:meth:`handed`'s slow path, under the lock; ``_SUPERSEDED`` if ``epoch`` passed meanwhile."""
        if not self._current(partition, epoch):
            return _SUPERSEDED
        expected = self.memory.next_offset(partition)
        if expected == offset:
            return []  # the stall check decided up to here meanwhile
        if expected is not None and offset < expected:
            if self._handled_here.covers(partition, offset):
                log.info("actions[%d]: handed offset %d, already decided as a record never handed; "
                         "passing it by", partition, offset)
                return None
            return [] if await self._read_back(partition, offset, epoch) else _SUPERSEDED  # re-delivered
        try:
            start = await self._gap_start(partition, expected)
            skipped = list(await _blocking(self.read, partition, start, offset)) if start < offset else []
        except Exception as exc:  # carrying on would pass the gap
            self.fail(f"cannot read the records of actions[{partition}] before offset {offset}: {exc}")
            raise
        if not self._current(partition, epoch):
            return _SUPERSEDED
        fresh = expected is None or start > expected  # a new delivery, or another owner's decisions
        if not skipped:  # nothing in between, or only markers
            return _SUPERSEDED if fresh and not await self._read_back(partition, offset, epoch) else []
        log.warning("actions[%d]: handed offset %d, but offsets %d to %d (%d record(s)) were never handed; "
                    "deciding them first", partition, offset, start, offset - 1, len(skipped))
        if fresh and not await self._read_back(partition, start, epoch):
            return _SUPERSEDED
        return self._decide(partition, skipped)

    async def check_stalls(self) -> None:
        """Decide the records of each assigned partition that the agent was not handed within
        ``stall_s`` of its last progress (module docstring). Never raises: a failed read
        decides nothing, and the next call tries again."""
        if not self.ready():  # a rebalance, or the policies table still loading: nothing is handed yet
            self._paused = True
            return
        if self._paused:  # handing resumes now: every wait starts from here
            self._paused = False
            for partition in self._assigned:
                self._stalls.restart(partition, self.memory.next_offset(partition), self.clock())
            return
        for partition in sorted(self._assigned):
            if not self._stalls.due(partition, self.memory.next_offset(partition), self.clock()):
                continue
            try:
                await self._catch_up(partition)
            except Exception as exc:
                log.warning("actions[%d]: cannot decide the records never handed yet (%s); checking again",
                            partition, exc)
                continue
            self._stalls.restart(partition, self.memory.next_offset(partition), self.clock())

    async def _catch_up(self, partition: int) -> None:
        async with self._lock:
            epoch = self._epoch.get(partition, 0)
            expected = self.memory.next_offset(partition)
            end = await _blocking(self.end, partition)
            if (expected is not None and end <= expected) or self._stalls.quiet(partition, end):
                return
            start = await self._gap_start(partition, expected)
            at, decided = start, 0
            while at < end:
                stop = min(end, at + self.chunk)
                records = list(await _blocking(self.read, partition, at, stop))
                if self.memory.next_offset(partition) != expected or not self._current(partition, epoch):
                    return  # the agent was handed a record meanwhile (not stalled after all), or a revocation
                if records:
                    if not decided:
                        log.warning("actions[%d]: offsets from %d to %d reached the log and were not handed "
                                    "within %.0f s; deciding them here", partition, at, end - 1,
                                    self._stalls.stall_s)
                        if expected is None or start > expected:
                            found = await _blocking(self.stored, partition, start)
                            if self.memory.next_offset(partition) != expected or not self._current(partition, epoch):
                                return
                            self.memory.recovered(partition, start, found)
                    finishes = self._decide(partition, records)
                    self._handled_here.add(partition, at, stop)
                    decided += len(finishes)
                    await asyncio.gather(*finishes)
                    if not self._current(partition, epoch):
                        return  # revoked meanwhile: what was decided stands, its memory is gone
                    expected = self.memory.next_offset(partition)
                at = stop
            if not decided:
                self._stalls.nothing_before(partition, end)  # not read again until the end moves
            else:
                log.warning("actions[%d]: decided %d record(s) the consumer never handed", partition, decided)

    async def _gap_start(self, partition: int, expected: int | None) -> int:
        """Where the records not handed begin: the expected offset, or the group's position
        if it is further on (another owner decided up to there) or nothing was handed yet."""
        at = await _blocking(self.position, partition)
        return at if expected is None else max(at, expected)

    async def _read_back(self, partition: int, from_offset: int, epoch: int) -> bool:
        """Install the stored decisions of inputs from ``from_offset`` (deciding blind could
        decide an action twice, so a failure stops the worker); False, installing nothing, if
        the partition was revoked or assigned anew meanwhile (what was read may be stale)."""
        try:
            found = await _blocking(self.stored, partition, from_offset)
        except Exception as exc:
            self.fail(f"cannot read back the stored decisions of actions[{partition}]: {exc}")
            raise
        if not self._current(partition, epoch):
            return False
        n = self.memory.recovered(partition, from_offset, found)
        log.info("actions[%d] delivered from offset %d: %d stored decision(s) to re-send", partition,
                 from_offset, n)
        return True

    def _decide(self, partition: int, records: Sequence[StoredRecord]) -> list[Awaitable[None]]:
        """Decide ``records`` in order, each only if it is the next one expected or later."""
        finishes: list[Awaitable[None]] = []
        for record in records:
            expected = self.memory.next_offset(partition)
            if expected is not None and record.offset < expected:
                continue  # decided already
            finishes.append(self.decide(record))
        return finishes


async def _blocking(fn: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
