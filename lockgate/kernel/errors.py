"""The root of every error Lockgate raises.

Each room (``schemas``, ``producers``, ``processors``, ``sinks``, ``deploy``) keeps its own
small ``errors.py`` whose classes derive from :class:`LockgateError`, so callers can catch
everything Lockgate raises with one ``except`` and still tell the cases apart::

    LockgateError
    ├── KafkaReadError                   a partition could not be read back (broker error, no progress)
    ├── ConfigError                      fixed by an operator (schemas.signing)
    │   ├── KeyMissing                   no key file: run `lockgate keys init`
    │   ├── KeyFileUnsafe                key readable by group/other: chmod 600
    │   ├── KeyInvalid                   not an Ed25519 key Lockgate wrote
    │   └── RegistryError                services.json unreadable, bad service name
    ├── schemas.errors.CodecError
    │   ├── MalformedRecord              bytes are not a valid record of the named schema
    │   ├── TruncatedRecord              bytes end before the record does
    │   ├── UnknownSchema                fingerprint names no schema we know
    │   ├── OversizedRecord              bigger than the configured limit
    │   ├── EncodeError                  a record does not fit its schema
    │   └── IncompatibleSchema           evolution check failed
    ├── deploy.errors.StackError
    │   ├── PortInUse                    a port the stack needs is taken (names the holder)
    │   ├── JarResolutionFailed          Maven could not resolve the broker's jars
    │   ├── BrokerUnavailable            no metadata answer in time
    │   └── ProcessFailed                a stack process exited during start-up
    ├── producers.errors.GuardError      the decision path; every one stops the guarded body
    │   ├── ActionBlocked                a valid, signed block verdict (carries it)
    │   ├── VerdictTimeout               no verdict in time
    │   ├── VerdictRejected              unsigned, forged, or another action's verdict
    │   └── GuardUnavailable             the proposal could not be published
    ├── processors.errors.PolicyError
    │   ├── PolicyInvalid                a policy file failed validation (file:line each)
    │   │   └── PolicyCasesInvalid       a `policy test` cases file failed validation
    │   └── SqlUnparseable               attributes.sql is not SQL we can parse
    ├── processors.errors.StageError     a stage cannot process a record or keep its guarantees
    │   ├── NullRecord                   a record without a value (tombstone): dead-lettered
    │   └── LedgerStageFailed            the ledger stage stopped (fenced, fatal Kafka error)
    ├── trust.chain.ChainError, trust.checkpoints.CheckpointError,
    │   trust.proofs.ProofError          ledger invariants refused (never signed, never proven)
    └── sinks.errors.SinkError
        ├── InsertFailed                 ClickHouse refused a batch; carries retry_after
        ├── RowError                     a record is not an AuditEvent/Checkpoint
        ├── QueryRejected                a query parameter failed validation
        └── AuthError                    missing or unknown token (401), wrong tenant (403)

Every message says what went wrong and what to do next.
"""

from __future__ import annotations

__all__ = ["ConfigError", "KafkaReadError", "LockgateError"]


class LockgateError(Exception):
    """Base class of every Lockgate error."""


class ConfigError(LockgateError):
    """A setting is missing or invalid, or a secret file is unsafe to use."""


class KafkaReadError(LockgateError):
    """A partition could not be read back: a broker error, or no progress within the timeout."""
