"""Errors of the contract layer (encoding, decoding, evolution)."""

from __future__ import annotations

from lockgate.kernel.errors import LockgateError

__all__ = [
    "CodecError",
    "EncodeError",
    "IncompatibleSchema",
    "MalformedRecord",
    "OversizedRecord",
    "TruncatedRecord",
    "UnknownSchema",
]


class CodecError(LockgateError):
    """Bytes could not be turned into a record, or a record into bytes."""


class MalformedRecord(CodecError):
    """The bytes are not a valid single-object-encoded record (bad header, bad body, trailing bytes)."""


class TruncatedRecord(CodecError):
    """The bytes end before the header or the record does."""


class UnknownSchema(CodecError):
    """The fingerprint in the header names no schema this codec knows (current or released)."""

    def __init__(self, fingerprint: bytes) -> None:
        self.fingerprint = fingerprint
        super().__init__(
            f"unknown schema fingerprint {fingerprint.hex()}: the writer used a schema this "
            "build does not know; upgrade lockgate or check the producer's schema version"
        )


class OversizedRecord(CodecError):
    """The record is bigger than the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"record of {size} bytes exceeds the limit of {limit} bytes; "
            "send less, or raise LOCKGATE_MAX_RECORD_BYTES"
        )


class EncodeError(CodecError):
    """A record does not fit its schema (missing field, wrong type)."""


class IncompatibleSchema(CodecError):
    """A schema change would break readers or writers of the previous released version."""
