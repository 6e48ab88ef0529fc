"""Errors of the witness room.

::

    LockgateError
    └── WitnessError               the witness cannot run or cannot trust its own state
        ├── WitnessConfigError     bad settings: no log to trust, a bad name  (also ConfigError)
        └── WitnessStateCorrupt    a per-log state file is unreadable or does not check out

A corrupt state file stops the witness from cosigning that log (it answers 500) rather
than forgetting what it cosigned: forgetting would let a rolled-back log through.
"""

from __future__ import annotations

from lockgate.kernel.errors import ConfigError, LockgateError

__all__ = ["WitnessConfigError", "WitnessError", "WitnessStateCorrupt"]


class WitnessError(LockgateError):
    """The witness cannot run, or cannot trust its own state."""


class WitnessConfigError(WitnessError, ConfigError):
    """The witness's settings are unusable (no trusted log, an invalid name)."""


class WitnessStateCorrupt(WitnessError):
    """A per-log state file cannot be read or does not match the checkpoint it holds."""
