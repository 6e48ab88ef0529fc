"""Release acknowledgements to Faust in input order per partition, whatever order records finish in.

Why: the agents finish records concurrently (each waits for the broker's acknowledgements
of its outputs), so record *n + 1* of a partition often finishes before record *n*. Faust
must then commit no offset past *n* until *n* is done — a crash would otherwise skip *n*,
whose outputs may be missing (a verdict sent, its ledger events never written). Faust
(faust-streaming 0.15.3, ``Consumer._new_offset``) does not guarantee that: with the
committed position at *c* and *c* itself unacknowledged, acknowledging *c + 1* commits
past *c* (it tolerates a hole of exactly one offset), and before a partition's first commit
it checks nothing at all. ``tests/unit/processors/test_acks.py`` pins both behaviours of
Faust, so an upgrade that fixes or changes them is noticed.

So the agents never hand Faust an out-of-order acknowledgement: :class:`InOrderAcks`
holds a finished record back until every earlier record of its partition has finished.
Faust's acknowledged offsets are then always a contiguous run from its committed
position, which its commit logic handles correctly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["InOrderAcks"]

T = TypeVar("T")


@dataclass
class _Slot(Generic[T]):
    partition: Hashable
    item: T
    done: bool = False


class InOrderAcks(Generic[T]):
    """Per-partition queues of started records; :meth:`finished` returns what may be acked now.

    ``started`` must be called in input order within each partition (the agents start
    records in the order Faust delivers them). Not thread-safe: one event loop drives it.
    Items are told apart by identity, so each started item must be a distinct live object.
    """

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[_Slot[T]]] = {}
        self._slots: dict[int, _Slot[T]] = {}

    def started(self, partition: Hashable, item: T) -> None:
        """Record ``item`` as the newest started record of ``partition``."""
        slot = _Slot(partition, item)
        self._queues.setdefault(partition, deque()).append(slot)
        self._slots[id(item)] = slot

    def finished(self, item: T) -> list[T]:
        """Mark ``item`` finished; the records (``item`` possibly among them) now ackable, in order."""
        slot = self._slots.pop(id(item))
        slot.done = True
        queue = self._queues[slot.partition]
        ready: list[T] = []
        while queue and queue[0].done:
            ready.append(queue.popleft().item)
        if not queue:
            del self._queues[slot.partition]
        return ready

    def pending(self) -> int:
        """Records started and not yet released."""
        return sum(len(q) for q in self._queues.values())
