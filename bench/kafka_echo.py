"""The bare Kafka echo: the floor under any request/reply over this broker, measured in the same run.

A request on topic A, an echo thread answers on topic B (librdkafka both ways, ``acks=all``,
no linger): :func:`round_trips` times sequential round trips; :func:`pipelined` keeps
``in_flight`` requests outstanding and reports echoes per second.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

__all__ = ["pipelined", "round_trips"]


@contextmanager
def _echo(bootstrap: str) -> Iterator[tuple[Producer, Consumer, str]]:
    run = uuid.uuid4().hex[:8]
    req, rep = f"bench-echo-req-{run}", f"bench-echo-rep-{run}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(req, 1, 1), NewTopic(rep, 1, 1)]).values():
        fut.result()
    time.sleep(1.0)
    stop = threading.Event()

    def echo() -> None:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"echo-{run}", "fetch.wait.max.ms": 10})
        c.assign([TopicPartition(req, 0, 0)])
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
        while not stop.is_set():
            # poll() returns on the first message; consume(timeout=0) drains the rest without waiting
            first = c.poll(0.05)
            if first is None:
                continue
            for msg in [first, *c.consume(500, 0)]:
                if not msg.error():
                    p.produce(rep, msg.value())
            p.poll(0)
        p.flush(5)
        c.close()

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"req-{run}", "fetch.wait.max.ms": 10})
    consumer.assign([TopicPartition(rep, 0, 0)])
    try:
        yield producer, consumer, req
    finally:
        stop.set()
        t.join()
        consumer.close()
        admin.delete_topics([req, rep])


def round_trips(bootstrap: str, n: int) -> list[float]:
    """``n`` sequential request/echo round trips, in seconds."""
    samples = []
    with _echo(bootstrap) as (producer, consumer, req):
        for i in range(n):
            start = time.perf_counter()
            producer.produce(req, str(i).encode())
            producer.poll(0)
            while True:
                msg = consumer.poll(1.0)
                if msg is not None and not msg.error() and msg.value() == str(i).encode():
                    break
            samples.append(time.perf_counter() - start)
    return samples


def pipelined(bootstrap: str, n: int, in_flight: int) -> float:
    """Echoes per second with ``in_flight`` requests outstanding (``n`` in all)."""
    with _echo(bootstrap) as (producer, consumer, req):
        sent = received = 0
        start = time.perf_counter()
        while received < n:
            while sent < n and sent - received < in_flight:
                producer.produce(req, b"x" * 400)
                sent += 1
            producer.poll(0)
            first = consumer.poll(0.01)
            if first is not None:
                received += sum(1 for m in [first, *consumer.consume(500, 0)] if not m.error())
        return n / (time.perf_counter() - start)
