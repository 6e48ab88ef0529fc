"""Sink throughput and audit-query latency on the embedded engine.

Prints, from one run on one engine:

* events/s through :class:`BatchWriter` configured as the sink runs it (row building +
  insert, 10k-row batches, payload columns derived in ``--derive-workers`` worker processes,
  inserts in the writer's background thread) and the sink's CPU per event (the whole sink:
  Python thread, insert thread, the engine's threads, the derive workers; and the Python
  thread alone), vs a bare clickhouse-connect INSERT of the same pre-built rows into a plain MergeTree copy
  (the baseline: what the engine does with no sink logic, no projections, no MV), plus the
  parts in between: row building alone (payload decode + extraction, the Python floor) and
  the writer's Arrow insert of pre-built rows into the real table;
* latency of the three most common audit queries over ``--rows`` events (default 10M)
  vs a bare SELECT over the raw table.

Usage: ``python bench/sink_bench.py [--rows N] [--dir /abs/chdb/dir] [--derive-workers N]``.
``--rows`` equal to ``--throughput-rows`` (300,000) skips loading more for the query part.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.codec import get_codec
from sinks.clickhouse import ClickHouse, connect
from sinks.migrations import migrate
from sinks.query import AuditQueries, parse_action_filter
from sinks.rows import AUDIT_ARROW_SCHEMA, AUDIT_COLUMNS, audit_event_row, rows_to_arrow
from sinks.writer import BatchWriter, WriterConfig

TOPIC = "bench.audit"


def make_events(n: int, span_us: int) -> list[dict[str, Any]]:
    """``n`` AuditEvents (action/verdict/outcome triples) spread over the last ``span_us``."""
    codec = get_codec()
    rng = random.Random(7)
    now = time.time_ns() // 1000
    actors = [f"user{i}" for i in range(2000)]
    out: list[dict[str, Any]] = []
    seq = 0
    while len(out) < n:
        aid = str(uuid.UUID(int=rng.getrandbits(128)))
        at = now - rng.randrange(span_us)
        tenant = f"tenant{rng.randrange(5)}"
        actor = rng.choice(actors)
        block = rng.random() < 0.2
        action = codec.encode("ProposedAction", {
            "action_id": aid, "correlation_id": aid, "proposed_at": at, "tenant": tenant,
            "service": f"svc{rng.randrange(20)}",
            "actor": {"id": actor, "roles": ["dev"], "attributes": {}},
            "type": rng.choice(["db.query", "deploy", "export"]),
            "resource": f"db/prod/t{rng.randrange(500)}",
            "attributes": {"sql": "DELETE FROM t WHERE id = 1", "rows": 1},
            "change_json": '{"id":1}', "reply_topic": "r", "reply_partition": 0,
            "reply_instance": "g", "service_key_id": "k", "service_signature": b"s" * 64,
        })
        verdict = codec.encode("Verdict", {
            "action_id": aid, "correlation_id": aid, "reply_instance": "g",
            "decided_at": at + 900, "tenant": tenant, "service": "svc",
            "decision": "block" if block else "allow", "basis": "rule" if block else "default",
            "matched_rules": [{"id": f"rule{rng.randrange(30)}", "effect": "block",
                               "mode": "enforce", "message": "", "error": None}] if block else [],
            "policy_name": "prod", "policy_version": 3, "reason": "bench",
            "eval_latency_us": 40, "processor_id": "p", "key_id": "k", "signature": b"s" * 64,
        })
        outcome = codec.encode("ActionOutcome", {
            "outcome_id": aid, "action_id": aid, "correlation_id": aid, "recorded_at": at + 5000,
            "tenant": tenant, "service": "svc", "actor_id": actor, "status": "committed",
            "error_type": None, "error_message": None, "before_json": '{"a":1}',
            "after_json": '{"a":2}', "verdict": None, "service_key_id": "k",
            "service_signature": b"s" * 64,
        })
        for kind, payload, t in (("action", action, at), ("verdict", verdict, at + 900),
                                 ("outcome", outcome, at + 5000)):
            out.append({
                "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "kind": kind,
                "recorded_at": t, "tenant": tenant, "action_id": aid, "payload": payload,
                "detail": None, "ledger_partition": seq % 8, "sequence": seq // 8,
                "prev_hash": b"\0" * 32, "hash": rng.randbytes(32), "canonical_version": 1,
            })
            seq += 1
    return out[:n]


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's live child processes (derive workers)."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        try:  # a thread may end between the listing and the read
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def settle_merges(ch: ClickHouse, limit_s: float = 120.0) -> None:
    """Wait until the engine runs no merge: the merges an insert run causes are part of its
    CPU (counting until then keeps a run's merges out of the next measurement)."""
    deadline = time.monotonic() + limit_s
    while int(ch.command("SELECT count() FROM system.merges")) and time.monotonic() < deadline:
        time.sleep(0.05)


def timed(fn: Any, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--throughput-rows", type=int, default=300_000)
    ap.add_argument("--dir", default="")
    ap.add_argument("--derive-workers", type=int, default=1,
                    help="the sink's LOCKGATE_SINK_DERIVE_WORKERS (default: the sink's, 1)")
    args = ap.parse_args()
    path = args.dir or tempfile.mkdtemp(prefix="lockgate-bench-")
    ch: ClickHouse = connect(f"chdb://{path}", f"bench_{uuid.uuid4().hex[:8]}")
    migrate(ch)
    db = ch.database
    ch.command(f"CREATE TABLE {db}.bare AS {db}.audit_events ENGINE = MergeTree "
               "ORDER BY (tenant, actor_id, recorded_at)")
    ch.command(f"ALTER TABLE {db}.bare DROP PROJECTION p_chain")
    ch.command(f"ALTER TABLE {db}.bare DROP PROJECTION p_resource")
    ch.command(f"ALTER TABLE {db}.bare DROP PROJECTION p_source")

    # -- throughput ------------------------------------------------------------------
    n = args.throughput_rows
    evs = make_events(n, 3600 * 1_000_000)
    # The generated events are scaffolding (a sink holds one batch, not 300k records): keep
    # them out of the cyclic collector's scans so they do not tax whatever runs next.
    gc.collect()
    gc.freeze()
    settle_merges(ch)
    writer = BatchWriter(ch, {TOPIC: "audit"}, WriterConfig(derive_workers=args.derive_workers))
    writer.add(TOPIC, 1, 0, evs[0])  # workers started and warm, as in a running sink
    writer.flush()
    t, cpu, py_cpu, kids = time.perf_counter(), time.process_time(), time.thread_time(), children_cpu()
    for i, ev in enumerate(evs):  # the service's loop: collect landed inserts, never block
        writer.add(TOPIC, 0, i, ev)
        if writer.due():
            writer.flush(wait=False)
    writer.flush()
    sink_s = time.perf_counter() - t
    settle_merges(ch)
    kids_us = (children_cpu() - kids) / n * 1e6
    cpu_us = (time.process_time() - cpu) / n * 1e6 + kids_us
    py_us = (time.thread_time() - py_cpu) / n * 1e6
    writer.close()
    t = time.perf_counter()
    rows = [audit_event_row(ev, (TOPIC, 0, i)) for i, ev in enumerate(evs)]
    rows_s = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    for k in range(0, n, 10_000):
        ch.insert(f"{db}.bare", rows[k:k + 10_000], AUDIT_COLUMNS)
    bare_s = time.perf_counter() - t
    settle_merges(ch)
    bare_cpu_us = (time.process_time() - cpu) / n * 1e6
    ch.command(f"CREATE TABLE {db}.arrow_copy AS {db}.audit_events")  # projections kept, no MV
    t = time.perf_counter()
    for k in range(0, n, 10_000):
        ch.insert(f"{db}.arrow_copy", rows_to_arrow(rows[k:k + 10_000], AUDIT_ARROW_SCHEMA),
                  AUDIT_COLUMNS)
    arrow_s = time.perf_counter() - t
    print(f"throughput over {n:,} events (10k-row batches), load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"  sink writer (rows+insert, projections, MV): {n / sink_s:12,.0f} events/s"
          f"  = {bare_s / sink_s:.2f}x the bare insert")
    print(f"    sink CPU per event: {cpu_us:.1f} us (process + {args.derive_workers} derive "
          f"workers, until its merges ended), {py_us:.1f} us (Python thread), "
          f"{kids_us:.1f} us (derive workers)")
    print(f"  bare clickhouse-connect INSERT (plain MT) : {n / bare_s:12,.0f} events/s"
          f"  ({bare_cpu_us:.1f} us CPU per event, until its merges ended)")
    print(f"  of which: row building alone (decode+map)  : {n / rows_s:12,.0f} events/s")
    print(f"  of which: Arrow insert, projections, no MV : {n / arrow_s:12,.0f} events/s")

    # -- query latency over --rows ------------------------------------------------------
    total = args.rows
    have = n
    chunk = 300_000
    t = time.perf_counter()
    while have < total:
        m = min(chunk, total - have)
        evs = make_events(m, 7 * 86400 * 1_000_000)
        w = BatchWriter(ch, {TOPIC: "audit"})
        for i, ev in enumerate(evs):
            w.add(TOPIC, 1, have + i, ev)
            if w.due():
                w.flush()
        w.flush()
        have += m
        print(f"  loaded {have:,} / {total:,} ({time.perf_counter() - t:.0f}s)", flush=True)
    ch.command(f"OPTIMIZE TABLE {db}.action_summary FINAL")
    q = AuditQueries(ch)
    count = ch.command(f"SELECT count() FROM {db}.audit_events")
    print(f"query latency (median of 5) over {int(count):,} audit events")
    cases = {
        "actions: tenant, last 1h, newest 50": lambda: q.actions(
            parse_action_filter({"since": "1h"}, "tenant1")),
        "actions: tenant+actor, 7d": lambda: q.actions(
            parse_action_filter({"since": "7d", "actor": "user42"}, "tenant1")),
        "actions: tenant, resource prefix, block, 24h": lambda: q.actions(
            parse_action_filter({"since": "24h", "resource": "db/prod/t4",
                                 "decision": "block"}, "tenant1")),
        "stats: tenant, 24h": lambda: q.stats("tenant1", time.time_ns() // 1000 - 86400_000_000,
                                              time.time_ns() // 1000),
    }
    for name, fn in cases.items():
        print(f"  {name:48s} {timed(fn):9.1f} ms")
    bare = {
        "bare SELECT raw: tenant, last 1h, newest 50": (
            f"SELECT * FROM {db}.audit_events WHERE tenant = 'tenant1' AND kind = 'action' "
            "AND recorded_at > now64(6) - INTERVAL 1 HOUR ORDER BY recorded_at DESC LIMIT 50"),
        "bare SELECT raw: tenant+actor, 7d": (
            f"SELECT * FROM {db}.audit_events WHERE tenant = 'tenant1' AND actor_id = 'user42' "
            "AND recorded_at > now64(6) - INTERVAL 7 DAY ORDER BY recorded_at DESC LIMIT 50"),
        "bare SELECT raw: resource prefix, 24h": (
            f"SELECT tenant, resource, recorded_at, action_id FROM {db}.audit_events "
            "WHERE tenant = 'tenant1' AND startsWith(resource, 'db/prod/t4') "
            "AND recorded_at > now64(6) - INTERVAL 1 DAY ORDER BY recorded_at DESC LIMIT 50"),
    }
    for name, sql in bare.items():
        print(f"  {name:48s} {timed(lambda s=sql: ch.query(s)):9.1f} ms")


if __name__ == "__main__":
    main()
