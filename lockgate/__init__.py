"""Lockgate: action-level guardrails with a tamper-evident audit ledger.

Two layers live here: :mod:`lockgate.kernel` below every room (errors, home directory,
Kafka helpers) and :mod:`lockgate.cli` on top of them all (the ``lockgate`` command).
"""

from lockgate.kernel.errors import ConfigError, LockgateError

__all__ = ["ConfigError", "LockgateError", "__version__"]

__version__ = "0.1.0"
