"""Acknowledge records in input order, however out of order they finish.

The agents finish records concurrently (:class:`processors.app._Pipeline`), but Faust must
learn of them in offset order: faust-streaming (0.15) commits straight past a *single*
unacknowledged offset at the head of a partition — its head-gap check reads
``min(acked) - committed > 1`` where ``> 0`` is meant (faust-streaming issue #606, open).
When one record is slow (its output waits for a partition whose leader just died) and the
next ones are acknowledged, Faust commits over it; if the worker then restarts, that
record is never processed again, and its ledger events are lost although its verdict
was delivered. Releasing an acknowledgement only once every earlier record of the same
partition has finished keeps the acknowledged offsets contiguous from the committed one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["AckInOrder", "Ticket"]

T = TypeVar("T")


@dataclass(eq=False)
class Ticket(Generic[T]):
    """One started record: what to acknowledge, and whether it has finished."""

    key: Hashable
    item: T
    finished: bool = field(default=False)


class AckInOrder(Generic[T]):
    """Per key (a topic partition), release items in the order they were started."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[Ticket[T]]] = {}

    def start(self, key: Hashable, item: T) -> Ticket[T]:
        """Register ``item`` as the next record of ``key``; finish it with :meth:`finish`."""
        ticket = Ticket(key, item)
        self._queues.setdefault(key, deque()).append(ticket)
        return ticket

    def finish(self, ticket: Ticket[T]) -> list[T]:
        """Mark ``ticket`` finished; return the items now due for acknowledgement, in order."""
        ticket.finished = True
        queue = self._queues[ticket.key]
        due: list[T] = []
        while queue and queue[0].finished:
            due.append(queue.popleft().item)
        if not queue:
            del self._queues[ticket.key]
        return due

    def pending(self) -> int:
        """Records started and not yet released."""
        return sum(len(q) for q in self._queues.values())
