"""Watermark offsets that survive the brief NOT_LEADER window after a topic is created.

Right after ``CreateTopics`` returns, the broker may answer offset requests with
NOT_LEADER_FOR_PARTITION for a moment; every reader that starts "at the end" or reads "up
to the end" goes through :func:`watermarks` instead of retrying on its own.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

__all__ = ["watermarks"]


def watermarks(consumer: Consumer, tp: TopicPartition, timeout_s: float) -> tuple[int, int]:
    """(low, high) watermarks of ``tp``, retrying until ``timeout_s`` elapses."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=max(0.5, timeout_s))
            return int(low), int(high)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
