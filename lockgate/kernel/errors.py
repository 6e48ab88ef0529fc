"""The root of every error Lockgate raises.

Each room keeps its own small ``errors.py`` whose classes derive from :class:`LockgateError`,
so callers can catch everything Lockgate raises with one ``except`` and still tell the
cases apart::

    LockgateError
    ├── KafkaReadError                   a partition could not be read back (broker error, no progress)
    ├── KafkaWriteError                  a record was refused or not acknowledged in time
    ├── ConfigError                      fixed by an operator
    │   └── DurationInvalid              not a duration (90s, 30m, 24h, 7d, 2w)
    ├── schemas.errors.CodecError
    │   ├── MalformedRecord              bytes are not a valid record of the named schema
    │   ├── TruncatedRecord              bytes end before the record does
    │   ├── UnknownSchema                fingerprint names no schema we know
    │   ├── OversizedRecord              bigger than the configured limit
    │   ├── EncodeError                  a record does not fit its schema
    │   └── IncompatibleSchema           evolution check failed
    ├── trust.errors.TrustError          the trust model refused something
    │   ├── KeyMissing, KeyFileUnsafe, KeyInvalid, RegistryError   (also ConfigError)
    │   ├── ChainError, CheckpointError, ProofError   ledger invariants (never signed, never proven)
    │   ├── WitnessFileError             a witness file is unreadable (also ConfigError)
    │   ├── NoteError                    a signed note refused: NoteMalformed, NoteUnverified,
    │   │                                NoteSignatureInvalid
    │   └── TlogFormatError              a checkpoint body, tlog-proof or witness request is malformed
    ├── deploy.errors.StackError
    │   ├── PortInUse                    a port the stack needs is taken (names the holder)
    │   ├── JarResolutionFailed          Maven could not resolve the broker's jars
    │   ├── BrokerUnavailable            no metadata answer in time
    │   └── ProcessFailed                a stack process exited during start-up
    ├── producers.errors.GuardError      the decision path; every one stops the guarded body
    │   ├── ActionBlocked                a valid, signed block verdict (carries it)
    │   ├── VerdictTimeout               no verdict in time
    │   ├── VerdictRejected              unsigned, forged, or another action's verdict
    │   ├── ReviewPending                held for review; no final verdict in the time given
    │   └── GuardUnavailable             the proposal could not be published
    ├── producers.errors.SpoolError      an outcome neither confirmed by Kafka nor spooled (body ran)
    ├── processors.errors.PolicyError
    │   ├── PolicyInvalid                a policy file failed validation (file:line each)
    │   │   ├── PolicyTooLarge           over the size or rule-count limit, refused unparsed
    │   │   └── PolicyCasesInvalid       a `policy test` cases file failed validation
    │   └── SqlUnparseable               attributes.sql is not SQL we can parse
    ├── processors.errors.StageError     a stage cannot process a record or keep its guarantees
    │   ├── NullRecord                   a record without a value (tombstone): dead-lettered
    │   └── LedgerStageFailed            the ledger stage stopped (fenced, fatal Kafka error)
    ├── witness.errors.WitnessError
    │   ├── WitnessConfigError           no log to trust, a bad name (also ConfigError)
    │   └── WitnessStateCorrupt          a per-log record does not check out: cosign nothing
    └── sinks.errors.SinkError
        ├── InsertFailed                 ClickHouse refused a batch; carries retry_after
        ├── RowError                     a record is not an AuditEvent/Checkpoint
        ├── QueryRejected                a query parameter failed validation
        └── AuthError                    missing or unknown token (401), wrong tenant (403)

Every message says what went wrong and what to do next.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DurationInvalid", "KafkaReadError", "KafkaWriteError", "LockgateError"]


class LockgateError(Exception):
    """Base class of every Lockgate error."""


class ConfigError(LockgateError):
    """A setting is missing or invalid, or a secret file is unsafe to use."""


class DurationInvalid(ConfigError):
    """A duration option does not follow the grammar of :mod:`lockgate.kernel.durations`."""


class KafkaReadError(LockgateError):
    """A partition could not be read back: a broker error, or no progress within the timeout."""


class KafkaWriteError(LockgateError):
    """A record could not be published: the broker refused it or did not acknowledge it in time."""
