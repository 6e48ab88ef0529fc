"""A fenced ledger consumer is replaced, not polled forever.

When a broker dies, the ledger group's coordinator moves and the stage's static member can
be fenced (``FENCED_INSTANCE_ID``): librdkafka then never delivers another record to that
consumer. The stage used to log the error on every poll and chain nothing again; it must
close the consumer, forget the partitions it owned (their state is rebuilt from committed
records on the next assignment) and join again — without opening a transaction.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError

from processors.ledger_stage import LedgerStage
from processors.ledger_writer import LedgerWriter
from schemas.topics import Topics
from trust.keys import SigningKey


class _Msg:
    def __init__(self, err: KafkaError | None) -> None:
        self._err = err

    def error(self) -> KafkaError | None:
        return self._err


class _Consumer:
    """Every poll hands back ``err``."""

    def __init__(self, err: KafkaError) -> None:
        self.err = err
        self.closed = False

    def consume(self, num_messages: int, timeout: float) -> list[_Msg]:
        return [_Msg(self.err)]

    def close(self) -> None:
        self.closed = True


class _NoTransactions:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the producer was used ({name}) while replacing a fenced consumer")


@pytest.mark.parametrize("err", [KafkaError(KafkaError.FENCED_INSTANCE_ID, "fenced"),
                                 KafkaError(KafkaError._FATAL, "fatal"),
                                 KafkaError(KafkaError.UNKNOWN, "fatal", fatal=True)])
def test_a_broken_consumer_is_closed_its_partitions_released_and_a_new_one_joins(
        monkeypatch: pytest.MonkeyPatch, err: KafkaError) -> None:
    writer = LedgerWriter(SigningKey.generate(), "p-test", checkpoint_every=100, checkpoint_interval_s=5.0,
                          dedup_window=100)
    stage = LedgerStage(writer, bootstrap="127.0.0.1:9", topics=Topics("t."), app_id="app", processor_id="p-test")
    writer.recover(0, [], None, [])
    writer.recover(2, [], None, [])
    stage._to_recover.add(1)
    fenced = _Consumer(err)
    replacement = object()
    stage._consumer = fenced  # type: ignore[assignment]
    stage._producer = _NoTransactions()  # type: ignore[assignment]
    monkeypatch.setattr(stage, "_new_consumer", lambda: replacement)

    stage._step()

    assert fenced.closed
    assert stage._consumer is replacement
    assert writer.partitions() == [] and stage._to_recover == set()


def test_an_ordinary_consumer_error_keeps_the_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    writer = LedgerWriter(SigningKey.generate(), "p-test", checkpoint_every=100, checkpoint_interval_s=5.0,
                          dedup_window=100)
    stage = LedgerStage(writer, bootstrap="127.0.0.1:9", topics=Topics("t."), app_id="app", processor_id="p-test")
    consumer = _Consumer(KafkaError(KafkaError._TRANSPORT, "broker down"))
    stage._consumer = consumer  # type: ignore[assignment]
    monkeypatch.setattr(stage, "_new_consumer", lambda: pytest.fail("replaced on a transient error"))
    stage._step()
    current: Any = stage._consumer
    assert not consumer.closed and current is consumer
