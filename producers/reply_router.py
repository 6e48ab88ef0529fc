"""Request/reply over Kafka: one background thread per Guard reads its reply partition.

Each Guard instance owns an instance id and a reply partition of the verdicts topic
(``reply_partition`` setting, else a hash of the instance id). The processor writes each
verdict to the partition named in the request and echoes the instance id; the router
reads only that partition, drops verdicts addressed to other instances (possible when
more Guards than partitions share one) and matches the rest to waiting requests by
correlation id. A verdict whose request already gave up (timed out) is dropped and
counted in ``late_verdicts``; it is never handed to another request.

A verdict with decision ``review`` is not the last word: the router answers the waiting
request with it and, in the same step, registers a follow-up under the same correlation
id for the final verdict (:meth:`ReplyRouter.follow`), so a fast approval cannot slip
between the two.

The router also serves the producer's delivery callbacks, so a publish failure (broker
down) reaches the waiting request as :class:`GuardUnavailable` well before the timeout.
"""

from __future__ import annotations

import threading
import zlib
from concurrent.futures import Future
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from lockgate.kernel.kafka_offsets import watermarks

__all__ = ["ReplyRouter", "RouterStats"]


@dataclass
class RouterStats:
    """Counters a service may export; all monotonic."""

    delivered: int = 0
    late_verdicts: int = 0
    foreign_verdicts: int = 0
    undecodable: int = 0


@dataclass
class _Pending:
    action_id: str
    future: Future[bytes] = field(default_factory=Future)


class ReplyRouter:
    """Owns the reply consumer thread and the table of pending requests."""

    def __init__(self, bootstrap: str, verdicts_topic: str, instance_id: str,
                 reply_partition: int | None, producer: Producer, ready_timeout_s: float = 15.0) -> None:
        self.instance_id = instance_id
        self.topic = verdicts_topic
        self.stats = RouterStats()
        self._producer = producer
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"lockgate-guard-{instance_id}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 10,
            "fetch.min.bytes": 1,
        })
        meta = self._consumer.list_topics(verdicts_topic, timeout=ready_timeout_s).topics.get(verdicts_topic)
        if meta is None or meta.error is not None or not meta.partitions:
            self._consumer.close()
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                            f"verdicts topic {verdicts_topic} not found; run `lockgate up`"))
        count = len(meta.partitions)
        self.partition = (reply_partition if reply_partition is not None
                          else zlib.crc32(instance_id.encode()) % count)
        if self.partition >= count:
            self._consumer.close()
            raise ValueError(f"reply partition {self.partition} does not exist ({verdicts_topic} has {count})")
        high = self._end_offset(ready_timeout_s)
        # Start at the current end: earlier verdicts are for other (older) instances.
        self._consumer.assign([TopicPartition(verdicts_topic, self.partition, high)])
        self._thread = threading.Thread(target=self._run, name=f"lockgate-replies-{instance_id[:8]}",
                                        daemon=True)
        self._thread.start()

    def _end_offset(self, timeout_s: float) -> int:
        return watermarks(self._consumer, TopicPartition(self.topic, self.partition), timeout_s)[1]

    def expect(self, correlation_id: str, action_id: str) -> Future[bytes]:
        """Register a request before its proposal is published."""
        pending = _Pending(action_id)
        with self._lock:
            self._pending[correlation_id] = pending
        return pending.future

    def follow(self, correlation_id: str) -> Future[bytes] | None:
        """The future of the verdict after a ``review`` one (``None`` if nothing is awaited)."""
        with self._lock:
            pending = self._pending.get(correlation_id)
        return pending.future if pending is not None else None

    def fail(self, correlation_id: str, exc: BaseException) -> None:
        """Fail a pending request (e.g. its proposal could not be delivered)."""
        with self._lock:
            pending = self._pending.pop(correlation_id, None)
        if pending is not None and not pending.future.done():
            pending.future.set_exception(exc)

    def forget(self, correlation_id: str) -> None:
        """The request gave up; a verdict arriving later is counted as late."""
        with self._lock:
            self._pending.pop(correlation_id, None)

    def _run(self) -> None:
        from schemas.codec import get_codec

        codec = get_codec()
        while not self._stop.is_set():
            self._producer.poll(0)
            # poll() returns on the first message; consume(timeout=0) then drains the rest
            # (consume() with a timeout would wait for the whole batch, adding its latency).
            first = self._consumer.poll(0.05)
            if first is None:
                continue
            for msg in [first, *self._consumer.consume(num_messages=500, timeout=0)]:
                if msg.error():
                    continue
                raw = msg.value() or b""
                try:
                    rec = codec.decode_as("Verdict", raw)
                except Exception:
                    self.stats.undecodable += 1
                    continue
                if rec["reply_instance"] != self.instance_id:
                    self.stats.foreign_verdicts += 1
                    continue
                with self._lock:
                    pending = self._pending.pop(rec["correlation_id"], None)
                    if pending is not None and rec["decision"] == "review":
                        # the final verdict follows on the same correlation id
                        self._pending[rec["correlation_id"]] = _Pending(pending.action_id)
                if pending is None:
                    self.stats.late_verdicts += 1
                    continue
                self.stats.delivered += 1
                if not pending.future.done():
                    pending.future.set_result(raw)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()
