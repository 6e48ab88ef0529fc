"""Watermarks of a partition whose leader died: refresh the leaders, don't wait out the dead one.

A reader that only ``assign``s now and then keeps its old metadata after a node's death;
librdkafka sends its offset requests to the dead leader, where each times out. The
ledger stage's recovery retried such a partition every minute, for ever.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from lockgate.kernel import kafka_offsets
from lockgate.kernel.kafka_offsets import watermarks


class _StaleLeaderConsumer:
    """Offset requests time out until the topic's metadata is fetched again."""

    def __init__(self) -> None:
        self.refreshed: list[str] = []
        self.timeouts: list[float] = []

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self.timeouts.append(timeout)
        if not self.refreshed:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to get watermark offsets"))
        return 3, 42

    def list_topics(self, topic: str, timeout: float) -> Any:
        self.refreshed.append(topic)
        return object()


def test_a_stale_leader_costs_one_short_attempt_and_a_metadata_refresh() -> None:
    consumer = _StaleLeaderConsumer()
    assert watermarks(consumer, TopicPartition("t.audit", 2), 60.0) == (3, 42)  # type: ignore[arg-type]
    assert consumer.refreshed == ["t.audit"]
    assert consumer.timeouts[0] <= kafka_offsets.ATTEMPT_S


def test_no_leader_at_all_fails_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _StaleLeaderConsumer()
    monkeypatch.setattr(consumer, "list_topics", lambda topic, timeout: None)  # never helps
    with pytest.raises(KafkaException):
        watermarks(consumer, TopicPartition("t.audit", 2), 0.3)  # type: ignore[arg-type]
    assert len(consumer.timeouts) >= 2
