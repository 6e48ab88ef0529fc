"""``ClickHouseSource.verdict_events``: action ids go to ClickHouse as a bound array parameter,
at most :data:`sinks.ledger_source.ID_BATCH` per query, never in the SQL text.

The real engine runs the same query in tests/integration/test_verify_since_cli.py; here a
recording client shows how many queries a long id list becomes and what each one binds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinks.ledger_source import ID_BATCH, ClickHouseSource


class RecordingClient:
    """Answers every query with no rows and keeps what it was asked."""

    database = "lockgate"

    def __init__(self) -> None:
        self.queries: list[tuple[str, dict[str, Any]]] = []

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        self.queries.append((sql, dict(parameters or {})))
        return [], []


def test_ids_are_bound_in_batches_and_never_spliced_into_the_sql() -> None:
    client = RecordingClient()
    ids = [f"a-{i:05d}' OR 1 = 1 --" for i in range(2 * ID_BATCH + 7)]
    assert ClickHouseSource(client).verdict_events(ids) == []  # type: ignore[arg-type]
    assert [len(params["ids"]) for _, params in client.queries] == [ID_BATCH, ID_BATCH, 7]
    assert [i for _, params in client.queries for i in params["ids"]] == ids
    sqls = {sql for sql, _ in client.queries}
    assert len(sqls) == 1
    (sql,) = sqls
    assert "{ids:Array(String)}" in sql and "kind = 'verdict'" in sql and "OR 1 = 1" not in sql


def test_no_ids_no_query() -> None:
    client = RecordingClient()
    assert ClickHouseSource(client).verdict_events([]) == []  # type: ignore[arg-type]
    assert client.queries == []
