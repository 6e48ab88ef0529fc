"""Cost of proving what people read, next to the chain check of the same run.

Builds a realistic ledger (the tests' builder: Avro-encoded proposals, signed verdicts,
committed outcomes over a few partitions), writes it through the sink's own writer into an
embedded ClickHouse (so the materialized view fills ``action_summary``), then times, best
of a few rounds:

* reading: the ledger rows alone (what ``verify`` read before) vs the ledger rows with
  their derived columns plus the folded summary (what it reads now);
* checking: ``verify_chain`` (the baseline: group, sort, canonicalize, hash, link) vs
  ``check_views`` (decode every payload, derive every column, compare; fold and compare
  the summary).

Run: ``.venv/bin/python -m bench.view_check_bench [events]`` from the repository root.
Not part of the test suite.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from sinks.clickhouse import connect
from sinks.ledger_source import ClickHouseSource
from sinks.migrations import migrate
from sinks.view_check import check_views
from sinks.writer import BatchWriter
from tests.factories.ledger import LedgerBuilder
from trust.keys import SigningKey
from trust.verify import verify_chain

PARTITIONS = 4
ROUNDS = 3


def _best(fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    ledger = LedgerBuilder(SigningKey.generate())
    i = 0
    while len(ledger.events) < n:
        ledger.flow(partition=i % PARTITIONS)
        i += 1
    events = ledger.events[:n]
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

        read_plain, plain = _best(source.events)
        read_views, (with_cols, summary) = _best(
            lambda: (source.events(columns=True), source.summary_rows()))
        chain_s, (findings, _) = _best(lambda: verify_chain(plain))
        views_s, report = _best(lambda: check_views(with_cols, summary))
        client.close()
    if findings or report.findings:
        raise SystemExit(f"bench store did not verify: {(findings or report.findings)[0]}")

    print(f"events: {n:,} over {PARTITIONS} partitions ({len(summary):,} summary rows); "
          f"loaded through the sink's writer in {load_s:.1f} s; best of {ROUNDS}")
    print(f"read  ledger rows (baseline)              {read_plain:6.2f} s  {n / read_plain:>9,.0f} rows/s")
    print(f"read  + derived columns + summary fold    {read_views:6.2f} s  {n / read_views:>9,.0f} rows/s "
          f"({read_views / read_plain:.1f}x)")
    print(f"check verify_chain (baseline)             {chain_s:6.2f} s  {n / chain_s:>9,.0f} events/s")
    print(f"check check_views (31 columns + summary)  {views_s:6.2f} s  {n / views_s:>9,.0f} events/s "
          f"({views_s / chain_s:.1f}x)")
    print(f"verify total before/after (read + chain [+ views]): {read_plain + chain_s:.2f} s -> "
          f"{read_views + chain_s + views_s:.2f} s")


if __name__ == "__main__":
    main()
