"""Decision-path latency: Guard.check round trips vs a bare Kafka echo, same broker, same run.

Needs the local stack (``lockgate up``; the example policy applied). Prints p50/p95/p99
of sequential round trips and the throughput of concurrent requests.

    .venv/bin/python bench/verdict_bench.py [N]
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from deploy.settings import StackSettings
from producers import Action, Actor, Guard, GuardSettings


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def bare_echo(bootstrap: str, n: int) -> list[float]:
    """Request on topic A, an echo thread answers on topic B: Kafka's own round-trip floor."""
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
            msg = c.poll(0.05)
            if msg is not None and not msg.error():
                p.produce(rep, msg.value())
                p.poll(0)
        p.flush(5)
        c.close()

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"req-{run}", "fetch.wait.max.ms": 10})
    consumer.assign([TopicPartition(rep, 0, 0)])
    samples = []
    for i in range(n):
        start = time.perf_counter()
        producer.produce(req, str(i).encode())
        producer.poll(0)
        while True:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error() and msg.value() == str(i).encode():
                break
        samples.append(time.perf_counter() - start)
    stop.set()
    t.join()
    consumer.close()
    admin.delete_topics([req, rep])
    return samples


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    s = StackSettings()
    echo = bare_echo(s.bootstrap, n)
    settings = GuardSettings(bootstrap_servers=s.bootstrap, topic_prefix=s.topic_prefix, home=s.home,
                             timeout_s=10)
    action = Action(Actor("bench", ("dba",)), "db.query", "db/prod/orders",
                    {"sql": "UPDATE orders SET status = 'paid' WHERE id = 7"})
    with Guard(settings) as guard:
        for _ in range(20):
            guard.check(action)
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            guard.check(action)
            samples.append(time.perf_counter() - start)
        threads, per = 16, max(10, n // 8)
        done = 0
        lock = threading.Lock()

        def worker() -> None:
            nonlocal done
            for _ in range(per):
                guard.check(action)
                with lock:
                    done += 1

        start = time.perf_counter()
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - start
    print(f"round trips, sequential, n={n} (ms)        p50     p95     p99    mean")
    for name, xs in (("bare Kafka echo (baseline)", echo), ("Guard.check (sign+policy+verify)", samples)):
        print(f"  {name:<34} {pct(xs, .5):7.2f} {pct(xs, .95):7.2f} {pct(xs, .99):7.2f} "
              f"{statistics.mean(xs) * 1000:7.2f}")
    print(f"concurrent: {threads} threads x {per} checks: {done / elapsed:,.0f} verdicts/s")


if __name__ == "__main__":
    main()
