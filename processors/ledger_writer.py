"""The ledger stage's pure core: unchained audit events in, chained events and checkpoints out.

No Kafka here. The shell (:mod:`processors.ledger_stage`) owns the transactions; this core
owns the decisions, for each ledger partition it was handed:

* **Where the chain stands.** :meth:`LedgerWriter.recover` takes the partition's committed
  tail (the last events of the audit partition as a read_committed consumer sees them) and
  the last sequence a committed checkpoint covers. The head is the tail's last event —
  committed state only, so there is no second copy of the head that could disagree with
  the log.
* **Each event once.** Event ids are derived from what caused the event
  (:func:`schemas.records.event_id_for`), so an upstream stage that re-processes an input
  after a crash re-emits the same ids; :meth:`append` drops an id already among the
  partition's last ``dedup_window`` events (the window is rebuilt from the tail on
  recovery). A repeat that arrives more than ``dedup_window`` events later is chained
  again, and ``verify`` reports it as ``duplicate_event``: the window is the documented
  bound, not a silent one.
* **Every event provable.** Each partition is a whole log (:class:`trust.partition_log.PartitionLog`,
  rebuilt on recovery from the hashes of every committed event, sequence 0 upwards — or
  resumed from the frontier the newest checkpoint published, proven against its signature,
  plus the hashes after it — and extended by every chained event). Chained events wait in ``pending`` until a checkpoint
  covers them: :meth:`due_checkpoints` signs a whole-log checkpoint (C2SP tlog-checkpoint,
  :mod:`trust.tlog`: events ``0 .. size - 1``) when ``checkpoint_every`` events are pending
  or the oldest pending event has waited ``checkpoint_interval_s``. Events recovered after
  the last committed checkpoint (a crashed owner's last writes) are due at once, so
  whoever owns the partition next covers them.

The core's state is only valid together with a committed transaction: when the shell
aborts one, it calls :meth:`release` and recovers the partition again from Kafka.
Times are passed in (``now``: monotonic seconds, ``now_us``: wall-clock microseconds) so
every rule is testable without a clock.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trust.chain import GENESIS, Chain, ChainError, event_hash
from trust.keys import SigningKey
from trust.partition_log import LogFrontier, PartitionLog
from trust.tlog import DEFAULT_LOG_NAME

__all__ = ["LedgerWriter", "RecoveredPartition"]

log = logging.getLogger("lockgate.ledger")


@dataclass
class _Partition:
    """What the writer knows of one owned partition between two committed transactions."""

    log: PartitionLog
    pending: list[dict[str, Any]] = field(default_factory=list)
    chained_at: list[float] = field(default_factory=list)  # monotonic time each pending event was chained
    recent: deque[str] = field(default_factory=deque)
    recent_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class RecoveredPartition:
    """What :meth:`LedgerWriter.recover` found, for the shell's log line and tests."""

    partition: int
    next_sequence: int
    uncovered: int  # committed events no committed checkpoint covers yet
    remembered: int  # event ids in the dedup window


class LedgerWriter:
    """Chain state, dedup window and checkpoint schedule of the partitions one worker owns.

    Not thread-safe; one ledger loop drives it. ``dedup_window`` is per partition.
    """

    def __init__(self, key: SigningKey, processor_id: str, *, checkpoint_every: int,
                 checkpoint_interval_s: float, dedup_window: int, log_name: str = DEFAULT_LOG_NAME,
                 keep_proofs: bool = False) -> None:
        if checkpoint_every < 1 or dedup_window < 1 or checkpoint_interval_s <= 0:
            raise ValueError("checkpoint_every and dedup_window must be >= 1, checkpoint_interval_s > 0")
        self.key = key
        self.processor_id = processor_id
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self.dedup_window = dedup_window
        self.log_name = log_name
        # False: forget the leaves behind each checkpoint at once (nobody asks for proofs);
        # True: keep them until :meth:`forget_before` (witnesses ask for consistency proofs).
        self.keep_proofs = keep_proofs
        self._chain = Chain()
        self._parts: dict[int, _Partition] = {}

    # -- ownership ------------------------------------------------------------------

    def owns(self, partition: int) -> bool:
        return partition in self._parts

    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def recover(self, partition: int, tail: Sequence[Mapping[str, Any]], last_checkpointed: int | None,
                hashes: Iterable[bytes] | None = None, *, frontier: LogFrontier | None = None) -> RecoveredPartition:
        """Take ownership of ``partition`` from its committed state.

        ``tail``: the partition's last committed events in log order (chained AuditEvents),
        ending at its newest; it must reach back to ``last_checkpointed + 1`` (or to the
        partition's start) and should hold ``dedup_window`` events when the log has them.
        ``last_checkpointed``: the ``last_sequence`` of the newest committed checkpoint of
        the partition, ``None`` if it has none.
        ``hashes``: the stored ``hash`` of every committed event of the partition, sequence
        0 upwards; ``None`` when ``tail`` is the whole partition (its hashes are used).
        ``frontier``: instead of ``hashes``, the log as of the newest committed checkpoint,
        already proven against its signature (:func:`trust.partition_log.checkpointed_frontier`);
        ``tail`` must then hold that checkpoint's last event (sequence ``frontier.size - 1``,
        its stored hash the frontier's head), and the log resumes from the frontier with the
        hashes of the tail's events after that one.

        The whole log is rebuilt from ``hashes`` (or resumed from ``frontier``) and must end
        at the tail's head (same size and last hash), or :class:`trust.chain.ChainError` is raised and nothing is taken:
        a log that does not match the chain cannot be signed. Events after
        ``last_checkpointed`` become pending and are due for a checkpoint at once. A run
        before the head that does not link (a history forked before this writer existed)
        is still in the signed log as stored; ``verify`` names it, and it is logged.
        """
        if frontier is not None:
            if hashes is not None:
                raise ValueError("give the log's hashes or a frontier to resume from, not both")
            if last_checkpointed != frontier.size - 1:
                raise ValueError("a frontier resumes the log at its checkpoint: last_checkpointed = size - 1")
            plog = PartitionLog.resume(partition, frontier, log_name=self.log_name)
            hashes = _hashes_after(partition, tail, frontier)
        else:
            if hashes is None:
                if tail and tail[0].get("sequence") != 0:
                    raise ValueError("without hashes, the tail must be the whole partition (from sequence 0)")
                hashes = (bytes(ev["hash"]) for ev in tail)
            plog = PartitionLog(partition, log_name=self.log_name)
        for h in hashes:
            if not isinstance(h, bytes | bytearray) or len(h) != 32:
                raise ChainError(f"ledger partition {partition}: event {plog.size} has no 32-byte hash")
            plog.append(h)
        if not self.keep_proofs:
            plog.forget_before(plog.size)
        state = _Partition(log=plog)
        if tail:
            head = tail[-1]
            if plog.size != int(head["sequence"]) + 1 or plog.head != head.get("hash"):
                raise ChainError(
                    f"ledger partition {partition}: the stored event hashes make a log of {plog.size} event(s) "
                    f"that does not end at the head (sequence {head['sequence']}); the partition has gaps or "
                    "repeated sequences — `lockgate verify` names them")
            self._chain.resume_from(head)
            covered = -1 if last_checkpointed is None else last_checkpointed
            state.pending = [dict(ev) for ev in tail if type(ev.get("sequence")) is int and ev["sequence"] > covered]
            linked = _signable_suffix(tail, after=covered)
            if len(linked) < len(state.pending):
                log.error("ledger partition %d: %d event(s) after checkpointed sequence %d do not link or "
                          "recompute; the whole-log checkpoint covers them as stored and `lockgate verify` "
                          "names them", partition, len(state.pending) - len(linked), covered)
            # A previous owner's uncovered writes: due at once.
            state.chained_at = [float("-inf")] * len(state.pending)
        else:
            if plog.size:
                raise ChainError(f"ledger partition {partition}: hashes given for a partition without events")
            self._chain.resume(partition, 0, GENESIS)
        for ev in tail[-self.dedup_window:]:
            self._remember(state, str(ev["event_id"]))
        self._parts[partition] = state
        return RecoveredPartition(partition, self._chain.head(partition).next_sequence,
                                  len(state.pending), len(state.recent))

    def release(self, partition: int) -> None:
        """Forget ``partition`` (revoked, or its transaction aborted: recover it again)."""
        self._parts.pop(partition, None)

    # -- chaining ---------------------------------------------------------------------

    def append(self, partition: int, unchained: Mapping[str, Any], now: float) -> dict[str, Any] | None:
        """Chain ``unchained`` as the partition's next event, or ``None`` if its id is a repeat.

        Raises :class:`trust.chain.ChainError` (state unchanged) for a record that is not
        an AuditEvent, and :class:`KeyError` for a partition this writer does not own.
        """
        state = self._parts[partition]
        event_id = unchained.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            raise ChainError("audit event has no event_id")
        if event_id in state.recent_ids:
            return None
        chained = self._chain.append(unchained, partition)
        state.log.append(chained["hash"])
        self._remember(state, event_id)
        state.pending.append(chained)
        state.chained_at.append(now)
        return chained

    def _remember(self, state: _Partition, event_id: str) -> None:
        if event_id in state.recent_ids:
            return
        state.recent.append(event_id)
        state.recent_ids.add(event_id)
        if len(state.recent) > self.dedup_window:
            state.recent_ids.discard(state.recent.popleft())

    # -- checkpoints ------------------------------------------------------------------

    def due_checkpoints(self, now: float, now_us: int) -> list[dict[str, Any]]:
        """Signed whole-log checkpoints that are due, at most one per partition.

        Due: a partition with ``checkpoint_every`` pending events, or whose oldest pending
        event has waited ``checkpoint_interval_s``. Each checkpoint covers the partition's
        whole log, ``0 .. size - 1`` (``signature_format`` ``tlog-checkpoint/v1``), so every
        pending event leaves pending with it. Unless ``keep_proofs``, the leaves only a
        consistency proof would need are forgotten at once.
        """
        out: list[dict[str, Any]] = []
        for partition in sorted(self._parts):
            state = self._parts[partition]
            if state.pending and (len(state.pending) >= self.checkpoint_every
                                  or now - state.chained_at[0] >= self.checkpoint_interval_s):
                out.append(state.log.checkpoint(self.key, self.processor_id, now_us))
                state.pending.clear()
                state.chained_at.clear()
                if not self.keep_proofs:
                    state.log.forget_before(state.log.size)
        return out

    def partition_log(self, partition: int) -> PartitionLog:
        """The whole log of an owned ``partition`` (``KeyError`` otherwise), for witness proofs."""
        return self._parts[partition].log

    def forget_before(self, partition: int, size: int) -> None:
        """Drop the leaves only consistency proofs from sizes below ``size`` need."""
        plog = self._parts[partition].log
        plog.forget_before(max(plog.base_size, min(size, plog.size)))

    def pending(self, partition: int) -> int:
        """Chained events of ``partition`` no checkpoint covers yet."""
        state = self._parts.get(partition)
        return len(state.pending) if state is not None else 0


def _hashes_after(partition: int, tail: Sequence[Mapping[str, Any]], frontier: LogFrontier) -> list[bytes]:
    """The hashes of the tail's events after the one the frontier ends at, in log order.

    :class:`trust.chain.ChainError` if the tail does not hold that event (sequence
    ``frontier.size - 1``) exactly once with the frontier's head as its stored hash: the
    checkpoint and the stored events then disagree, and the log must be rebuilt whole.
    """
    last = frontier.size - 1
    at = [i for i, ev in enumerate(tail) if ev.get("sequence") == last]
    if len(at) != 1 or tail[at[0]].get("hash") != frontier.head:
        found = "missing" if not at else "repeated" if len(at) > 1 else "stored with another hash"
        raise ChainError(f"ledger partition {partition}: event {last}, where the checkpointed frontier ends, "
                         f"is {found} in the events read after it; rebuild the log from every event")
    return [bytes(ev["hash"]) if isinstance(ev.get("hash"), bytes | bytearray) else b""
            for ev in tail[at[0] + 1:]]


def _signable_suffix(tail: Sequence[Mapping[str, Any]], *, after: int) -> list[dict[str, Any]]:
    """The events with ``sequence > after`` that form one linked run ending at the head.

    Walks back from the head while each event recomputes and links to its predecessor;
    stops at the first break (or at ``after``), so only a chain a checkpoint may attest
    is returned.
    """
    run: list[dict[str, Any]] = []
    expected_seq: int | None = None
    expected_hash: bytes | None = None
    for ev in reversed(tail):
        seq = ev.get("sequence")
        if type(seq) is not int or seq <= after:
            break
        try:
            ok = event_hash(ev) == ev.get("hash")
        except ChainError:
            ok = False
        if not ok or (expected_seq is not None and (seq != expected_seq or ev.get("hash") != expected_hash)):
            break
        run.append(dict(ev))
        expected_seq = seq - 1
        expected_hash = ev.get("prev_hash")
    run.reverse()
    return run
