"""Read what a partition durably holds: committed records only, to the end, or its tail.

Every reader that reconstructs state from a topic goes through here, because a topic
written with transactions breaks the naive "read until offset high - 1" loop: the last
offsets of a partition are transaction markers (control records) and aborted records,
which a ``read_committed`` consumer never delivers, so that loop never ends. Here the end
of a partition is its *last stable offset* (what ``get_watermark_offsets`` answers under
``read_committed``), and reaching it is detected by partition EOF, not by an offset.

Readers use :func:`committed_reader` consumers: ``read_committed``, EOF events on, no
group membership and no offset commits (they only ``assign``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, TopicPartition

from lockgate.kernel.errors import KafkaReadError
from lockgate.kernel.kafka_offsets import watermarks

__all__ = ["StoredRecord", "committed_reader", "read_partition", "read_range", "read_since", "read_tail",
           "read_topic"]


@dataclass(frozen=True)
class StoredRecord:
    """One committed record of a partition."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0  # the record's Kafka timestamp (its type is the topic's)

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name``, or ``None``."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found


def _headers(raw: object) -> tuple[tuple[str, bytes], ...]:
    items = raw.items() if isinstance(raw, dict) else raw if isinstance(raw, list | tuple) else ()
    out: list[tuple[str, bytes]] = []
    for name, value in items:
        out.append((str(name), value if isinstance(value, bytes) else str(value or "").encode()))
    return tuple(out)


def committed_reader(bootstrap: str, purpose: str, fetch_wait_ms: int = 10) -> Consumer:
    """A consumer for the functions below (``read_committed``, EOF events, assign only).

    ``fetch_wait_ms``: how long the broker may hold an empty fetch; short to see the end of
    a partition soon, long for a reader that follows a topic (the broker answers as soon
    as a record arrives either way).
    """
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"lockgate-reader-{purpose}-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        # The end of a partition shows as an empty fetch: don't let the broker hold it open.
        "fetch.wait.max.ms": fetch_wait_ms,
    })


def read_range(consumer: Consumer, topic: str, partition: int, start: int, end: int,
               timeout_s: float = 30.0) -> list[StoredRecord]:
    """The committed records of ``topic[partition]`` with ``start <= offset < end``.

    Returns early at the end of the log (``end`` may lie beyond it). Raises
    :class:`KafkaReadError` on a broker error, or when ``timeout_s`` passes without progress.
    """
    return list(_iter_range(consumer, topic, partition, start, end, timeout_s))


def read_partition(consumer: Consumer, topic: str, partition: int,
                   timeout_s: float = 30.0) -> Iterator[StoredRecord]:
    """Every committed record of ``topic[partition]``, from the start to the stable end."""
    low, end = watermarks(consumer, TopicPartition(topic, partition), timeout_s)
    return _iter_range(consumer, topic, partition, low, end, timeout_s)


def read_since(consumer: Consumer, topic: str, partition: int, since_ms: int,
               timeout_s: float = 30.0) -> list[StoredRecord]:
    """The committed records of ``topic[partition]`` whose timestamps are ``since_ms`` or later
    (the broker's time index: from the first such record to the stable end)."""
    low, end = watermarks(consumer, TopicPartition(topic, partition), timeout_s)
    found = consumer.offsets_for_times([TopicPartition(topic, partition, since_ms)], timeout=timeout_s)
    start = found[0].offset if found and found[0].offset >= 0 else end  # -1: nothing that recent
    return read_range(consumer, topic, partition, max(low, start), end, timeout_s)


def _iter_range(consumer: Consumer, topic: str, partition: int, start: int, end: int,
                timeout_s: float) -> Iterator[StoredRecord]:
    if start >= end:
        return
    consumer.assign([TopicPartition(topic, partition, start)])
    deadline = time.monotonic() + timeout_s
    n = 0
    expected = start  # offsets only grow: anything lower was yielded already, or is stale
    try:
        while True:
            for msg in consumer.consume(num_messages=1000, timeout=0.01):  # returns when full or timed out
                if msg.topic() != topic or msg.partition() != partition:
                    continue  # prefetched before this assignment
                err = msg.error()
                offset = int(msg.offset() or 0)
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return  # the end of the committed log
                    raise KafkaReadError(f"reading {topic}[{partition}]: {err.str()}")
                if offset < expected:
                    continue
                if offset >= end:
                    return
                expected = offset + 1
                n += 1
                deadline = time.monotonic() + timeout_s
                yield StoredRecord(partition, offset, msg.key(), msg.value(), _headers(msg.headers()),
                                   int(msg.timestamp()[1]))
                if offset >= end - 1:
                    return
            if time.monotonic() > deadline:
                raise KafkaReadError(
                    f"reading {topic}[{partition}] offsets {start}..{end - 1} made no progress for "
                    f"{timeout_s}s (got {n} records); is the broker reachable?")
    finally:
        consumer.unassign()


def read_tail(consumer: Consumer, topic: str, partition: int,
              enough: Callable[[Sequence[StoredRecord]], bool], *, chunk: int = 1000,
              timeout_s: float = 30.0) -> list[StoredRecord]:
    """The newest committed records of ``topic[partition]``, in log order.

    Reads backwards from the stable end in growing chunks until ``enough(records)`` says
    so or the start of the partition is reached; ``records`` is always a suffix of the
    committed log. What is appended after the stable end was first read is not included.
    """
    low, end = watermarks(consumer, TopicPartition(topic, partition), timeout_s)
    records: list[StoredRecord] = []
    hi = end
    size = max(1, chunk)
    while hi > low:
        lo = max(low, hi - size)
        records = read_range(consumer, topic, partition, lo, hi, timeout_s) + records
        if enough(records):
            break
        hi = lo
        size *= 2
    return records


def read_topic(bootstrap: str, topic: str, purpose: str, timeout_s: float = 30.0) -> list[StoredRecord]:
    """Every committed record of every partition of ``topic``, partition by partition in log order."""
    consumer = committed_reader(bootstrap, purpose)
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            raise KafkaReadError(f"topic {topic} not found; is the stack up (`lockgate up`)?")
        out: list[StoredRecord] = []
        for partition in sorted(meta.partitions):
            out.extend(read_partition(consumer, topic, partition, timeout_s))
        return out
    finally:
        consumer.close()
