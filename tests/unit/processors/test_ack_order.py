"""Acknowledgements reach Faust in input order, so Faust never commits past a slow record.

faust-streaming 0.15 commits over a single unacknowledged offset at the head of a
partition (issue #606): a record still waiting for its outputs when a broker dies is then
lost on the next restart — its verdict delivered, its ledger events never written. The
agents finish records concurrently; :class:`AckInOrder` holds each acknowledgement back
until every earlier record of its partition has finished.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from hypothesis import given
from hypothesis import strategies as st
from intervaltree import IntervalTree  # type: ignore[import-untyped]

from processors.ack_order import AckInOrder


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers()), max_size=20).flatmap(
    lambda starts: st.tuples(st.just(starts), st.permutations(range(len(starts))))))
def test_items_are_released_in_start_order_once_all_before_them_finished(
        case: tuple[list[tuple[str, int]], list[int]]) -> None:
    starts, finish_order = case
    order: AckInOrder[int] = AckInOrder()
    tickets = [order.start(key, i) for i, (key, _) in enumerate(starts)]
    finished: set[int] = set()
    released: dict[str, list[int]] = defaultdict(list)
    for i in finish_order:
        finished.add(i)
        for item in order.finish(tickets[i]):
            key = starts[item][0]
            earlier = [j for j, (k, _) in enumerate(starts) if k == key and j < item]
            assert set(earlier) <= finished, f"item {item} released before an earlier one of {key} finished"
            released[key].append(item)
    for key in "abc":
        assert released[key] == [i for i, (k, _) in enumerate(starts) if k == key]
    assert order.pending() == 0


def _faust_commit_offset(committed: int, acked: list[int]) -> int | None:
    """What Faust's own offset logic commits for one partition, given the acknowledged offsets."""
    tp = "actions-0"
    fake: Any = SimpleNamespace(_acked={tp: list(acked)}, _gap=defaultdict(IntervalTree),
                                _committed_offset={tp: committed}, _acked_index={tp: set(acked)})
    result: int | None = Consumer._new_offset(fake, tp)  # type: ignore[arg-type]
    return result


def test_faust_commits_past_one_slow_record_when_acks_come_out_of_order() -> None:
    # Offsets 10 (slow: its output waits for a dead leader) and 11..14 in flight; 11..14 finish first.
    # Faust commits 15 although 10 never finished: a restart would skip it. When this starts
    # failing, faust-streaming fixed #606 and AckInOrder is a belt to the braces.
    assert _faust_commit_offset(10, [11, 12, 13, 14]) == 15


def test_acks_in_input_order_never_let_faust_commit_past_an_unfinished_record() -> None:
    order: AckInOrder[int] = AckInOrder()
    tickets = {offset: order.start("actions-0", offset) for offset in range(10, 15)}
    acked: list[int] = []
    for offset in (11, 12, 13, 14):
        acked += order.finish(tickets[offset])
    assert acked == []  # nothing for Faust to commit while 10 is in flight
    acked += order.finish(tickets[10])
    assert acked == [10, 11, 12, 13, 14]
    assert _faust_commit_offset(10, acked) == 15
