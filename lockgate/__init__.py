"""Lockgate: action-level guardrails with a tamper-evident audit ledger."""

from lockgate.errors import ConfigError, LockgateError

__all__ = ["ConfigError", "LockgateError", "__version__"]

__version__ = "0.1.0"
