"""Errors of the PostgreSQL guard proxy.

Two families: what stops the proxy or a session (``PgProxyError``: bad configuration,
a client that breaks the protocol), and what an executed statement's outcome records
when it did not commit (``StatementNotCommitted``; its class name becomes the outcome's
``error_type``)::

    LockgateError
    └── PgProxyError
        ├── ProxyConfigError         the proxy's configuration is invalid (also ConfigError)
        ├── ProtocolViolation        a peer sent bytes that are not PostgreSQL protocol 3
        └── StatementNotCommitted    recorded in an ActionOutcome with status "failed"
            ├── StatementFailed      PostgreSQL refused the statement (message has the SQLSTATE)
            ├── RolledBack           it ran, then its transaction (or savepoint) rolled back
            ├── RowLimitExceeded     it touched more rows than the blast-radius limit; undone
            ├── NotExecuted          allowed, but never ran (an earlier statement failed)
            └── OutcomeUnknown       left to a two-phase commit or a lost connection
"""

from __future__ import annotations

from lockgate.kernel.errors import ConfigError, LockgateError

__all__ = [
    "NotExecuted",
    "OutcomeUnknown",
    "PgProxyError",
    "ProtocolViolation",
    "ProxyConfigError",
    "RolledBack",
    "RowLimitExceeded",
    "StatementFailed",
    "StatementNotCommitted",
]


class PgProxyError(LockgateError):
    """Base of the proxy's errors."""


class ProxyConfigError(PgProxyError, ConfigError):
    """The proxy configuration file or options are invalid; the message names the field."""


class ProtocolViolation(PgProxyError):
    """A client or the upstream sent something that is not PostgreSQL protocol 3; the session ends."""


class StatementNotCommitted(PgProxyError):
    """An allowed statement whose effects did not commit; carried into its ActionOutcome."""


class StatementFailed(StatementNotCommitted):
    """PostgreSQL answered the statement with an error."""


class RolledBack(StatementNotCommitted):
    """The statement ran, and its transaction or savepoint was rolled back."""


class RowLimitExceeded(StatementNotCommitted):
    """The statement affected more rows than allowed; the proxy made it fail before commit."""


class NotExecuted(StatementNotCommitted):
    """The statement was allowed but PostgreSQL never ran it."""


class OutcomeUnknown(StatementNotCommitted):
    """The proxy cannot see whether the statement committed (two-phase commit, connection lost)."""
