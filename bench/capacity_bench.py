"""Capacity: guarded actions with their outcomes, end to end, and the CPU each component spends.

Needs the local stack (``lockgate up``, the example policy applied). ``C`` AsyncGuard tasks
each run ``async with guard.action(...)`` (proposal → signed allow → body → outcome
acknowledged by Kafka) until ``N`` actions are done; then the benchmark waits until the
processor's ledger stage has chained every event they caused (action, verdict, outcome:
``lockgate_ledger_events_total``). It prints guarded actions per second and the CPU time of
processor (Faust worker + its ledger stage), broker, sink and load generator per action.
Baseline in the same run: a bare librdkafka echo with the same number of requests in flight,
and the broker's CPU per echo round trip — sequential (each round trip is about four broker
requests: two produces, two fetches, nothing to batch) and pipelined — which is what the
broker charges this machine per request before any Lockgate record exists.

    .venv/bin/python -m bench.capacity_bench [N] [C]
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.kafka_echo import pipelined, round_trips
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


def broker_cpu_rate(home: Path, work: Callable[[], object], idle_per_s: float | None = None) -> float:
    """The broker's CPU seconds while ``work`` ran; with ``idle_per_s``, less its idle rate
    (the stack's consumers poll even with no traffic), else the idle rate per second itself."""
    before, start = cpu_snapshot(home).get("kafka", 0.0), time.perf_counter()
    work()
    spent, elapsed = cpu_snapshot(home).get("kafka", 0.0) - before, time.perf_counter() - start
    if idle_per_s is None:
        return spent / elapsed
    return max(0.0, spent - idle_per_s * elapsed)


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
    # The broker's cost per request, measured now that its JIT is as warm as during the load.
    idle = broker_cpu_rate(s.home, lambda: time.sleep(2.0))
    echo_n = min(n, 1000)
    seq_broker_us = broker_cpu_rate(s.home, lambda: round_trips(s.bootstrap, echo_n), idle) / echo_n * 1e6
    pipe_broker_us = broker_cpu_rate(s.home, lambda: pipelined(s.bootstrap, n, concurrency), idle) / n * 1e6
    print(f"broker idle (the stack's consumers polling): {idle * 1e6 / 1000:,.0f} ms CPU per s, "
          f"subtracted from the echo figures")
    print(f"guarded actions with outcomes, n={n}, {concurrency} in flight, {workers} processor worker(s)")
    print(f"  bare Kafka echo (baseline)       {echo_rate:9,.0f} round trips/s; broker CPU per round trip: "
          f"{seq_broker_us:,.0f} µs sequential ({echo_n}), {pipe_broker_us:,.0f} µs pipelined")
    print(f"  guarded actions, end to end      {n / elapsed:9,.0f} actions/s  ({elapsed:.1f} s; "
          f"ledger caught up {drained:.1f} s later)")
    print(f"CPU per guarded action (incl. {n + 50} actions' outcome and ledger events):")
    print(cpu_table(before, after, n + 50))


if __name__ == "__main__":
    main()
