"""The Merkle frontier gives the whole log's root in O(log n) state, and proves from it."""

from __future__ import annotations

import hashlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trust.frontier import CompactRange
from trust.merkle import EMPTY_ROOT, consistency_proof, merkle_root, verify_consistency


def _leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]


def test_root_after_every_append_equals_the_full_tree() -> None:
    leaves = _leaves(300)
    tree = CompactRange()
    assert tree.root() == EMPTY_ROOT
    for i, leaf in enumerate(leaves):
        tree.append(leaf)
        assert tree.size == i + 1
        assert tree.root() == merkle_root(leaves[: i + 1])
        assert len(tree.nodes) == (i + 1).bit_count()  # O(log n) state


def test_nodes_tile_the_tree_left_to_right() -> None:
    leaves = _leaves(13)
    tree = CompactRange.from_leaves(leaves)
    assert tree.ranges() == [(0, 8), (8, 12), (12, 13)]
    assert list(tree.nodes) == [merkle_root(leaves[lo:hi]) for lo, hi in tree.ranges()]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 200), st.data())
def test_proof_from_the_frontier_equals_the_proof_from_all_leaves(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    m = data.draw(st.integers(0, n))
    old = CompactRange.from_leaves(leaves[:m])
    proof = old.consistency_proof(leaves[m:])
    assert proof == consistency_proof(leaves, m)
    assert verify_consistency(m, n, old.root(), merkle_root(leaves), proof)


def test_serialization_round_trips_and_refuses_bad_shapes() -> None:
    tree = CompactRange.from_leaves(_leaves(77))
    assert CompactRange.from_bytes(tree.to_bytes()) == tree
    assert len(tree.to_bytes()) == 8 + 32 * (77).bit_count()
    with pytest.raises(ValueError):
        CompactRange.from_bytes(tree.to_bytes()[:-1])
    with pytest.raises(ValueError):
        CompactRange.from_bytes((79).to_bytes(8, "big") + tree.to_bytes()[8:])  # node count ≠ bits
    with pytest.raises(ValueError):
        CompactRange(-1)


def test_copies_are_independent() -> None:
    a = CompactRange.from_leaves(_leaves(5))
    b = a.copy()
    b.append(b"x" * 32)
    assert (a.size, b.size) == (5, 6)
    assert a.root() == merkle_root(_leaves(5))


def test_incremental_root_cost_per_append_is_small() -> None:
    """Not a benchmark (bench/tlog_bench.py is): a sanity bound that catches an O(n) root."""
    leaves = _leaves(20_000)
    tree = CompactRange.from_leaves(leaves[:10_000])
    started = time.perf_counter()
    for leaf in leaves[10_000:]:
        tree.append(leaf)
        tree.root()
    per_append = (time.perf_counter() - started) / 10_000
    assert tree.root() == merkle_root(leaves)
    assert per_append < 1e-3
