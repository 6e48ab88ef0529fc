"""A consumer group's partitions of one topic, as an agent that checks what Faust hands it sees them.

Why: Faust's consumer can drop fetched records before handing them to an agent (see
:mod:`processors.input_gaps` and :mod:`processors.reviews.rebuilds`). An agent that finds
such a gap needs three answers about each partition of its input topic, from Kafka rather
than from Faust: where the group resumes it, its committed records in a range, and its
stable end. One object per topic gives them, so every agent asks them the same way.
"""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from lockgate.kernel.kafka_offsets import resume_offset, watermarks
from lockgate.kernel.partition_reader import StoredRecord, committed_reader, read_range

__all__ = ["GroupPartitions"]


class GroupPartitions:
    """``topic``'s partitions as the consumer group ``group_id`` sees them.

    Every method blocks (run them in an executor) and uses one of two Kafka consumers, so
    calls must not overlap. The position consumer carries the group's id but never
    subscribes: asking where the group resumes does not join the group.
    """

    def __init__(self, bootstrap: str, group_id: str, topic: str) -> None:
        self.topic = topic
        self._reader = committed_reader(bootstrap, topic.rsplit(".", 1)[-1])
        self._position = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id,
                                   "enable.auto.commit": False})

    def resume_at(self, partition: int) -> int:
        """The offset of ``partition`` the group resumes at (its first record handed to an agent)."""
        return resume_offset(self._position, TopicPartition(self.topic, partition), 30.0)

    def records(self, partition: int, start: int, end: int) -> list[StoredRecord]:
        """``partition``'s committed records with ``start <= offset < end``."""
        return read_range(self._reader, self.topic, partition, start, end)

    def end(self, partition: int) -> int:
        """``partition``'s stable end offset (past its last committed record)."""
        return watermarks(self._reader, TopicPartition(self.topic, partition), 10.0)[1]
