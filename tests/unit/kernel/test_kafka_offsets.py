"""Watermarks of a partition whose leader died: refresh the leaders, don't wait out the dead one.

A reader that only ``assign``s now and then keeps its old metadata after a node's death;
librdkafka sends its offset requests to the dead leader, where each times out. The
ledger stage's recovery retried such a partition every minute, for ever.

And where a group resumes a partition (:func:`resume_offset`): what the review desk
rebuilds up to, so it must be exactly where the group's consumer starts.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, TopicPartition

from lockgate.kernel import kafka_offsets
from lockgate.kernel.kafka_offsets import resume_offset, watermarks


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


class _GroupConsumer:
    """A group whose committed offset of the partition is ``committed``; the log spans [3, 42)."""

    def __init__(self, committed: int, error: KafkaError | None = None) -> None:
        self.committed_offset = committed
        self.error = error

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[Any]:
        (tp,) = tps
        return [SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=self.committed_offset,
                                error=self.error)]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return 3, 42


@pytest.mark.parametrize("committed, resumed", [(17, 17), (42, 42), (3, 3),
                                                (OFFSET_INVALID, 3),  # none yet: auto.offset.reset=earliest
                                                (1, 3), (50, 3)])  # outside the log: reset to its start
def test_a_group_resumes_at_its_committed_offset_or_the_start(committed: int, resumed: int) -> None:
    consumer = _GroupConsumer(committed)
    assert resume_offset(consumer, TopicPartition("t.reviews", 1), 5.0) == resumed  # type: ignore[arg-type]


def test_an_unanswered_position_is_an_error_not_the_start() -> None:
    consumer = _GroupConsumer(OFFSET_INVALID, KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS))
    with pytest.raises(KafkaException):
        resume_offset(consumer, TopicPartition("t.reviews", 1), 5.0)  # type: ignore[arg-type]
