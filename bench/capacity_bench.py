"""Capacity: guarded actions with their outcomes, end to end, and the CPU each component spends.

Needs the local stack (``lockgate up``, the example policy applied). ``C`` AsyncGuard tasks
each run ``async with guard.action(...)`` (proposal → signed allow → body → outcome
acknowledged by Kafka) until ``N`` actions are done; then the benchmark waits until the
processor's ledger stage has chained every event they caused (action, verdict, outcome:
``lockgate_ledger_events_total``). It prints guarded actions per second and the CPU time of
processor (Faust worker + its ledger stage), broker, sink and load generator per action.
Baseline in the same run: a bare librdkafka echo with the same number of requests in flight.

    .venv/bin/python -m bench.capacity_bench [N] [C]
"""

from __future__ import annotations

import asyncio
import sys
import time

from bench.kafka_echo import pipelined
from bench.stack_cpu import cpu_snapshot, cpu_table, processor_ports, workers_metric
from deploy.settings import StackSettings
from producers import AsyncGuard, GuardSettings

EVENTS_PER_ACTION = 3  # action, verdict, outcome


async def guarded_load(settings: GuardSettings, n: int, concurrency: int) -> float:
    """Run ``n`` guarded actions with ``concurrency`` in flight; returns the elapsed seconds."""
    left = n

    async with AsyncGuard(settings) as guard:
        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with guard.action(actor="bench", roles=["dba"], type="db.query", resource="db/prod/orders",
                                        attributes={"sql": "UPDATE orders SET status = 'paid' WHERE id = 7"}) as act:
                    act.record_change(before={"status": "open"}, after={"status": "paid"})

        left = 50
        await asyncio.gather(*[worker() for _ in range(4)])  # warm up: connections, policy cache
        left = n
        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        return time.perf_counter() - start


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    s = StackSettings()
    settings = GuardSettings(bootstrap_servers=s.bootstrap, topic_prefix=s.topic_prefix, home=s.home,
                             timeout_s=10)
    echo_rate = pipelined(s.bootstrap, n, concurrency)
    chained = workers_metric(s.home, s.processor_port, "lockgate_ledger_events_total")
    before = cpu_snapshot(s.home)
    elapsed = asyncio.run(guarded_load(settings, n, concurrency))
    target = chained + (n + 50) * EVENTS_PER_ACTION
    drain_started = time.perf_counter()
    while workers_metric(s.home, s.processor_port, "lockgate_ledger_events_total") < target:
        if time.perf_counter() - drain_started > 120:
            print("ledger did not chain every event within 120 s")
            break
        time.sleep(0.1)
    drained = time.perf_counter() - drain_started
    after = cpu_snapshot(s.home)
    workers = len(processor_ports(s.home, s.processor_port))
    print(f"guarded actions with outcomes, n={n}, {concurrency} in flight, {workers} processor worker(s)")
    print(f"  bare Kafka echo (baseline)       {echo_rate:9,.0f} round trips/s")
    print(f"  guarded actions, end to end      {n / elapsed:9,.0f} actions/s  ({elapsed:.1f} s; "
          f"ledger caught up {drained:.1f} s later)")
    print(f"CPU per guarded action (incl. {n + 50} actions' outcome and ledger events):")
    print(cpu_table(before, after, n + 50))


if __name__ == "__main__":
    main()
