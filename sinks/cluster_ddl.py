"""The production (cluster) DDL, generated from the migrations: one source for both.

``deploy/clickhouse/cluster.sql`` is this module's output (``python -m sinks.cluster_ddl >
deploy/clickhouse/cluster.sql``); a test regenerates it and compares the whole text, views
and projections included, so the cluster schema cannot drift from what the embedded sink
runs. The transformation, statement by statement:

* ``CREATE TABLE {db}.T (...) ENGINE = XMergeTree`` becomes ``{db}.T_local ON CLUSTER``
  with ``ReplicatedXMergeTree('/clickhouse/tables/{shard}/<db>/T', '{replica}')`` (the
  ``non_replicated_*`` settings are dropped: replicated tables deduplicate by block), plus
  a ``Distributed`` table named ``T`` sharded by :data:`SHARDING` — so queries and the
  writer use the same names on a cluster as on the embedded engine.
* ``CREATE MATERIALIZED VIEW ... TO {db}.S AS SELECT ... FROM {db}.T`` runs on each shard
  over ``T_local`` and writes through the Distributed ``S``.
* ``DROP VIEW IF EXISTS {db}.V`` (a view being redefined) drops it ``ON CLUSTER``.
* ``ALTER TABLE {db}.T ADD COLUMN ...`` alters ``T_local`` and then the Distributed ``T``,
  both ``ON CLUSTER``.

Sharding: ledger tables by ``ledger_partition`` (a chain stays on one shard), the action
summary by ``cityHash64(action_id)`` (all partial rows of an action fold on one shard).
"""

from __future__ import annotations

import re
import sys

from sinks.migrations import SCHEMA_MIGRATIONS_DDL, load_migrations

__all__ = ["SHARDING", "cluster_ddl"]

SHARDING: dict[str, str] = {
    "schema_migrations": "version",
    "audit_events": "ledger_partition",
    "checkpoints": "ledger_partition",
    "action_summary": "cityHash64(action_id)",
}

_HEADER = """\
-- Lockgate audit tables on a ClickHouse cluster. GENERATED from sinks/migrations/*.sql by
--   python -m sinks.cluster_ddl > deploy/clickhouse/cluster.sql
-- (do not edit by hand; tests/unit/sinks/test_cluster_ddl.py fails when this file drifts).
-- Storage is Replicated*MergeTree per shard; reads and writes go through Distributed tables
-- named like the embedded ones, so the query layer and the writer work unchanged.
--
-- Macros expected in each server's config: {cluster}, {shard}, {replica}.
-- Apply with: clickhouse-client --multiquery < deploy/clickhouse/cluster.sql
"""

_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS \{db\}\.(\w+)\s*\n?\(", re.M)
_ENGINE = re.compile(r"^ENGINE = (\w*)MergeTree\s*$", re.M)
_VIEW = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS \{db\}\.(\w+) TO \{db\}\.(\w+) AS", re.M)
_FROM = re.compile(r"^FROM \{db\}\.(\w+)", re.M)
_DROP_VIEW = re.compile(r"^DROP VIEW IF EXISTS \{db\}\.(\w+)\s*\Z", re.M)
_ALTER = re.compile(r"^ALTER TABLE \{db\}\.(\w+)\s*\n\s*(ADD COLUMN .*)\Z", re.M | re.S)


def _drop_non_replicated_settings(stmt: str) -> str:
    head, sep, settings = stmt.partition("\nSETTINGS ")
    if not sep:
        return stmt
    kept = [s.strip() for s in settings.split(",") if not s.strip().startswith("non_replicated_")]
    return head + ("\nSETTINGS " + ",\n         ".join(kept) if kept else "")


def _table(stmt: str, db: str) -> list[str]:
    name = _TABLE.search(stmt)
    if name is None:
        raise ValueError(f"not a CREATE TABLE statement: {stmt[:80]!r}")
    table = name.group(1)
    if table not in SHARDING:
        raise ValueError(f"table {table} has no sharding key in sinks.cluster_ddl.SHARDING; add one")
    local = _TABLE.sub(f"CREATE TABLE IF NOT EXISTS {{db}}.{table}_local ON CLUSTER '{{cluster}}'\n(", stmt, 1)
    local = _ENGINE.sub(
        lambda m: f"ENGINE = Replicated{m.group(1)}MergeTree('/clickhouse/tables/{{shard}}/{db}/{table}', "
                  "'{replica}')", local, 1)
    local = _drop_non_replicated_settings(local)
    dist = (f"CREATE TABLE IF NOT EXISTS {{db}}.{table} ON CLUSTER '{{cluster}}'\n"
            f"AS {{db}}.{table}_local\n"
            f"ENGINE = Distributed('{{cluster}}', {db}, {table}_local, {SHARDING[table]})")
    return [local, dist]


def _view(stmt: str) -> str:
    out = _VIEW.sub(lambda m: f"CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.{m.group(1)} ON CLUSTER "
                              f"'{{cluster}}'\nTO {{db}}.{m.group(2)} AS", stmt, 1)
    return _FROM.sub(lambda m: f"FROM {{db}}.{m.group(1)}_local", out, 1)


def cluster_ddl(db: str = "lockgate") -> str:
    """The whole cluster DDL for database ``db`` as one ``--multiquery`` script."""
    statements = ["CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER '{cluster}'"]
    for stmt in (SCHEMA_MIGRATIONS_DDL, *(s for mig in load_migrations() for s in mig.statements)):
        if _TABLE.search(stmt):
            statements.extend(_table(stmt, db))
        elif _VIEW.search(stmt):
            statements.append(_view(stmt))
        elif (drop := _DROP_VIEW.search(stmt)) is not None:
            statements.append(f"DROP VIEW IF EXISTS {{db}}.{drop.group(1)} ON CLUSTER '{{cluster}}'")
        elif (alter := _ALTER.search(stmt)) is not None:
            table, change = alter.groups()
            statements += [f"{stmt[: alter.start()] if t.endswith('_local') else ''}ALTER TABLE {{db}}.{t} "
                           f"ON CLUSTER '{{cluster}}'\n    {change}" for t in (f"{table}_local", table)]
        else:
            raise ValueError(f"no cluster form for statement: {stmt[:80]!r}")
    return _HEADER + "\n" + "".join(f"{s.replace('{db}', db)};\n\n" for s in statements).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(cluster_ddl())
