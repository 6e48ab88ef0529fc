"""A produce/consume round trip of Avro records through the running broker."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from deploy.settings import StackSettings
from lockgate.kernel.kafka_offsets import watermarks
from schemas.codec import get_codec

__all__ = ["smoke"]


def smoke(count: int = 100, settings: StackSettings | None = None, timeout_s: float = 30.0) -> dict[str, Any]:
    """Produce ``count`` DeadLetter records to the dead-letter topic and read them back."""
    s = settings or StackSettings()
    codec = get_codec()
    topic = s.topics.deadletter
    run = uuid.uuid4().hex
    started = time.monotonic()
    producer = Producer({"bootstrap.servers": s.bootstrap, "enable.idempotence": True})
    consumer = Consumer({"bootstrap.servers": s.bootstrap, "group.id": f"lockgate-smoke-{run}",
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
    start = []
    for p in partitions:
        high = watermarks(consumer, TopicPartition(topic, p), timeout_s)[1]
        start.append(TopicPartition(topic, p, high))
    consumer.assign(start)
    for i in range(count):
        rec = {"dead_letter_id": f"smoke-{run}-{i}", "recorded_at": int(time.time() * 1e6),
               "source_topic": "smoke", "source_partition": 0, "source_offset": i, "stage": "smoke",
               "error_type": "Smoke", "error": "smoke test record", "key": None, "raw": b"smoke"}
        producer.produce(topic, codec.encode("DeadLetter", rec), key=run.encode())
    producer.flush(timeout_s)
    seen = 0
    deadline = time.monotonic() + timeout_s
    while seen < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        rec = codec.decode_as("DeadLetter", msg.value() or b"")
        if str(rec["dead_letter_id"]).startswith(f"smoke-{run}-"):
            seen += 1
    consumer.close()
    return {"topic": topic, "produced": count, "consumed": seen, "seconds": time.monotonic() - started}

