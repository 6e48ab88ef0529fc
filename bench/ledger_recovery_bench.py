"""How long the ledger stage takes to recover a partition of N events: from the newest
checkpoint's frontier vs the full rebuild (the baseline, measured in the same run).

Builds one audit partition of N chained events the way the stage writes them (transactions
of ``--batch`` events, so commit markers take offsets between them), checkpoints it at
size N - ``--suffix`` with the frontier header, chains ``--suffix`` more events after it
(a crashed owner's last writes), then runs the stage's own recovery code paths against the
real broker with a fresh writer each time:

* full rebuild: read every committed record of the partition, rebuild the log from all hashes;
* frontier: find the newest checkpoint, prove its frontier (signature, size, root), read
  the partition backwards to the checkpoint's last event and the dedup window.

Both end in the same log (size, root, head), which is checked. The group join and the
consumer's offset fetch are the same for both and not included.

    .venv/bin/python bench/ledger_recovery_bench.py [--events 100000] [--window 20000] [--bootstrap HOST:PORT]

Without ``--bootstrap`` it starts a one-node broker of its own (``lockgate up``'s) in a
temporary home and stops it afterwards. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Producer

from deploy.processes import free_port
from deploy.settings import StackSettings
from deploy.stack import Stack
from lockgate.kernel.partition_reader import committed_reader
from lockgate.kernel.topic_admin import ensure_topics
from processors.ledger_stage import LOG_FRONTIER_HEADER, LedgerStage
from processors.ledger_writer import LedgerWriter
from schemas.codec import get_codec
from schemas.records import AuditKind, audit_event, event_id_for
from schemas.topics import Topics
from trust.keys import SigningKey


@contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    home = Path(tempfile.mkdtemp(prefix="lockgate-bench-"))
    stack = Stack(StackSettings(home=home, kafka_port=free_port(), controller_port=free_port(),
                                api_port=free_port(), processor_port=free_port(), topic_prefix="bench.",
                                start_processor=False, start_sink=False))
    stack.up()
    try:
        yield stack.settings.bootstrap
    finally:
        stack.down()


def writer(key: SigningKey, window: int) -> LedgerWriter:
    # checkpoint_every as shipped: it sizes the recovery's first read; nothing falls due here.
    return LedgerWriter(key, "bench", checkpoint_every=1000, checkpoint_interval_s=3600.0, dedup_window=window)


def build(bootstrap: str, topics: Topics, key: SigningKey, n: int, suffix: int, batch: int, window: int) -> None:
    """Chain ``n`` events onto audit[0] in transactions of ``batch``; checkpoint at ``n - suffix``."""
    codec = get_codec()
    w = writer(key, window)
    w.recover(0, [], None)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"bench-{uuid.uuid4().hex[:8]}",
                         "enable.idempotence": True, "acks": "all", "linger.ms": 20})
    producer.init_transactions(30)
    at = n - suffix
    i = 0
    while i < n:
        producer.begin_transaction()
        for j in range(i, min(n, i + batch, at if i < at else n)):
            ev = audit_event(AuditKind.ACTION, "acme", f"a{j}", b"payload %d" % j, now_us=1_000 + j,
                             event_id=event_id_for(AuditKind.ACTION, topics.actions, 0, j))
            chained = w.append(0, ev, 0.0)
            assert chained is not None
            producer.produce(topics.audit, codec.encode("AuditEvent", chained), partition=0)
            producer.poll(0)
            i = j + 1
        if i == at:
            (cp,) = w.due_checkpoints(now=float("inf"), now_us=time.time_ns() // 1000)
            producer.produce(topics.checkpoints, codec.encode("Checkpoint", cp), key=b"0", partition=0,
                             headers=[(LOG_FRONTIER_HEADER, w.partition_log(0).frontier().to_bytes())])
        producer.commit_transaction(60)
        if i % 20_000 < batch or i == n:
            print(f"  built {i:,}/{n:,} events", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--suffix", type=int, default=500, help="events chained after the newest checkpoint")
    ap.add_argument("--window", type=int, default=20_000, help="LOCKGATE_LEDGER_DEDUP_WINDOW (default as shipped)")
    ap.add_argument("--batch", type=int, default=2000, help="events per transaction (the stage's batch)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bootstrap", default=None)
    args = ap.parse_args()
    key = SigningKey.generate()
    with broker(args.bootstrap) as bootstrap:
        topics = Topics(f"bench{uuid.uuid4().hex[:8]}.")
        ensure_topics(bootstrap, topics)
        t0 = time.perf_counter()
        build(bootstrap, topics, key, args.events, args.suffix, args.batch, args.window)
        built_s = time.perf_counter() - t0
        stage = LedgerStage(writer(key, args.window), bootstrap=bootstrap, topics=topics, app_id="bench",
                            processor_id="bench", recovery_timeout_s=60.0)
        reader = committed_reader(bootstrap, "bench")
        try:
            def full() -> tuple[Any, int]:
                newest = stage._newest_checkpoint(reader, 0)
                assert newest is not None
                return stage._rebuild(reader, 0, int(newest[0]["last_sequence"]))

            def frontier() -> tuple[Any, int]:
                newest = stage._newest_checkpoint(reader, 0)
                proven = stage._proven_frontier(0, newest)
                assert proven is not None, "the frontier was refused"
                return stage._resume(reader, 0, proven)

            results: dict[str, tuple[float, int, tuple[int, bytes, bytes | None]]] = {}
            for name, run in (("full rebuild (baseline)", full), ("from the frontier", frontier)):
                times: list[float] = []
                read = 0
                for _ in range(args.repeat):
                    stage.writer = writer(key, args.window)
                    t, (state, read) = timed(run)
                    times.append(t)
                    plog = stage.writer.partition_log(0)
                    assert state.next_sequence == args.events and state.uncovered == args.suffix
                results[name] = (statistics.median(times), read, (plog.size, plog.root(), plog.head))
        finally:
            reader.close()
    logs = {r[2] for r in results.values()}
    assert len(logs) == 1, "the two recoveries ended in different logs"
    print(f"audit partition: {args.events:,} events in transactions of {args.batch:,} "
          f"(built in {built_s:.1f} s), checkpoint at {args.events - args.suffix:,}, "
          f"dedup window {args.window:,}; median of {args.repeat}")
    base = results["full rebuild (baseline)"][0]
    for name, (t, read, _) in results.items():
        print(f"  {name:<26} {t:7.2f} s   {read:>9,} records read   {base / t:5.1f}x")


def timed(fn: Callable[[], tuple[Any, int]]) -> tuple[float, tuple[Any, int]]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


if __name__ == "__main__":
    main()
