"""Ask tlog witnesses to cosign the ledger's whole-log checkpoints (``LOCKGATE_WITNESSES``).

The ledger stage calls :meth:`Witnesses.cosign` with the checkpoints a transaction has just
*committed* (a witness must never hold a size the committed log might not reach: an
aborted transaction's events are chained again, and may hash differently). Each witness
gets ``submit_checkpoint`` (:mod:`trust.tlog_witness`) with the consistency proof from the
size it last cosigned for that origin (0 at start: its 409 answer names the right one).
The checkpoints that came back with cosignature lines are published again by the stage in
its next transaction; ``verify`` unions the lines of every stored copy of a checkpoint.

A witness that is down, slow (``timeout_s``) or refuses is logged and skipped this round;
``verify --witness-key`` reports ``missing_cosignature`` until it catches up. A witness
holding a size the writer no longer keeps leaves for is skipped too (the writer keeps the
leaves since the smallest size any witness holds, at most ``max_kept`` of them).
"""

from __future__ import annotations

import http.client
import logging
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trust.cosignature import CosignatureV1Verifier
from trust.errors import ProofError
from trust.note import NoteSignature
from trust.partition_log import PartitionLog
from trust.tlog_witness import Cosigned, SizeConflict, submit_checkpoint, with_cosignatures

__all__ = ["HttpPost", "Post", "Witness", "Witnesses", "parse_witnesses"]

log = logging.getLogger("lockgate.ledger")

Post = Callable[[bytes], tuple[int, str | None, bytes]]
"""``post(body) -> (status, content type, body)``: one ``add-checkpoint`` request."""


@dataclass(frozen=True)
class Witness:
    """One witness: where to POST, and the key its cosignatures must verify with."""

    url: str
    verifier: CosignatureV1Verifier
    post: Post


def parse_witnesses(spec: str, *, timeout_s: float = 2.0) -> list[Witness]:
    """``URL=VKEY-FILE`` entries separated by commas or whitespace; ``ValueError`` names a bad one."""
    out: list[Witness] = []
    for entry in (e for e in re.split(r"[,\s]+", spec.strip()) if e):
        url, sep, vkey_file = entry.rpartition("=")
        if not sep or not url or not vkey_file:
            raise ValueError(f"LOCKGATE_WITNESSES: {entry!r} is not URL=VKEY-FILE")
        try:
            verifier = CosignatureV1Verifier.from_vkey(Path(vkey_file).expanduser().read_text().strip())
        except (OSError, ValueError) as exc:
            raise ValueError(f"LOCKGATE_WITNESSES: the verifier key of {url} ({vkey_file}): {exc}") from exc
        out.append(Witness(url, verifier, HttpPost(url, timeout_s)))
    return out


class HttpPost:
    """POSTs to ``<url>/add-checkpoint`` on one kept-alive connection (reopened after an error)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"LOCKGATE_WITNESSES: {url!r} is not an http(s) URL")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._path = parts.path.rstrip("/") + "/add-checkpoint"
        self._timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def __call__(self, body: bytes) -> tuple[int, str | None, bytes]:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout_s)
        try:
            self._conn.request("POST", self._path, body=body, headers={"Content-Type": "text/plain"})
            resp = self._conn.getresponse()
            return resp.status, resp.getheader("Content-Type"), resp.read()
        except (OSError, http.client.HTTPException):
            self._conn.close()
            self._conn = None
            raise


class Witnesses:
    """The witnesses of one ledger stage and the size each last cosigned, per origin."""

    def __init__(self, witnesses: Sequence[Witness], *, max_kept: int = 100_000) -> None:
        self.witnesses = list(witnesses)
        self.max_kept = max_kept
        self.known: dict[tuple[str, str], int] = {}  # (witness url, origin) -> size it holds

    def __bool__(self) -> bool:
        return bool(self.witnesses)

    def cosign(self, cp: Mapping[str, Any], plog: PartitionLog) -> dict[str, Any] | None:
        """``cp`` with the cosignatures that arrived, or ``None`` if none did.

        ``plog`` is the partition's log at ``cp``'s size or later (its consistency proofs
        must end at ``cp``'s size, so call this before appending more events).
        """
        note = bytes(cp["signature"]).decode("utf-8")
        size = int(cp["last_sequence"]) + 1
        if plog.size != size:
            raise ValueError(f"the log is at size {plog.size}, the checkpoint at {size}")
        lines: list[NoteSignature] = []
        for w in self.witnesses:
            key = (w.url, plog.origin)
            try:
                result, held = submit_checkpoint(w.post, note, self.known.get(key, 0), plog.consistency_proof,
                                                 w.verifier)
            except ProofError as exc:
                log.warning("witness %s not asked to cosign %s: %s", w.url, cp["checkpoint_id"], exc)
                continue
            except (OSError, http.client.HTTPException) as exc:
                log.warning("witness %s unreachable for %s: %s", w.url, cp["checkpoint_id"], exc)
                continue
            if held is not None:
                self.known[key] = held
            if isinstance(result, Cosigned):
                lines.extend(result.cosignatures)
            elif isinstance(result, SizeConflict) and result.witness_size > size:
                log.error("witness %s holds size %d of %s, more than the ledger's %d: the log was rolled back "
                          "or forked", w.url, result.witness_size, plog.origin, size)
            else:
                log.warning("witness %s did not cosign %s: %s", w.url, cp["checkpoint_id"], result)
        return with_cosignatures(cp, lines) if lines else None

    def keep_from(self, plog: PartitionLog) -> int:
        """The smallest size a consistency proof will be asked from (what the log must keep)."""
        held = [self.known.get((w.url, plog.origin), 0) for w in self.witnesses]
        return max(min([plog.size, *held]), plog.size - self.max_kept, 0)
