"""Watermark offsets that survive a new topic's brief NOT_LEADER window and a leader's death.

Right after ``CreateTopics`` returns, the broker may answer offset requests with
NOT_LEADER_FOR_PARTITION for a moment; and after a node of a cluster dies, a client that
has not fetched metadata since (a reader that only ``assign``s now and then) still sends
its offset requests to the dead leader, where they wait until they time out — librdkafka
refreshes the leader only on a fetch or produce error, so every query to that partition
fails the same way for the next five minutes. Every reader that starts "at the end" or
reads "up to the end" goes through :func:`watermarks`, which asks for short attempts and
refreshes the topic's metadata (new leaders) after a failed one, until ``timeout_s``.

:func:`resume_offset` says where a consumer group resumes a partition (what a worker the
group assigns it will be handed first), for state that must be rebuilt up to exactly there.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

__all__ = ["ATTEMPT_S", "resume_offset", "watermarks"]

ATTEMPT_S = 3.0
"""Longest single watermark request: a live leader answers in milliseconds."""


def watermarks(consumer: Consumer, tp: TopicPartition, timeout_s: float) -> tuple[int, int]:
    """(low, high) watermarks of ``tp``, retrying until ``timeout_s`` elapses."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            attempt = max(0.5, min(ATTEMPT_S, deadline - time.monotonic()))
            low, high = consumer.get_watermark_offsets(tp, timeout=attempt)
            return int(low), int(high)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            _refresh_leaders(consumer, tp.topic, deadline)
            time.sleep(0.1)


def _refresh_leaders(consumer: Consumer, topic: str, deadline: float) -> None:
    """Fetch ``topic``'s metadata: its partitions' current leaders replace stale ones."""
    try:
        consumer.list_topics(topic, timeout=max(0.5, min(ATTEMPT_S, deadline - time.monotonic())))
    except KafkaException:
        pass  # no broker answered; the next attempt says so


def resume_offset(consumer: Consumer, tp: TopicPartition, timeout_s: float) -> int:
    """The offset the group of ``consumer`` resumes ``tp`` at: its committed offset, or the
    partition's start when it has none or it lies outside the log (``auto.offset.reset=earliest``).

    ``consumer`` is configured with the group's ``group.id`` and never subscribes (asking
    does not join the group). Raises :class:`KafkaException` when Kafka does not answer.
    """
    (committed,) = consumer.committed([tp], timeout=timeout_s)
    if committed.error is not None:
        raise KafkaException(committed.error)
    low, high = watermarks(consumer, tp, timeout_s)
    offset = int(committed.offset)
    return offset if low <= offset <= high else low
