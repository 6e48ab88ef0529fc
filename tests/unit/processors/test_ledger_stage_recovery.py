"""Recovery reads a partition's head only once no transaction on it is undecided.

A commit's offsets can be visible before its markers reach the audit partition; a worker
that keeps a partition across a rebalance re-recovers it right after its own last commit.
Read then, the head lacks that transaction and the next events would fork the chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lockgate.kernel.errors import KafkaReadError
from processors import ledger_stage
from processors.ledger_stage import LedgerStage
from processors.ledger_writer import LedgerWriter
from schemas.topics import Topics
from trust.keys import SigningKey


def _stage() -> LedgerStage:
    writer = LedgerWriter(SigningKey.generate(), "p-test", checkpoint_every=100, checkpoint_interval_s=5.0,
                          dedup_window=100)
    return LedgerStage(writer, bootstrap="127.0.0.1:9", topics=Topics("t."), app_id="app", processor_id="p-test",
                       recovery_timeout_s=0.5)


def _answers(monkeypatch: pytest.MonkeyPatch, stage: LedgerStage, stable: list[int], end: list[int]
             ) -> tuple[Any, list[str]]:
    """The committed reader to pass, and the log of watermark calls (stable ends, then ends, in turn)."""
    committed, uncommitted = object(), object()
    stage._uncommitted = uncommitted  # type: ignore[assignment]
    ends: dict[int, Iterator[int]] = {id(committed): iter(stable), id(uncommitted): iter(end)}
    calls: list[str] = []

    def watermarks(consumer: Any, _tp: Any, _timeout: float) -> tuple[int, int]:
        calls.append("stable" if consumer is committed else "end")
        return 0, next(ends[id(consumer)])

    monkeypatch.setattr(ledger_stage, "watermarks", watermarks)
    return committed, calls


def test_recovery_waits_for_the_commit_markers_of_the_last_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    stage = _stage()
    # The last transaction's 4 records (offsets 5..8) are written; its markers land late.
    committed, calls = _answers(monkeypatch, stage, stable=[5, 5, 10], end=[10, 10, 10])
    stage._await_stable(committed, 0)
    assert calls == ["stable", "end"] * 3  # returned only once stable end == end


def test_a_partition_that_never_settles_is_retried_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    stage = _stage()
    committed, _ = _answers(monkeypatch, stage, stable=[5] * 10_000, end=[9] * 10_000)
    with pytest.raises(KafkaReadError, match=r"undecided transactional records \(stable end 5, end 9\)"):
        stage._await_stable(committed, 0)
