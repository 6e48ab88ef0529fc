"""Decision-path latency: Guard.check round trips vs a bare Kafka echo, same broker, same run.

Needs the local stack (``lockgate up``; the example policy applied). Prints p50/p95/p99
of sequential round trips and the throughput of concurrent requests. With
``--background RATE``, a separate process keeps RATE guarded actions per second (each with
its outcome) flowing through the stack while both the echo and ``Guard.check`` are
measured, so the baseline carries the same load.

    .venv/bin/python -m bench.verdict_bench [N] [--background RATE]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import threading
import time

from bench.kafka_echo import round_trips
from deploy.settings import StackSettings
from producers import Action, Actor, AsyncGuard, Guard, GuardError, GuardSettings


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def background(settings: GuardSettings, rate: float, stop: multiprocessing.synchronize.Event,
               counts: multiprocessing.sharedctypes.Synchronized[int]) -> None:
    """Open loop: a guarded action with its outcome every 1/rate s until ``stop``."""
    async def run() -> None:
        async with AsyncGuard(settings) as guard:
            async def one() -> None:
                try:
                    async with guard.action(actor="bg", roles=["dba"], type="db.query", resource="db/prod/orders",
                                            attributes={"sql": "UPDATE orders SET status = 'paid' WHERE id = 7"}):
                        pass
                except GuardError:  # over capacity: counted as not done
                    return
                with counts.get_lock():
                    counts.value += 1

            tasks: set[asyncio.Future[None]] = set()
            start, i = time.perf_counter(), 0
            while not stop.is_set():
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.ensure_future(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, nargs="?", default=300)
    parser.add_argument("--background", type=float, default=0.0, help="guarded actions/s kept flowing meanwhile")
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds the sequential checks may take in all (default 120): past capacity, "
                             "checks time out and the run reports what it measured instead of hanging")
    args = parser.parse_args()
    n = args.n
    s = StackSettings()
    settings = GuardSettings(bootstrap_servers=s.bootstrap, topic_prefix=s.topic_prefix, home=s.home,
                             timeout_s=10)
    stop = multiprocessing.Event()
    counts = multiprocessing.Value("q", 0)
    bg = None
    if args.background:
        bg = multiprocessing.Process(target=background, args=(settings, args.background, stop, counts))
        bg.start()
        time.sleep(3.0)  # let it reach its rate
    bg_start, bg_t0 = counts.value, time.perf_counter()
    echo = round_trips(s.bootstrap, n)
    action = Action(Actor("bench", ("dba",)), "db.query", "db/prod/orders",
                    {"sql": "UPDATE orders SET status = 'paid' WHERE id = 7"})
    with Guard(settings) as guard:
        for _ in range(20):
            try:
                guard.check(action)
            except GuardError:
                pass  # counted below, where it is measured
        samples: list[float] = []
        failed = 0
        budget = time.perf_counter() + args.budget
        while len(samples) + failed < n and time.perf_counter() < budget:
            start = time.perf_counter()
            try:
                guard.check(action)
            except GuardError:  # past capacity: the check timed out or was refused
                failed += 1
                continue
            samples.append(time.perf_counter() - start)
        bg_rate = (counts.value - bg_start) / (time.perf_counter() - bg_t0)
        stop.set()
        if bg is not None:
            bg.join(30)
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
    load = (f", background {bg_rate:,.0f} of {args.background:,.0f} guarded actions/s with outcomes"
            if args.background else "")
    print(f"round trips, sequential, n={len(samples)}{load} (ms)   p50     p95     p99    mean")
    if failed or len(samples) < n:
        print(f"  ({failed} checks failed (timeout/refused), {n - len(samples) - failed} not run within "
              f"--budget {args.budget:.0f} s: the stack is past its capacity at this background)")
    if not samples:
        return
    for name, xs in (("bare Kafka echo (baseline)", echo), ("Guard.check (sign+policy+verify)", samples)):
        print(f"  {name:<34} {pct(xs, .5):7.2f} {pct(xs, .95):7.2f} {pct(xs, .99):7.2f} "
              f"{statistics.mean(xs) * 1000:7.2f}")
    print(f"concurrent (no background): {threads} threads x {per} checks: {done / elapsed:,.0f} verdicts/s")


if __name__ == "__main__":
    main()
