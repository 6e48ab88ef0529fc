"""The one door to ClickHouse: a small interface and a client factory chosen by DSN scheme.

Why an interface: the writer, migrations and query layer need only four operations
(``command``, ``query``, ``insert``, ``close``). Keeping them behind :class:`ClickHouse`
lets unit tests use a twin, while integration tests run the real engine.

DSNs (same code path for both):

* ``chdb:///abs/dir`` — the embedded engine (chDB, ClickHouse 26.x in-process). One process
  owns a data directory, and chDB allows only one data directory per process.
* ``http(s)://user:password@host:8123`` — a ClickHouse server or cluster.

Every statement runs in ``database``; :func:`connect` creates it if missing. Errors from
clickhouse-connect/chDB are converted to :class:`~sinks.errors.SinkError` here. The client
serialises calls with a lock: clickhouse-connect clients are not safe for concurrent
queries, and the sink's HTTP API threads share one client with the writer.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.errors import InsertFailed, SinkError

__all__ = ["ClickHouse", "ConnectClient", "connect", "validate_identifier"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def validate_identifier(name: str) -> str:
    """Return ``name`` if it is a plain ClickHouse identifier (database/table), else raise.

    Identifiers cannot be bound as parameters, so the few we splice into SQL are checked.
    """
    if not _IDENT.match(name):
        raise SinkError(
            f"{name!r} is not a valid ClickHouse identifier: use letters, digits and _ "
            "(starting with a letter or _), at most 63 characters"
        )
    return name


class ClickHouse(Protocol):
    """What the sink needs from ClickHouse. ``parameters`` bind ``{name:Type}`` placeholders."""

    database: str

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        """Run a statement that returns no rows (DDL, OPTIMIZE) or a single value."""
        ...

    def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a SELECT; return ``(column names, rows)``."""
        ...

    def insert(
        self,
        table: str,
        rows: Any,
        column_names: Sequence[str],
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert ``rows`` into ``table``; raise :class:`InsertFailed` on failure.

        ``rows`` is a sequence of rows, or a ``pyarrow.Table`` whose column names are
        ``column_names`` (inserted column-oriented in Arrow format: the fast path for batches).
        """
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class ConnectClient:
    """:class:`ClickHouse` over clickhouse-connect (chDB or HTTP)."""

    def __init__(self, client: Any, database: str, dsn_for_errors: str) -> None:
        self._client = client
        self.database = database
        self._where = dsn_for_errors
        self._lock = threading.Lock()

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        with self._lock:
            try:
                return self._client.command(sql, parameters=dict(parameters or {}))
            except (ClickHouseError, RuntimeError) as exc:
                raise SinkError(f"ClickHouse at {self._where} rejected a statement: {exc}") from exc

    def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self._lock:
            try:
                result = self._client.query(sql, parameters=dict(parameters or {}))
            except (ClickHouseError, RuntimeError) as exc:
                raise SinkError(f"ClickHouse at {self._where} rejected a query: {exc}") from exc
            return list(result.column_names), [tuple(r) for r in result.result_rows]

    def insert(
        self,
        table: str,
        rows: Any,
        column_names: Sequence[str],
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        arrow = isinstance(rows, pa.Table)
        if arrow and list(rows.column_names) != list(column_names):
            raise SinkError(
                f"Arrow columns {rows.column_names} do not match the insert's columns "
                f"{list(column_names)}; build the table with the same column order"
            )
        with self._lock:
            try:
                if arrow:
                    self._client.insert_arrow(table, rows, settings=dict(settings or {}))
                else:
                    self._client.insert(
                        table,
                        rows,
                        column_names=list(column_names),
                        settings=dict(settings or {}),
                    )
            except (ClickHouseError, RuntimeError, OSError, pa.ArrowException) as exc:
                raise InsertFailed(
                    f"insert of {len(rows)} rows into {table} at {self._where} failed: {exc}; "
                    "the batch is kept and will be retried with the same deduplication token"
                ) from exc

    def close(self) -> None:
        with self._lock:
            self._client.close()


def _redact(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return dsn


def connect(dsn: str, database: str = "lockgate") -> ConnectClient:
    """Open ClickHouse at ``dsn``, create ``database`` if needed, and return a client bound to it.

    Raises :class:`SinkError` for an unknown scheme, a relative chDB path, or an engine that
    cannot be opened (e.g. another process owns the chDB directory).
    """
    validate_identifier(database)
    parts = urlsplit(dsn)
    where = _redact(dsn)
    if parts.scheme == "chdb":
        path = parts.path
        if not path.startswith("/") or parts.netloc:
            raise SinkError(
                f"chDB DSN {dsn!r} must name an absolute directory: chdb:///abs/dir"
            )
        kwargs: dict[str, Any] = {"dsn": f"chdb://{path}"}
    elif parts.scheme in ("http", "https"):
        kwargs = {"dsn": dsn, "autogenerate_session_id": False}
    else:
        raise SinkError(
            f"unsupported ClickHouse DSN scheme {parts.scheme!r} in {where}: "
            "use chdb:///abs/dir (embedded) or http(s)://host:8123"
        )
    try:
        bootstrap = clickhouse_connect.get_client(**kwargs)
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        if parts.scheme != "chdb":
            # chDB shares one engine per process: closing a client there may close it for all.
            bootstrap.close()
        client = clickhouse_connect.get_client(**kwargs, database=database)
    except (ClickHouseError, RuntimeError, OSError) as exc:
        raise SinkError(f"cannot open ClickHouse at {where}: {exc}") from exc
    return ConnectClient(client, database, where)
