"""When the review desk rebuilds a partition's state: as soon as the worker is assigned it.

A ``reviews`` partition's pending-review state is the fold of its records
(:mod:`processors.reviews`), and the desk must hold exactly the fold of the records before
the first one the agent will be handed: a record folded *and* handed would be judged twice
(a vote counted twice), a record neither folded nor handed would be lost. Faust hands a
newly assigned partition's records from the consumer group's committed position (from the
partition's start when the group has none: ``auto_offset_reset=earliest``), so that
position, not the partition's end, is where the rebuild stops: the records from there on
are still to be handled, effects and all.

Waiting for the partition's next record to rebuild (as the desk once did) left a partition
that receives none without state after a restart, a failover or a rebalance: its open
reviews never expired (their requesters waited for a final verdict that never came) and a
review whose deciding vote was passed unhandled was never closed. So
:class:`DeskRebuilds` rebuilds each partition when the group assigns it
(:meth:`DeskRebuilds.assigned`, from Faust's ``on_partitions_assigned`` signal), publishes
the closures :meth:`ReviewDesk.unclosed` finds, and from then on the desk's expiry timer
covers the partition with no traffic at all.

Races, and how each ends:

* **A record arrives while the rebuild runs.** The agent calls :meth:`DeskRebuilds.ready`
  before it handles each record; it waits for the partition's rebuild, then checks the
  record is the next one the state expects (:meth:`ReviewDesk.needs_rebuild`). If it is
  earlier (Faust started before the group's position after all), the state is rebuilt up
  to that record (logged): the record offsets, not the guess, have the last word.
* **The consumer skips records.** Seen after a ``kill -9``: the group resumed a partition
  at a vote (its committed offset), and Faust handed the agent the record after it first.
  Faust's ``getmany`` discards records it fetched for a partition it does not count active
  and the rest of a batch on a generation change, and its commit then passes a gap as if
  handled; which of these it was is not established. Folding the skipped records
  without effects would lose them (a vote never ledgered, never answered by its own
  closure), so when the agent is handed a record past the end of the state the desk holds,
  the records in between are read and **handled** first, with their effects
  (``replay``), in log order: at-least-once, as a redelivery would (event ids come from
  the record's coordinates, the first closure of a review wins).
* **The consumer skips the last records of a partition.** The same loss with no record
  after it to reveal the gap: a vote written while no worker ran, dropped by Faust at the
  resume position, left its requester waiting forever, on a live worker that owned the
  partition (seen once in CI, under load). So :meth:`DeskRebuilds.check_stalls` (on a
  timer) compares each held partition's state with the partition's stable end: when the
  state has stayed behind it for ``stall_s``, the records in between are handled with
  their effects, like skipped ones. If the consumer was only slow and hands them later,
  :meth:`DeskRebuilds.ready` says so and the agent passes them by (handled once, not
  rebuilt and handled again).
* **The partition is revoked before the rebuild finishes.** Every assignment and
  revocation bumps the partition's epoch; a rebuild installs its state only if the epoch
  is still its own, so a late result never overwrites a newer one. A revoked partition is
  suspended (no expiry there) and, if the next assignment does not include it, forgotten.
* **A partition kept across a rebalance.** Faust revokes everything and assigns again; a
  partition whose state already ends at the group's position is resumed, not re-read.
* **A rebuild fails** (broker down past the reader's timeout, a bug): the worker exits
  through ``fail`` (:func:`processors.crash.crash_worker`), as before: judging votes on a
  partial state could count one twice. Fail-closed; the supervisor restarts it.

The stall and handled-run bookkeeping is shared with the decide agent, which decides the
``actions`` records it was never handed the same way (:mod:`processors.unhanded`,
:mod:`processors.input_gaps`).

Rebuilds run one at a time (the readers are single Kafka consumers) in the default
executor; their state is installed on the event loop, the only thread that touches the desk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from lockgate.kernel.partition_reader import StoredRecord
from processors.reviews.desk import ReviewDesk
from processors.unhanded import HandledRun, StallWatch
from trust.reviews import ReviewBook

__all__ = ["DeskRebuilds"]

log = logging.getLogger("lockgate.processor")

T = TypeVar("T")


class DeskRebuilds:
    """Keeps each ``reviews`` partition the worker is assigned rebuilt (module docstring).

    ``position(partition)``: where the group resumes ``partition`` (blocking).
    ``read(partition, start, end)``: its records with ``start <= offset < end`` (blocking).
    ``replay(record)``: handle one record the consumer skipped, as the agent would, and
    wait until its outputs are acknowledged.
    ``publish(closures)``: publish ``(review id, Verdict)`` closures on the reviews topic.
    ``fail(reason)``: stop the worker (it does not return in production).
    ``end(partition)``: the partition's stable end offset (blocking), for :meth:`check_stalls`.
    ``stall_s``: how long a held state may stay behind that end before the records are
    handled here rather than waited for.
    """

    def __init__(self, desk: ReviewDesk, position: Callable[[int], int],
                 read: Callable[[int, int, int], Iterable[StoredRecord]],
                 replay: Callable[[StoredRecord], Awaitable[None]],
                 publish: Callable[[list[tuple[str, bytes]]], Awaitable[None]], fail: Callable[[str], None],
                 end: Callable[[int], int] | None = None, stall_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.desk = desk
        self.position = position
        self.read = read
        self.replay = replay
        self.publish = publish
        self.fail = fail
        self.end = end
        self.clock = clock
        self._epoch: dict[int, int] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._assigned: set[int] = set()
        self._lock = asyncio.Lock()
        self._handled_here = HandledRun()  # offsets replayed, not handed, on the current state
        self._stalls = StallWatch(stall_s)

    def assigned(self, partitions: Iterable[int]) -> None:
        """The group's whole new assignment of reviews partitions (call on the event loop)."""
        now = set(partitions)
        for gone in self.desk.partitions() - now:
            self._bump(gone)
            self.desk.release(gone)
        self._assigned = now
        for partition in sorted(now):
            self._start(partition, None)

    def revoked(self, partitions: Iterable[int]) -> None:
        """The group took ``partitions`` away (it may hand them back in its next assignment)."""
        gone = set(partitions)
        for partition in gone:
            self._bump(partition)
        self._assigned -= gone
        self.desk.suspend(gone)

    async def ready(self, partition: int, offset: int) -> bool:
        """Return once the desk's state of ``partition`` ends right before ``offset``, the
        record the agent is about to handle: ``True``. ``False`` when this record was already
        handled here, as one the consumer seemed to have skipped (the agent must pass it by).
        Raises what a failed rebuild raised."""
        mine: asyncio.Task[None] | None = None
        caught_up = False
        while True:
            task = self._tasks.get(partition)
            if task is not None and not task.done():
                await asyncio.wait([task])
                continue
            if task is not None and not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"reviews[{partition}]: no review state") from task.exception()
            if not self.desk.needs_rebuild(partition, offset):
                return True
            if self._handled_here.covers(partition, offset) and self.desk.holds(partition):
                log.info("reviews[%d]: handed offset %d, already handled as a skipped record; passing it by",
                         partition, offset)
                return False
            held = self.desk.next_offset(partition) if self.desk.holds(partition) else None
            if held is not None and held < offset and not caught_up:
                caught_up = True  # once: if records are missing from what it reads, rebuild instead
                await self._catch_up(partition, held, offset)
                continue
            if task is not None and task is not mine:
                log.warning("reviews[%d]: handed offset %d, its state ends at %s; rebuilding up to it "
                            "(the consumer went back, or started before the group's position)",
                            partition, offset, self.desk.next_offset(partition))
            mine = self._start(partition, offset)  # again if a revocation superseded the last one

    async def check_stalls(self) -> None:
        """Handle the records of each held partition that the agent was not handed within
        ``stall_s`` of their reaching the log (module docstring). Never raises: a failed
        read handles nothing, so the next call tries again with nothing lost."""
        if self.end is None:
            return
        now = self.clock()
        for partition in sorted(self._assigned):
            task = self._tasks.get(partition)
            if (task is not None and not task.done()) or not self.desk.holds(partition):
                continue
            held = self.desk.next_offset(partition)
            if held is None or not self._stalls.due(partition, held, now):
                continue
            self._stalls.restart(partition, held, now)
            try:
                async with self._lock:
                    end = await _blocking(self.end, partition)
            except Exception as exc:
                log.warning("reviews[%d]: cannot read the partition's end (%s); checking again", partition, exc)
                continue
            if end <= held or self._stalls.quiet(partition, end):
                continue
            log.warning("reviews[%d]: offsets %d to %d reached the log %.0f s or more ago and were never handed; "
                        "handling them here", partition, held, end - 1, self._stalls.stall_s)
            try:
                await self._catch_up(partition, held, end, fatal=False)
            except Exception as exc:
                log.warning("reviews[%d]: cannot handle offsets %d to %d yet (%s); checking again",
                            partition, held, end - 1, exc)
                continue
            if self.desk.next_offset(partition) == held:
                self._stalls.nothing_before(partition, end)  # not read again until the end moves

    async def _catch_up(self, partition: int, start: int, end: int, fatal: bool = True) -> None:
        """Handle the records ``start <= offset < end`` the consumer skipped (module docstring).

        ``fatal``: the agent is about to handle ``end``, so a failed read stops the worker
        (carrying on would pass the gap); otherwise the error is raised to the caller."""
        if fatal:
            log.warning("reviews[%d]: handed offset %d, but offsets %d to %d were never handed; handling them first",
                        partition, end, start, end - 1)
        try:
            async with self._lock:
                records = await _blocking(self.read, partition, start, end)
        except Exception as exc:  # carrying on would lose what they say
            if fatal:
                self.fail(f"cannot read the skipped records of reviews[{partition}]: {exc}")
            raise
        for record in records:
            if self.desk.next_offset(partition) != record.offset:
                return  # the agent, or a revocation, got there first: ready() decides again
            self._handled_here.add(partition, record.offset, record.offset + 1)
            await self.replay(record)

    def _bump(self, partition: int) -> int:
        self._epoch[partition] = self._epoch.get(partition, 0) + 1
        self._handled_here.clear(partition)  # a new state: the agent is handed from its end again
        return self._epoch[partition]

    def _start(self, partition: int, offset: int | None) -> asyncio.Task[None]:
        task = asyncio.ensure_future(self._rebuild(partition, self._bump(partition), offset))
        task.add_done_callback(_retrieve)
        self._tasks[partition] = task
        return task

    async def _rebuild(self, partition: int, epoch: int, offset: int | None) -> None:
        """Rebuild ``partition`` up to ``offset`` (the group's position when ``None``)."""
        async with self._lock:
            if self._epoch.get(partition) != epoch:
                return  # superseded while waiting for the readers
            try:
                if offset is None and self.desk.holds(partition):
                    return  # the agent got there first (a record before the assignment signal)
                at = offset if offset is not None else await _blocking(self.position, partition)
                if offset is None and not self.desk.needs_rebuild(partition, at):
                    if self._epoch.get(partition) == epoch:
                        self.desk.resume(partition)
                        log.info("reviews[%d]: kept across the rebalance at offset %d", partition, at)
                    return
                self.desk.refresh_registry()
                rows: list[int] = []
                book = await _blocking(self._fold, partition, at, rows)
            except Exception as exc:  # judging votes on a partial state could count one twice
                self.fail(f"cannot rebuild the review state of reviews[{partition}]: {exc}")
                raise
            if self._epoch.get(partition) != epoch:
                log.info("reviews[%d]: rebuild up to offset %d dropped (the partition was revoked meanwhile)",
                         partition, at)
                return
            self.desk.install(partition, at, book)
            if offset is not None and partition not in self._assigned:
                self.desk.suspend([partition])  # handed a record the group has not (or no longer) assigned
        log.info("reviews[%d]: state rebuilt from %d record(s) before offset %d", partition, rows[0], at)
        closures = self.desk.unclosed(partition)
        if closures:
            log.warning("reviews[%d]: %d review(s) decided by votes before offset %d have no closure in the log; "
                        "closing them now", partition, len(closures), at)
            await self.publish(closures)

    def _fold(self, partition: int, offset: int, rows: list[int]) -> ReviewBook:
        records = list(self.read(partition, 0, offset))
        rows.append(len(records))
        return self.desk.fold((r.value, r.timestamp_ms * 1000) for r in records)


async def _blocking(fn: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a failed rebuild's exception seen (:meth:`DeskRebuilds.ready` re-raises it)."""
    if not task.cancelled():
        task.exception()
