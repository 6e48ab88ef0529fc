"""The C2SP tlog-proof text: an inclusion proof bundled with its (cosigned) checkpoint.

Why a standard format inside our proof files: any tlog tool (transparency-dev's
``formats/proof`` in Go, for one) can then read Lockgate's inclusion proofs. Format
(c2sp.org/tlog-proof), lines ending in U+000A::

    c2sp.org/tlog-proof@v1
    [extra <base64>]              optional, unauthenticated; Lockgate writes none
    index <leaf index, decimal, no leading zeros>
    <base64 hash>                 zero or more: RFC 6962 audit path, leaf level first
    <empty line>
    <the checkpoint, a signed note, verbatim — cosignature lines included>

This module only formats and parses; :mod:`trust.proofs` verifies.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from trust.errors import TlogFormatError

__all__ = ["TLOG_PROOF_HEADER", "TlogProof", "format_tlog_proof", "parse_tlog_proof"]

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
_INDEX = re.compile(r"^index (0|[1-9][0-9]*)$")
_MAX_PATH = 64


@dataclass(frozen=True)
class TlogProof:
    """A parsed tlog-proof: leaf index, audit path, checkpoint note, extra data (if any)."""

    index: int
    path: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None


def _b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TlogFormatError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise TlogFormatError(f"{what} is not canonical base64")
    return raw


def format_tlog_proof(index: int, path: Sequence[bytes], checkpoint_note: str) -> str:
    """The tlog-proof text (no extra line)."""
    lines = [TLOG_PROOF_HEADER, f"index {index}", *(base64.b64encode(h).decode("ascii") for h in path)]
    return "".join(f"{line}\n" for line in lines) + "\n" + checkpoint_note


def parse_tlog_proof(text: str) -> TlogProof:
    """Parse a tlog-proof; :class:`TlogFormatError` names the first thing out of format.

    The checkpoint is returned verbatim and is not checked here.
    """
    if not isinstance(text, str):
        raise TlogFormatError("a tlog-proof is text")
    head, sep, checkpoint = text.partition("\n\n")
    if not sep or not checkpoint:
        raise TlogFormatError("a tlog-proof has an empty line between the proof and the checkpoint")
    lines = head.split("\n")
    if lines[0] != TLOG_PROOF_HEADER:
        raise TlogFormatError(f"a tlog-proof starts with the line {TLOG_PROOF_HEADER!r}")
    rest = lines[1:]
    extra = None
    if rest and rest[0].startswith("extra "):
        extra = _b64(rest[0][len("extra ") :], "the extra line")
        rest = rest[1:]
    m = _INDEX.match(rest[0]) if rest else None
    if m is None:
        raise TlogFormatError("a tlog-proof names the leaf as 'index N' (decimal, no leading zeros)")
    hashes = rest[1:]
    if len(hashes) > _MAX_PATH:
        raise TlogFormatError(f"an audit path has at most {_MAX_PATH} hashes")
    path = tuple(_b64(h, "an audit path line") for h in hashes)
    if any(len(h) != 32 for h in path):
        raise TlogFormatError("audit path hashes are 32 bytes")
    return TlogProof(int(m[1]), path, checkpoint, extra)
