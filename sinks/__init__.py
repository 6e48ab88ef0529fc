"""The sink: audit events into ClickHouse, and everything that reads them back.

Modules:

    service        the sink process: consume, batch, insert, commit (``python -m sinks``)
    writer, rows   idempotent batches; AuditEvent/Checkpoint to table rows
    clickhouse     the client edge (``chdb://`` embedded or ``http(s)://`` server)
    migrations     versioned DDL; cluster_ddl generates the production DDL from it
    query          the audit queries (parameterized only)
    ledger_rows    the one ledger SELECT and row converter (store source and API)
    ledger_source  the LedgerSource implementations: store, API, replay topics
    api, tokens    the read-only HTTP API, dashboard and tenant-scoped bearer tokens
    errors         SinkError and its tree
"""

__all__ = [
    "api",
    "clickhouse",
    "cluster_ddl",
    "errors",
    "ledger_rows",
    "ledger_source",
    "migrations",
    "query",
    "rows",
    "service",
    "tokens",
    "writer",
]
