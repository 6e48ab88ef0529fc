"""Overload: goodput and latency of ``Guard.check`` against offered load, 1x to 4x peak.

Needs the local stack (``lockgate up``, the example policy applied). First the peak: checks
per second with ``C`` AsyncGuard requests in flight (closed loop). Then an open-loop
generator offers 1x, 2x, 3x and 4x that rate for ``D`` seconds each, through one AsyncGuard
with a deadline of ``--deadline`` seconds per request and ``max_in_flight`` = ``--bound``
(``when_full="fail"``): requests over the bound fail at once with ``GuardOverloaded``,
proposals the processor reads after their deadline are answered with a signed block
(basis ``expired``) without evaluation. For each level it prints goodput (answers that were
evaluated, per second), the shed and refused counts, and the latency of answered requests
(p50/p99/max against the deadline). A last row offers 4x with the bound lifted (10,000 in
flight, wait when full) to show what the bound buys. Baseline in the same run: a bare
Kafka echo round trip.

    .venv/bin/python -m bench.overload_bench [--seconds D] [--deadline S] [--bound B] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.kafka_echo import round_trips
from bench.stack_cpu import processor_metric
from deploy.settings import StackSettings
from producers import Action, Actor, AsyncGuard, GuardOverloaded, GuardSettings, VerdictTimeout

ACTION = Action(Actor("bench", ("dba",)), "db.query", "db/prod/orders",
                {"sql": "UPDATE orders SET status = 'paid' WHERE id = 7"})


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@dataclass
class Level:
    offered: float
    seconds: float
    deadline_s: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def goodput(self) -> float:
        return self.counts["answered"] / self.seconds


async def peak(settings: GuardSettings, seconds: float, concurrency: int, rounds: int = 3) -> float:
    """The best of ``rounds`` closed-loop runs (this box is shared: one round can be unlucky)."""
    async with AsyncGuard(settings) as guard:
        for _ in range(20):
            await guard.check(ACTION)
        return max([await _closed_loop(guard, seconds / rounds, concurrency) for _ in range(rounds)])


async def _closed_loop(guard: AsyncGuard, seconds: float, concurrency: int) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            verdict = await guard.check(ACTION)
            done += verdict.basis != "expired"

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return done / (time.perf_counter() - start)


async def offer(settings: GuardSettings, rate: float, seconds: float, port: int) -> Level:
    """Open loop: start a check every 1/rate s for ``seconds``, whatever came back.

    Shed proposals are counted on the processor (``lockgate_decisions_total{basis="expired"}``):
    their signed block arrives after the Guard gave up, by construction.
    """
    level = Level(rate, seconds)
    expired_before = _expired(port)
    async with AsyncGuard(settings) as guard:
        for _ in range(5):  # a service's Guard is long-lived: connections and metadata are warm
            await guard.check(ACTION, timeout_s=10)

        async def one() -> None:
            started = time.perf_counter()
            try:
                verdict = await guard.check(ACTION)
            except GuardOverloaded:
                level.counts["refused (bound)"] += 1
                return
            except VerdictTimeout:
                level.counts["timed out"] += 1
                return
            took = time.perf_counter() - started
            if verdict.basis == "expired":  # only if a verdict beat the Guard's own timeout
                level.counts["expired, in time"] += 1
                return
            level.counts["answered"] += 1
            level.counts["answered late"] += took > settings.timeout_s
            level.latencies.append(took)

        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
        level.seconds = max(seconds, time.perf_counter() - start)
        await asyncio.gather(*tasks)
    await asyncio.sleep(2 * settings.timeout_s)  # the processor sheds what is still queued
    level.counts["shed (expired)"] = int(_expired(port) - expired_before)
    return level


def _expired(port: int) -> float:
    return processor_metric(port, 'lockgate_decisions_total{basis="expired",decision="block"}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--deadline", type=float, default=1.0)
    parser.add_argument("--bound", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    s = StackSettings()
    base = {"bootstrap_servers": s.bootstrap, "topic_prefix": s.topic_prefix, "home": s.home}
    echo = round_trips(s.bootstrap, 200)
    top = asyncio.run(peak(GuardSettings(**base, timeout_s=10), args.seconds, args.concurrency))  # type: ignore[arg-type]
    bounded = GuardSettings(**base, timeout_s=args.deadline, max_in_flight=args.bound,  # type: ignore[arg-type]
                            when_full="fail")
    unbounded = GuardSettings(**base, timeout_s=args.deadline, max_in_flight=10_000,  # type: ignore[arg-type]
                              when_full="wait")
    port = s.processor_port
    rows = [(f"{k}x", asyncio.run(offer(bounded, k * top, args.seconds, port))) for k in (1, 2, 3, 4)]
    rows.append(("4x, no bound", asyncio.run(offer(unbounded, 4 * top, args.seconds, port))))
    print(f"bare Kafka echo (baseline): p50 {pct(echo, .5):.2f} ms, p99 {pct(echo, .99):.2f} ms")
    print(f"peak: {top:,.0f} checks/s ({args.concurrency} in flight, closed loop); deadline {args.deadline:g} s, "
          f"bound {args.bound} in flight (fail when full)")
    print("| offered | offered/s | goodput/s | goodput / peak | refused (bound) | timed out | shed (expired) "
          "| answered late | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, lv in rows:
        c = lv.counts
        print(f"| {name} | {lv.offered:,.0f} | {lv.goodput:,.0f} | {lv.goodput / top:.0%} | {c['refused (bound)']} "
              f"| {c['timed out']} | {c['shed (expired)']} | {c['answered late']} | {pct(lv.latencies, .5):.1f} "
              f"| {pct(lv.latencies, .99):.1f} | {pct(lv.latencies, 1.0):.0f} |")


if __name__ == "__main__":
    main()
