"""Cost of proving what people read, next to the chain check of the same run.

Builds a realistic ledger (the tests' builder: Avro-encoded proposals, signed verdicts,
committed outcomes over a few partitions), writes it through the sink's own writer into an
embedded ClickHouse (so the materialized view fills ``action_summary``), then times, best
of a few rounds:

* reading: the ledger rows alone (what ``verify`` read before) vs the ledger rows with
  their derived columns plus the folded summary (what it reads now);
* checking: ``verify_chain`` (the baseline named by ``bench/verify_bench.py``: group,
  sort, canonicalize, hash, link) and ``verify_ledger`` (what ``verify`` ran before: chain,
  checkpoints, enforcement with verdict signatures) vs ``check_views`` (decode every
  payload, derive every column, compare; fold and compare the summary).

Each step is timed as wall-clock and CPU time (this box is shared: CPU time moves less).

Run: ``.venv/bin/python -m bench.view_check_bench [events]`` from the repository root.
Not part of the test suite.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.timing import best_of
from sinks.clickhouse import connect
from sinks.ledger_source import ClickHouseSource
from sinks.migrations import migrate
from sinks.view_check import check_views
from sinks.writer import BatchWriter
from tests.factories.ledger import LedgerBuilder
from trust.keys import Keyring, SigningKey
from trust.verify import verify_chain, verify_ledger

PARTITIONS = 4
ROUNDS = 3


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    key = SigningKey.generate()
    builder = LedgerBuilder(key)
    i = 0
    while len(builder.events) < n:
        builder.flow(partition=i % PARTITIONS)
        i += 1
    events = builder.events[:n]
    with tempfile.TemporaryDirectory(prefix="lockgate-viewbench-") as tmp:
        client = connect(f"chdb://{tmp}", "bench")
        migrate(client)
        writer = BatchWriter(client, {"audit": "audit"})
        t0 = time.perf_counter()
        for off, ev in enumerate(events):
            writer.add("audit", ev["ledger_partition"], off, ev)
        writer.flush()
        load_s = time.perf_counter() - t0
        source = ClickHouseSource(client)
        rows: list[tuple[str, float, float]] = []

        def step(label: str, fn: Callable[[], Any]) -> Any:
            wall, cpu, result = best_of(fn, ROUNDS)
            rows.append((label, wall, cpu))
            return result

        plain = step("read ledger rows (baseline)", source.events)
        with_cols, summary = step("read + derived columns + summary fold",
                                  lambda: (source.events(columns=True), source.summary_rows()))
        findings, _ = step("verify_chain (baseline)", lambda: verify_chain(plain))
        ledger = step("verify_ledger: chain + enforcement (baseline)",
                      lambda: verify_ledger(plain, [], Keyring([key.public()])))
        report = step("check_views: 31 columns + summary", lambda: check_views(with_cols, summary))
        client.close()
    if findings or ledger or report.findings:
        raise SystemExit(f"bench store did not verify: {(findings or ledger or report.findings)[0]}")

    print(f"events: {n:,} over {PARTITIONS} partitions ({len(summary):,} summary rows); "
          f"loaded through the sink's writer in {load_s:.1f} s; best of {ROUNDS}")
    print(f"{'step':<46} {'wall s':>7} {'cpu s':>7} {'events/s (cpu)':>15}")
    for label, wall, cpu in rows:
        print(f"{label:<46} {wall:7.2f} {cpu:7.2f} {n / cpu:>15,.0f}")
    t = {label.split(" (")[0].split(":")[0]: cpu for label, _, cpu in rows}
    before = t["read ledger rows"] + t["verify_ledger"]
    after = t["read + derived columns + summary fold"] + t["verify_ledger"] + t["check_views"]
    print(f"verify, CPU: read + verify_ledger {before:.2f} s -> read with views + verify_ledger + "
          f"check_views {after:.2f} s ({after / before:.1f}x); check_views alone is "
          f"{t['check_views'] / t['verify_chain']:.1f}x verify_chain")


if __name__ == "__main__":
    main()
