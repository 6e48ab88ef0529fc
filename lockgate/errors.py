"""The root of every error Lockgate raises.

Each room (``schemas``, ``producers``, ``processors``, ``sinks``, ``deploy``) keeps its own
small ``errors.py`` whose classes derive from :class:`LockgateError`, so callers can catch
everything Lockgate raises with one ``except`` and still tell the cases apart::

    LockgateError
    ├── ConfigError                      bad setting, key file with loose permissions
    ├── schemas.errors.CodecError
    │   ├── MalformedRecord              bytes are not a valid record of the named schema
    │   ├── TruncatedRecord              bytes end before the record does
    │   ├── UnknownSchema                fingerprint names no schema we know
    │   ├── OversizedRecord              bigger than the configured limit
    │   └── IncompatibleSchema           evolution check failed
    ├── deploy.errors.StackError
    │   ├── PortInUse                    a port the stack needs is taken
    │   ├── JarResolutionFailed          Maven could not resolve the broker's jars
    │   ├── BrokerUnavailable            no metadata answer in time
    │   └── TopicConfigDrift             an existing topic differs from the catalogue
    ├── producers.errors.GuardError      (the decision path; all of them stop the body)
    │   ├── ActionBlocked                a valid, signed block verdict
    │   ├── VerdictTimeout               no verdict in time
    │   ├── VerdictRejected              verdict missing, unsigned, forged, or for another action
    │   └── BrokerUnavailableForGuard    the request could not be published
    ├── processors.errors.PolicyError
    │   ├── PolicyInvalid                a policy file failed validation (file:line given)
    │   └── KeyError_                    (see processors.keys) key missing or exposed
    └── sinks.errors.SinkError
        ├── QueryRejected                a query parameter failed validation
        └── AuthError                    missing, unknown or wrong-tenant token

Every message says what went wrong and what to do next.
"""

from __future__ import annotations

__all__ = ["ConfigError", "LockgateError"]


class LockgateError(Exception):
    """Base class of every Lockgate error."""


class ConfigError(LockgateError):
    """A setting is missing or invalid, or a secret file is unsafe to use."""
