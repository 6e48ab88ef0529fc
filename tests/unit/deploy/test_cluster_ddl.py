"""The production (cluster) DDL must not drift from the migrations the sink runs.

``deploy/clickhouse/cluster.sql`` is written by hand (Replicated engines, ON CLUSTER,
Distributed tables); the column list of every table must stay exactly the migrations'.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COLUMN = re.compile(r"^\s+([a-z_][a-z0-9_]*)\s+(\S.*?),?\s*$")
NOT_COLUMNS = ("INDEX", "PROJECTION", "SELECT", "ORDER", "PARTITION", "TTL", "SETTINGS", "ENGINE")


def columns(sql: str, table: str) -> list[str]:
    match = re.search(rf"CREATE TABLE IF NOT EXISTS \S*\b{table}\b[^\n]*\n\((.*?)\n\)", sql, re.S)
    assert match, f"no CREATE TABLE for {table}"
    out = []
    for line in match.group(1).splitlines():
        col = COLUMN.match(line)
        if col and not line.strip().upper().startswith(NOT_COLUMNS):
            out.append(f"{col.group(1)} {col.group(2).rstrip(',')}")
    return out


@pytest.mark.parametrize(("table", "migration"), [
    ("audit_events", "001_audit_events.sql"),
    ("checkpoints", "002_checkpoints.sql"),
    ("action_summary", "003_action_summary.sql"),
])
def test_cluster_tables_have_the_migrations_columns(table: str, migration: str) -> None:
    cluster = (ROOT / "deploy" / "clickhouse" / "cluster.sql").read_text()
    local = (ROOT / "sinks" / "migrations" / migration).read_text()
    expected = columns(local, table)
    assert expected, f"no columns parsed from {migration}"
    assert columns(cluster, f"{table}_local") == expected
