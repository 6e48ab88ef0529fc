"""The cluster DDL is generated from the migrations; the committed file must be exactly that.

Compares the whole statement set — tables, projections, indexes, the materialized view —
not column lists, so nothing in ``deploy/clickhouse/cluster.sql`` can drift silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sinks.cluster_ddl import SHARDING, cluster_ddl
from sinks.migrations import load_migrations

ROOT = Path(__file__).resolve().parents[3]
CLUSTER_SQL = ROOT / "deploy" / "clickhouse" / "cluster.sql"


def test_committed_cluster_ddl_is_the_generated_one() -> None:
    assert CLUSTER_SQL.read_text() == cluster_ddl(), (
        "deploy/clickhouse/cluster.sql drifted from the migrations; regenerate it with "
        "`python -m sinks.cluster_ddl > deploy/clickhouse/cluster.sql`")


def _bodies(sql: str) -> list[str]:
    """Each CREATE TABLE's body (columns, indexes, projections) with names normalised."""
    return [re.sub(r"\s+", " ", m) for m in re.findall(r"^\(\n(.*?)\n\)", sql, re.S | re.M)]


def test_every_table_keeps_the_migrations_body_projections_included() -> None:
    local = "\n".join(s for m in load_migrations() for s in m.statements)
    local_bodies = _bodies(local)
    assert any("PROJECTION p_chain" in b for b in local_bodies)
    cluster_bodies = _bodies(cluster_ddl())
    for body in local_bodies:
        assert body in cluster_bodies


def test_the_view_reads_the_shard_local_table_and_writes_through_the_distributed_one() -> None:
    ddl = cluster_ddl()
    view = ddl[ddl.index("CREATE MATERIALIZED VIEW"):]
    assert "TO lockgate.action_summary AS" in view
    assert "FROM lockgate.audit_events_local" in view
    assert "toUInt8(kind = 'verdict') AS has_verdict" in view


def test_every_table_is_replicated_and_distributed_with_its_sharding_key() -> None:
    ddl = cluster_ddl()
    for table, key in SHARDING.items():
        assert f"CREATE TABLE IF NOT EXISTS lockgate.{table}_local ON CLUSTER '{{cluster}}'" in ddl
        assert f"ENGINE = Distributed('{{cluster}}', lockgate, {table}_local, {key})" in ddl
    assert "ENGINE = MergeTree" not in ddl
    assert "non_replicated_deduplication_window" not in ddl


def test_a_table_without_a_sharding_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(SHARDING, "checkpoints")
    with pytest.raises(ValueError, match="no sharding key"):
        cluster_ddl()
