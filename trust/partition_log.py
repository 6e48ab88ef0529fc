"""What a ledger writer keeps per partition to sign whole-log checkpoints: a pure core.

The writer calls, per partition, in this order (nothing here does I/O):

1. ``log.append(event["hash"])`` for every chained event, in sequence order — O(log n)
   state, amortised two SHA-256 per event (:mod:`trust.frontier`);
2. when a checkpoint is due, ``cp = log.checkpoint(key, processor_id, now_us)``: a
   Checkpoint record carrying the signed whole-log note (:mod:`trust.tlog`);
3. for each witness, ``body = add_checkpoint_body(old, log.consistency_proof(old), note)``
   with ``old`` the size that witness last cosigned (0 at first; a 409 answer tells the
   right one), POST it, and read the answer with
   :func:`trust.tlog_witness.read_add_checkpoint_response`; add the cosignature lines to
   the record with :func:`trust.tlog_witness.with_cosignatures` and publish it;
4. ``log.forget_before(size)`` once every witness holds ``size`` or more, so the leaves
   kept for consistency proofs do not grow without bound.

State to persist across restarts (next to the chain head): :meth:`PartitionLog.to_bytes`.
The ledger stage persists less: each whole-log checkpoint it publishes carries the log's
frontier at exactly the checkpoint's size (:meth:`PartitionLog.frontier`, O(log n) bytes).
On restart :func:`checkpointed_frontier` accepts that frontier only when the checkpoint's
signature verifies and the frontier reproduces the signed size and root (a frontier is
self-authenticating against a signed root, :mod:`trust.frontier`); the writer resumes from
it (:class:`LogFrontier`) and appends only the events after the checkpoint. A writer
without it rebuilds the frontier from the partition's event hashes
(:meth:`PartitionLog.from_hashes`). A witness left behind the oldest kept size cannot be
proven to from this state; the writer then reads the older hashes from the ledger and
uses :func:`trust.merkle.consistency_proof`.

Which checkpoint a restarted writer starts from (:func:`newest_verified_checkpoint`): the
one with the highest ``last_sequence`` among the partition's records whose signature
verifies under the writer's key — never an unverified one, however new or large. Whoever
can append to the checkpoints topic could otherwise claim that events are covered which
no signed checkpoint covers, and the restarted writer would never checkpoint them. When
the newest verified checkpoint is older than an unverified one, the verified one counts:
the writer then checkpoints more events again, which is safe; it never checkpoints fewer.
With no verified checkpoint, nothing counts as covered and everything is checkpointed again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from trust.checkpoints import check_checkpoint
from trust.errors import CheckpointError, ProofError
from trust.frontier import CompactRange
from trust.keys import Keyring, PublicKey, SigningKey
from trust.note import NoteSignature
from trust.tlog import DEFAULT_LOG_NAME, build_log_checkpoint, open_log_checkpoint, origin_for

__all__ = ["CheckpointChoice", "LogFrontier", "PartitionLog", "checkpointed_frontier", "newest_verified_checkpoint"]

_STATE_VERSION = 1

T = TypeVar("T")


@dataclass(frozen=True)
class LogFrontier:
    """A partition's log as a verified whole-log checkpoint states it: the frontier of its
    first ``size`` event hashes and the last of them (the chain head at that size)."""

    tree: CompactRange
    head: bytes

    @property
    def size(self) -> int:
        return self.tree.size


def checkpointed_frontier(
    checkpoint: Mapping[str, Any], frontier: bytes, keys: Keyring | PublicKey, *, log_name: str
) -> LogFrontier:
    """The frontier published with ``checkpoint`` (:meth:`CompactRange.to_bytes`), once proven.

    Accepted only if the checkpoint is a whole-log checkpoint of ``log_name`` signed by a key
    in ``keys`` (:func:`trust.tlog.open_log_checkpoint`), the frontier decodes, its size is
    the signed size (``last_sequence + 1``), its root is the signed root, and — for an odd
    size, where the frontier's last node is the last leaf — that leaf is the record's
    ``head_hash`` (which the note does not sign). Raises :class:`CheckpointError` naming
    the check that failed; nothing may be signed on top of a frontier that was refused.
    """
    opened = open_log_checkpoint(checkpoint, keys, log_name=log_name)
    try:
        tree = CompactRange.from_bytes(frontier)
    except ValueError as exc:
        raise CheckpointError(f"the frontier of {opened.origin} does not decode: {exc}") from None
    if tree.size != opened.size:
        raise CheckpointError(
            f"the frontier of {opened.origin} has size {tree.size}, the signed checkpoint {opened.size}")
    if tree.root() != opened.root:
        raise CheckpointError(
            f"the frontier of {opened.origin} at size {tree.size} has root {tree.root().hex()[:16]}…, "
            f"the signed checkpoint {opened.root.hex()[:16]}…")
    head = bytes(checkpoint["head_hash"])
    if tree.size % 2 and tree.nodes[-1] != hashlib.sha256(b"\x00" + head).digest():
        raise CheckpointError(
            f"head_hash of {opened.origin} at size {tree.size} is not the last leaf of the signed tree")
    return LogFrontier(tree, head)


@dataclass(frozen=True)
class CheckpointChoice(Generic[T]):
    """What :func:`newest_verified_checkpoint` made of a partition's checkpoint records."""

    chosen: tuple[Mapping[str, Any], T] | None
    """The newest verified checkpoint and its tag; ``None`` if no record verified."""
    refused: tuple[tuple[Mapping[str, Any], T, str], ...]
    """Every record of the partition that did not verify, its tag, and why, in the order given."""


def newest_verified_checkpoint(
    candidates: Iterable[tuple[Mapping[str, Any], T]],
    keys: Keyring | PublicKey,
    *,
    partition: int,
    log_name: str,
) -> CheckpointChoice[T]:
    """The checkpoint of ``partition`` a restarted writer may take as covering its events.

    ``candidates``: decoded Checkpoint records in log order, each with a tag of the
    caller's (where it is stored), records of other partitions among them (ignored).
    A record counts only if :func:`trust.checkpoints.check_checkpoint` accepts it under
    ``keys`` (the writer's key; whole-log ones of ``log_name`` only); of those, the one
    with the highest ``last_sequence`` is chosen, the last given of equals (a cosigned copy
    republished later). Every other record of the partition is refused with the reason.
    An unverified record never wins over a verified one, whatever its ``last_sequence``
    (module docstring). Pure; never raises for a malformed record.
    """
    chosen: tuple[Mapping[str, Any], T] | None = None
    refused: list[tuple[Mapping[str, Any], T, str]] = []
    for cp, tag in candidates:
        if cp.get("ledger_partition") != partition:
            continue
        try:
            check_checkpoint(cp, keys, log_name=log_name)
        except CheckpointError as exc:
            refused.append((cp, tag, str(exc)))
            continue
        if chosen is None or cp["last_sequence"] >= chosen[0]["last_sequence"]:
            chosen = (cp, tag)
    return CheckpointChoice(chosen, tuple(refused))


class PartitionLog:
    """The whole log of one ledger partition: its frontier, and the leaves since ``base``."""

    def __init__(
        self,
        partition: int,
        *,
        log_name: str = DEFAULT_LOG_NAME,
        tree: CompactRange | None = None,
        head: bytes | None = None,
    ) -> None:
        self.partition = partition
        self.log_name = log_name
        self.origin = origin_for(log_name, partition)
        self._tree = tree.copy() if tree is not None else CompactRange()
        if (self._tree.size == 0) != (head is None):
            raise ValueError("a non-empty log needs the hash of its last event as head, an empty one none")
        self._head = head
        self._base = self._tree.copy()
        self._tail: list[bytes] = []

    @classmethod
    def from_hashes(cls, partition: int, hashes: Iterable[bytes], *, log_name: str = DEFAULT_LOG_NAME) -> PartitionLog:
        """Rebuild from the partition's event hashes, sequence 0 upwards."""
        log = cls(partition, log_name=log_name)
        for h in hashes:
            log.append(h)
        log.forget_before(log.size)
        return log

    @classmethod
    def resume(cls, partition: int, frontier: LogFrontier, *, log_name: str = DEFAULT_LOG_NAME) -> PartitionLog:
        """The log as of a verified checkpoint (:func:`checkpointed_frontier`); append on."""
        return cls(partition, log_name=log_name, tree=frontier.tree, head=frontier.head)

    @property
    def size(self) -> int:
        return self._tree.size

    def frontier(self) -> CompactRange:
        """The frontier of the whole log as it is now (a copy): what a checkpoint publishes."""
        return self._tree.copy()

    @property
    def base_size(self) -> int:
        """The oldest size :meth:`consistency_proof` can still prove from."""
        return self._base.size

    @property
    def head(self) -> bytes | None:
        """The hash of the last event (the chain head), None while empty."""
        return self._head

    def root(self) -> bytes:
        return self._tree.root()

    def append(self, event_hash: bytes) -> None:
        """Add the next event's 32-byte hash (its sequence must be :attr:`size`)."""
        if len(event_hash) != 32:
            raise ValueError("an event hash is 32 bytes")
        leaf = bytes(event_hash)
        self._tree.append(leaf)
        self._tail.append(leaf)
        self._head = leaf

    def checkpoint(
        self,
        key: SigningKey,
        processor_id: str,
        now_us: int,
        cosignatures: Sequence[NoteSignature] = (),
    ) -> dict[str, Any]:
        """The Checkpoint record for the log as it is now (at least one event)."""
        if self._head is None:
            raise ProofError(f"partition {self.partition} has no events to checkpoint yet")
        return build_log_checkpoint(
            partition=self.partition, size=self.size, root=self.root(), head_hash=self._head, key=key,
            processor_id=processor_id, now_us=now_us, log_name=self.log_name, cosignatures=cosignatures,
        )

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """RFC 6962 proof from ``old_size`` (``base_size`` .. ``size``, or 0) to :attr:`size`."""
        if old_size == 0:
            return []
        if not self._base.size <= old_size <= self.size:
            raise ProofError(
                f"cannot prove size {old_size} of {self.origin}: this writer keeps sizes "
                f"{self._base.size}..{self.size}; read the older event hashes from the ledger"
            )
        start = old_size - self._base.size
        old = self._base.copy()
        for leaf in self._tail[:start]:
            old.append(leaf)
        return old.consistency_proof(self._tail[start:])

    def forget_before(self, size: int) -> None:
        """Drop what only proofs from sizes below ``size`` need (``size`` <= :attr:`size`)."""
        if not self._base.size <= size <= self.size:
            raise ValueError(f"size {size} is outside {self._base.size}..{self.size}")
        drop = size - self._base.size
        for leaf in self._tail[:drop]:
            self._base.append(leaf)
        del self._tail[:drop]

    def to_bytes(self) -> bytes:
        """Version, partition, head, frontier, base frontier, and the kept leaves."""
        head = self._head or b""
        parts = [bytes([_STATE_VERSION]), self.partition.to_bytes(4, "big"), bytes([len(head)]), head]
        for blob in (self._tree.to_bytes(), self._base.to_bytes()):
            parts += [len(blob).to_bytes(4, "big"), blob]
        parts.append(len(self._tail).to_bytes(8, "big"))
        parts.extend(self._tail)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, *, log_name: str = DEFAULT_LOG_NAME) -> PartitionLog:
        """Inverse of :meth:`to_bytes`; ``ValueError`` unless the bytes are such a state and
        the kept leaves on top of the base frontier reproduce the frontier."""
        data = bytes(data)
        if len(data) < 6 or data[0] != _STATE_VERSION:
            raise ValueError("not a PartitionLog state (unknown version)")
        partition = int.from_bytes(data[1:5], "big")
        head_len = data[5]
        head = data[6 : 6 + head_len]
        pos = 6 + head_len
        blobs: list[CompactRange] = []
        for _ in range(2):
            n = int.from_bytes(data[pos : pos + 4], "big")
            blobs.append(CompactRange.from_bytes(data[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        count = int.from_bytes(data[pos : pos + 8], "big")
        pos += 8
        tail = [data[pos + 32 * i : pos + 32 * (i + 1)] for i in range(count)]
        replay = blobs[1].copy()
        for leaf in tail:
            replay.append(leaf)
        if pos + 32 * count != len(data) or replay != blobs[0] or (tail and tail[-1] != head):
            raise ValueError("PartitionLog state is truncated or inconsistent")
        log = cls(partition, log_name=log_name, tree=blobs[0], head=head or None)
        log._base, log._tail = blobs[1], tail
        return log
