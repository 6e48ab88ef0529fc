"""Publish keyed records and wait for the broker's acknowledgement of each.

Keys are partitioned with ``murmur2`` — what the processor's publisher, the Java client and
aiokafka use — so a record keyed like the processor's lands on the same partition: the
reviews topic relies on one review's records sharing a partition.

:class:`KeyedPublisher` is a long-lived idempotent producer for a process that publishes
more than once (the sink's review inbox): an idempotent producer's first record waits
~0.5 s for its producer id, later ones a few milliseconds. :func:`publish_keyed` is the
one-shot form (a CLI command).
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from lockgate.kernel.errors import KafkaWriteError

__all__ = ["KeyedPublisher", "publish_keyed"]


class KeyedPublisher:
    """One idempotent producer; :meth:`publish` may be called from several threads."""

    def __init__(self, bootstrap: str, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                   "partitioner": "murmur2_random", "message.timeout.ms": int(timeout_s * 1000)})

    def publish(self, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
        """Publish ``value`` under ``key``; returns (partition, offset) once acknowledged."""
        result: list[tuple[int, int] | KafkaError] = []
        done = threading.Event()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            result.append(err if err is not None else (int(msg.partition() or 0), int(msg.offset() or 0)))
            done.set()

        try:
            self._producer.produce(topic, value, key=key, on_delivery=delivered)
        except (BufferError, KafkaException) as exc:
            raise KafkaWriteError(f"could not publish to {topic}: {exc}") from exc
        deadline = time.monotonic() + self.timeout_s + 1
        while not done.is_set() and time.monotonic() < deadline:
            self._producer.poll(0.01)  # serves this record's callback (or another thread's)
        if not result:
            raise KafkaWriteError(f"{topic}: no acknowledgement within {self.timeout_s:g}s; is the broker up "
                                  "(`lockgate status`)?")
        outcome = result[0]
        if isinstance(outcome, KafkaError):
            raise KafkaWriteError(f"{topic} refused the record: {outcome.str()}")
        return outcome

    def close(self) -> None:
        self._producer.flush(self.timeout_s)


def publish_keyed(bootstrap: str, topic: str, key: bytes, value: bytes, timeout_s: float = 10.0) -> tuple[int, int]:
    """Publish ``value`` under ``key`` with a producer of its own; (partition, offset) once acknowledged."""
    publisher = KeyedPublisher(bootstrap, timeout_s)
    try:
        return publisher.publish(topic, key, value)
    finally:
        publisher.close()
