"""Errors of the sink room: landing audit events in ClickHouse and serving queries over them.

::

    LockgateError
    └── SinkError                 ClickHouse unreachable, a statement failed, a migration drifted
        ├── InsertFailed          a batch insert failed; retry the same batch after ``retry_after``
        ├── QueryRejected         a query parameter failed validation (HTTP 400)
        └── AuthError             missing/unknown token (401) or wrong tenant (403)

Third-party errors (clickhouse-connect, chDB) are converted at the boundary in
``sinks.clickhouse`` so callers only ever catch these.
"""

from __future__ import annotations

from lockgate.kernel.errors import LockgateError

__all__ = ["AuthError", "InsertFailed", "QueryRejected", "RowError", "SinkError"]


class SinkError(LockgateError):
    """ClickHouse could not be reached or refused a statement; the message names which."""


class InsertFailed(SinkError):
    """A batch insert failed. The batch is kept; retry it unchanged after ``retry_after`` seconds.

    Retrying the *same* batch is safe: it carries the same insert deduplication token.
    """

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class RowError(SinkError):
    """The record is not a well-formed AuditEvent/Checkpoint; dead-letter it."""


class QueryRejected(SinkError):
    """A query parameter is malformed or out of range; the message says which and what's allowed."""


class AuthError(SinkError):
    """The request's bearer token is missing, unknown, or used for another tenant.

    ``status`` is the HTTP status to answer with: 401 (missing/unknown) or 403 (forbidden).
    """

    def __init__(self, message: str, status: int = 401) -> None:
        self.status = status
        super().__init__(message)
