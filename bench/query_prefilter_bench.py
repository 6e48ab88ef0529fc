"""A/B of the action-query pre-filters on a data directory that sink_bench.py filled.

    .venv/bin/python bench/sink_bench.py --rows 10000000 --dir /tmp/bench10m
    .venv/bin/python bench/query_prefilter_bench.py /tmp/bench10m

Runs each common query with and without :meth:`AuditQueries._prefilters` over the same
rows, median of 5, and prints both (the baseline is the query without pre-filters).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from sinks.clickhouse import connect
from sinks.query import AuditQueries, parse_action_filter


def main() -> None:
    directory = sys.argv[1]
    probe = connect(f"chdb://{directory}", "default")
    db = next(r[0] for r in probe.query("SELECT name FROM system.databases WHERE name LIKE 'bench_%'")[1])
    client = connect(f"chdb://{directory}", db)
    queries = AuditQueries(client)
    _, rows = client.query(f"SELECT tenant, actor_id, resource FROM {db}.audit_events WHERE kind = 'action' LIMIT 1")
    tenant, actor, resource = rows[0]
    cases: dict[str, dict[str, str]] = {
        "tenant + actor, 7d": {"actor": actor, "since": "7d"},
        "tenant + resource prefix + block, 24h": {"resource": resource.rsplit("/", 1)[0] + "/",
                                                  "decision": "block", "since": "24h"},
        "tenant, 1h, newest 50": {"since": "1h"},
    }
    real = AuditQueries._prefilters

    def none(_self: AuditQueries, _f: Any, _p: dict[str, Any]) -> list[str]:
        return []

    for label, params in cases.items():
        out = []
        for name, impl in (("without pre-filter (baseline)", none), ("with pre-filter", real)):
            AuditQueries._prefilters = impl  # type: ignore[method-assign,assignment]
            f = parse_action_filter(params, tenant)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                page = queries.actions(f)
                times.append(time.perf_counter() - start)
            out.append(f"{name}: {statistics.median(times) * 1000:.0f} ms ({len(page.rows)} rows)")
        print(f"{label:<40} " + "   ".join(out))


if __name__ == "__main__":
    main()
