"""A checkpoint's published frontier is accepted only when it reproduces what the checkpoint signs.

The ledger stage resumes a partition's log from the frontier on the newest checkpoint record
instead of re-reading every event. Whoever can write the checkpoints topic can write that
header, so every way it can disagree with the signed note must be refused.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trust.errors import CheckpointError
from trust.frontier import CompactRange
from trust.keys import SigningKey
from trust.partition_log import LogFrontier, PartitionLog, checkpointed_frontier
from trust.tlog import DEFAULT_LOG_NAME

KEY = SigningKey.generate()


def _hashes(n: int, salt: bytes = b"") -> list[bytes]:
    return [hashlib.sha256(salt + i.to_bytes(8, "big")).digest() for i in range(n)]


def _log(n: int, partition: int = 3) -> PartitionLog:
    log = PartitionLog(partition)
    for h in _hashes(n):
        log.append(h)
    return log


def _published(n: int) -> tuple[dict[str, Any], bytes, PartitionLog]:
    log = _log(n)
    return log.checkpoint(KEY, "proc-test", 1_000), log.frontier().to_bytes(), log


@pytest.mark.parametrize("n", [1, 2, 7, 64, 1000])
def test_the_published_frontier_round_trips_and_is_accepted(n: int) -> None:
    cp, raw, log = _published(n)
    assert len(raw) == 8 + 32 * n.bit_count()  # O(log n): never the leaves
    got = checkpointed_frontier(cp, raw, KEY.public(), log_name=DEFAULT_LOG_NAME)
    assert got == LogFrontier(log.frontier(), log.head or b"")
    assert got.size == n and got.tree.root() == cp["merkle_root"]


def test_a_frontier_of_another_size_is_refused() -> None:
    cp, _, _ = _published(10)
    other = _log(9).frontier().to_bytes()
    with pytest.raises(CheckpointError, match="has size 9, the signed checkpoint 10"):
        checkpointed_frontier(cp, other, KEY.public(), log_name=DEFAULT_LOG_NAME)


def test_a_frontier_with_an_edited_node_is_refused() -> None:
    cp, raw, _ = _published(12)
    edited = raw[:-1] + bytes([raw[-1] ^ 1])
    with pytest.raises(CheckpointError, match=r"has root .* the signed checkpoint"):
        checkpointed_frontier(cp, edited, KEY.public(), log_name=DEFAULT_LOG_NAME)


def test_a_frontier_of_another_history_with_the_same_size_is_refused() -> None:
    cp, _, _ = _published(12)
    forged = CompactRange.from_leaves(_hashes(12, b"forged")).to_bytes()
    with pytest.raises(CheckpointError, match="has root"):
        checkpointed_frontier(cp, forged, KEY.public(), log_name=DEFAULT_LOG_NAME)


@pytest.mark.parametrize("raw", [b"", b"\x00" * 7, b"\x00" * 8 + b"\x01" * 31, (3).to_bytes(8, "big") + b"\x01" * 32])
def test_a_frontier_that_does_not_decode_is_refused(raw: bytes) -> None:
    cp, _, _ = _published(3)
    with pytest.raises(CheckpointError, match="does not decode"):
        checkpointed_frontier(cp, raw, KEY.public(), log_name=DEFAULT_LOG_NAME)


def test_a_record_root_forged_with_the_frontier_disagrees_with_the_signed_note() -> None:
    cp, _, _ = _published(8)
    forged_tree = CompactRange.from_leaves(_hashes(8, b"forged"))
    forged = dict(cp, merkle_root=forged_tree.root())
    with pytest.raises(CheckpointError, match="merkle_root differs"):
        checkpointed_frontier(forged, forged_tree.to_bytes(), KEY.public(), log_name=DEFAULT_LOG_NAME)


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    log = _log(5)
    cp = log.checkpoint(SigningKey.generate(), "intruder", 1_000)
    with pytest.raises(CheckpointError, match="not a trusted processor key"):
        checkpointed_frontier(cp, log.frontier().to_bytes(), KEY.public(), log_name=DEFAULT_LOG_NAME)


def test_a_checkpoint_of_another_log_is_refused() -> None:
    cp, raw, _ = _published(5)
    with pytest.raises(CheckpointError, match="is not of log"):
        checkpointed_frontier(cp, raw, KEY.public(), log_name="other.example/ledger")


def test_an_odd_size_head_hash_that_is_not_the_last_leaf_is_refused() -> None:
    cp, raw, _ = _published(7)
    with pytest.raises(CheckpointError, match="not the last leaf"):
        checkpointed_frontier(dict(cp, head_hash=b"\x07" * 32), raw, KEY.public(), log_name=DEFAULT_LOG_NAME)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(0, 300))
def test_a_log_resumed_from_a_checkpoint_equals_the_log_built_whole(n: int, more: int) -> None:
    hashes = _hashes(n + more)
    cp, raw, _ = _published(n)
    resumed = PartitionLog.resume(3, checkpointed_frontier(cp, raw, KEY.public(), log_name=DEFAULT_LOG_NAME))
    for h in hashes[n:]:
        resumed.append(h)
    whole = PartitionLog.from_hashes(3, hashes)
    assert (resumed.size, resumed.root(), resumed.head) == (whole.size, whole.root(), whole.head)
