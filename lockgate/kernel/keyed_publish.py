"""Publish one keyed record and wait for the broker's acknowledgement.

Keys are partitioned with ``murmur2`` — what the processor's publisher, the Java client and
aiokafka use — so a record keyed like the processor's lands on the same partition: the
reviews topic relies on one review's records sharing a partition.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from lockgate.kernel.errors import KafkaWriteError

__all__ = ["publish_keyed"]


def publish_keyed(bootstrap: str, topic: str, key: bytes, value: bytes, timeout_s: float = 10.0) -> tuple[int, int]:
    """Publish ``value`` under ``key``; returns (partition, offset) once acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "partitioner": "murmur2_random", "message.timeout.ms": int(timeout_s * 1000)})
    result: list[tuple[int, int] | KafkaError] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        result.append(err if err is not None else (int(msg.partition() or 0), int(msg.offset() or 0)))

    try:
        producer.produce(topic, value, key=key, on_delivery=delivered)
    except (BufferError, KafkaException) as exc:
        raise KafkaWriteError(f"could not publish to {topic}: {exc}") from exc
    producer.flush(timeout_s + 1)
    if not result:
        raise KafkaWriteError(f"{topic}: no acknowledgement within {timeout_s:g}s; is the broker up "
                              "(`lockgate status`)?")
    outcome = result[0]
    if isinstance(outcome, KafkaError):
        raise KafkaWriteError(f"{topic} refused the record: {outcome.str()}")
    return outcome
