"""Acks reach Faust in input order per partition, because Faust's commit logic needs it."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from intervaltree import IntervalTree

from processors.acks import InOrderAcks
from processors.app import _Pipeline


def _faust_next_commit(committed: int | None, acked: list[int]) -> int | None:
    """What faust-streaming's ``Consumer._new_offset`` would commit for one partition."""
    tp = "t-0"
    state = SimpleNamespace(_acked={tp: list(acked)}, _gap=defaultdict(IntervalTree),
                            _committed_offset={tp: committed}, _acked_index={tp: set(acked)})
    result: int | None = Consumer._new_offset(state, tp)  # type: ignore[arg-type]
    return result


def test_faust_commits_past_an_unacked_offset_when_acks_arrive_out_of_order() -> None:
    # Why InOrderAcks exists: position 10 is not acked, yet acking 11 and 12 commits 13, so a
    # crash now would never re-deliver offset 10. If this starts failing, Faust changed its
    # commit logic: re-read processors/acks.py before relaxing anything.
    assert _faust_next_commit(10, [11, 12]) == 13
    assert _faust_next_commit(None, [3, 4]) == 5  # before the first commit nothing is checked
    assert _faust_next_commit(10, [10, 11]) == 12  # in order: correct


def test_a_finished_record_waits_for_every_earlier_record_of_its_partition() -> None:
    acks: InOrderAcks[str] = InOrderAcks()
    for name in ("a0", "a1", "a2"):
        acks.started("p0", name)
    acks.started("p1", "b0")
    assert acks.finished("a2") == []
    assert acks.finished("a1") == []
    assert acks.finished("b0") == ["b0"]  # partitions are independent
    assert acks.pending() == 3
    assert acks.finished("a0") == ["a0", "a1", "a2"]
    assert acks.pending() == 0


def test_in_order_finishing_releases_each_record_at_once() -> None:
    acks: InOrderAcks[str] = InOrderAcks()
    acks.started(0, "x")
    assert acks.finished("x") == ["x"]
    acks.started(0, "y")
    acks.started(0, "z")
    assert acks.finished("y") == ["y"]
    assert acks.finished("z") == ["z"]


@dataclass(eq=False)
class _Event:
    tp: str
    offset: int
    message: Any = None

    def __post_init__(self) -> None:
        self.message = SimpleNamespace(tp=self.tp, offset=self.offset)


@dataclass
class _Stream:
    """Stands in for a Faust stream: yields events, records acks."""

    items: list[_Event]
    acked: list[tuple[str, int]] = field(default_factory=list)

    def noack(self) -> _Stream:
        return self

    async def events(self) -> Any:
        for item in self.items:
            yield item

    async def ack(self, event: _Event) -> bool:
        self.acked.append((event.tp, event.offset))
        return True


def test_the_pipeline_acks_in_input_order_when_records_finish_in_reverse() -> None:
    async def scenario() -> list[tuple[str, int]]:
        items = [_Event("p0", i) for i in range(5)] + [_Event("p1", 0)]
        stream = _Stream(items)
        gates = {id(e): asyncio.Event() for e in items}

        async def start(event: _Event) -> Any:
            async def finish() -> None:
                await gates[id(event)].wait()
            return finish()

        pipeline = _Pipeline(publisher=None, stage="test", limit=16)  # type: ignore[arg-type]
        await pipeline.run(stream, start)
        for e in reversed(items):  # the last record of p0 finishes first
            gates[id(e)].set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        await asyncio.gather(*pipeline._tasks)
        return stream.acked

    acked = asyncio.run(scenario())
    assert acked == [("p1", 0), ("p0", 0), ("p0", 1), ("p0", 2), ("p0", 3), ("p0", 4)]
