"""One decision per action id: the action ids the decide stage has decided, and when to refuse.

Why: :mod:`processors.decisions` makes one input (topic, partition, offset) get one
decision. That does not stop the same signed proposal bytes, or another proposal reusing
an action id, from arriving again at a *new* offset — a replay — and being decided again
(a second allow for an action the caller ran once). This module remembers every action id
decided in a partition and refuses a second proposal for it.

What is refused (each gets a signed ``block`` with basis ``replay`` and a ``security``
ledger event carrying the refused proposal's bytes; no ``action`` event, so the ledger
holds one proposal per action id):

* **already decided**: the action id was decided in this partition within the memory
  window (below);
* **expired**: ``proposed_at`` is older than ``window`` — a proposal that old cannot be
  told apart from a replay of one whose id the memory no longer holds;
* **from the future**: ``proposed_at`` more than :data:`FUTURE_SKEW_US` ahead of the
  processor's clock (it would outlive the memory before it expired);
* **outside its home partition**: an action id is decided only in the partition of
  ``actions`` its key hashes to (Kafka's murmur2 partitioner, which the Guard uses:
  ``partitioner=murmur2_random``). Otherwise a replay published to another partition
  would reach another worker's memory.

Durable, across restart and rebalance: the memory is rebuilt from the ``decisions`` topic
(key = action id, partition = the input's partition, acknowledged before any verdict is
sent, see :mod:`processors.decisions`) whenever a partition's delivery starts anew — the
same moment the stored decisions are read back. :func:`load_since_us` says how far back:
``window + FUTURE_SKEW_US``, which covers every id a replay could still be accepted for
(a proposal accepted at time D has ``proposed_at <= D + skew``; a replay at ``t`` passes
the age check only if ``t <= proposed_at + window <= D + skew + window``). The window may be
at most seven days minus the skew (:data:`~processors.settings.MAX_REPLAY_WINDOW_S`): every
partition start reads that span of the topic back.

Memory bound: one entry per action id decided in the last ``window + skew`` per owned
partition (about 200 bytes each; docs/benchmarks.md), dropped oldest-first as time passes.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FUTURE_SKEW_US", "ActionIds", "Refusal", "home_partition", "murmur2"]

FUTURE_SKEW_US = 5 * 60 * 1_000_000
"""How far ``proposed_at`` may be ahead of the processor's clock (5 minutes)."""


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's MurmurHash2 (Java's ``Utils.murmur2``, seed ``0x9747b28c``), as a 32-bit unsigned int.

    Once per proposal on the decide path, so written for CPython (whole words unpacked at
    once); a unit test holds it to aiokafka's line-by-line port of the Java code.
    """
    length = len(data)
    h = 0x9747B28C ^ length
    words = length // 4
    for word in struct.unpack_from(f"<{words}I", data):
        k = (word * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[words * 4:]
    if tail:
        for i in range(len(tail) - 1, -1, -1):
            h ^= tail[i] << (8 * i)
        h = (h * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


def home_partition(action_id: str, partitions: int) -> int:
    """The partition Kafka's murmur2 partitioner (Java's and librdkafka's ``murmur2``) gives
    a record keyed by ``action_id``."""
    return (murmur2(action_id.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Refusal:
    """Why a proposal gets no decision of its own (``basis`` is always ``replay``)."""

    reason: str
    basis: str = "replay"


class ActionIds:
    """The action ids decided per owned partition of ``actions`` (see the module docstring).

    Not thread-safe; the decide agent calls it from the event loop only. ``admit`` checks
    and remembers in one step, so two copies of one proposal in flight at once cannot
    both pass.
    """

    def __init__(self, partitions: int, window_us: int, future_skew_us: int = FUTURE_SKEW_US) -> None:
        if window_us <= 0 or partitions <= 0:
            raise ValueError("the replay window and the partition count must be positive")
        self.partitions = partitions
        self.window_us = window_us
        self.future_skew_us = future_skew_us
        self._ids: dict[int, OrderedDict[str, int]] = {}

    @property
    def memory_us(self) -> int:
        """How long an id is remembered after its decision: ``window + future skew``."""
        return self.window_us + self.future_skew_us

    def load_since_us(self, now_us: int) -> int:
        """The earliest decision time a rebuilt memory must hold."""
        return now_us - self.memory_us

    def loaded(self, partition: int, action_ids: Iterable[str], now_us: int) -> int:
        """Replace ``partition``'s memory by the ids read back from ``decisions``; how many.

        Each is remembered as of ``now_us`` (the read-back does not carry decision times):
        kept at most one memory span longer than needed, never shorter.
        """
        ids: OrderedDict[str, int] = OrderedDict()
        for action_id in action_ids:
            ids[action_id] = now_us
        self._ids[partition] = ids
        return len(ids)

    def forget(self, partition: int) -> None:
        """Drop ``partition`` (revoked); it is rebuilt when its delivery starts again."""
        self._ids.pop(partition, None)

    def held(self) -> int:
        """Ids in memory (for metrics and tests)."""
        return sum(len(ids) for ids in self._ids.values())

    def admit(self, proposal: Mapping[str, Any], partition: int, now_us: int) -> Refusal | None:
        """``None`` if ``proposal`` (decoded) may be decided now — and then its id is
        remembered — else why not."""
        action_id = str(proposal["action_id"])
        home = home_partition(action_id, self.partitions)
        if partition != home:
            return Refusal(
                f"action {action_id} arrived on partition {partition} of actions, but its id belongs to "
                f"partition {home} (murmur2 of the key), where its one decision is kept; publish proposals "
                "keyed by action id with the murmur2 partitioner (as the Guard does)")
        proposed_at = int(proposal["proposed_at"])
        if proposed_at < now_us - self.window_us:
            return Refusal(
                f"action {action_id} was proposed {(now_us - proposed_at) / 1e6:.0f}s ago, more than the "
                f"replay window of {self.window_us / 1e6:.0f}s (LOCKGATE_REPLAY_WINDOW_S): too old to be "
                "told apart from a replay; propose it again under a new action id")
        if proposed_at > now_us + self.future_skew_us:
            return Refusal(
                f"action {action_id} claims to be proposed {(proposed_at - now_us) / 1e6:.0f}s in the future, "
                f"more than the {self.future_skew_us / 1e6:.0f}s clock skew allowed; check the service's clock")
        ids = self._ids.setdefault(partition, OrderedDict())
        self._expire(ids, now_us)
        if action_id in ids:
            return Refusal(
                f"action {action_id} was already decided; a proposal reusing its id (a replay of the same "
                "signed bytes, or another proposal under that id) gets no second decision")
        ids[action_id] = now_us
        return None

    def _expire(self, ids: OrderedDict[str, int], now_us: int) -> None:
        horizon = now_us - self.memory_us
        while ids:
            oldest = next(iter(ids.values()))
            if oldest >= horizon:
                return
            ids.popitem(last=False)
