"""One decision per input: the decisions the decide stage kept, and when to look them up.

Why: the decide agent is at-least-once (Faust commits input offsets after the fact). A
worker that crashes after sending a verdict but before committing its input would, on
restart, decide that action again — a second verdict, possibly different (a policy or
clock changed), which the ledger may hold while the caller ran under the first one
(``embedded_verdict_mismatch``). So every decision is written to the ``decisions`` topic
and acknowledged by the broker *before* its verdict or audit events are sent; processing
an input again re-sends the stored verdict bytes instead of deciding anew.

The record (written by the shell, read back here): key = the action id, value = the
encoded Verdict, partition = the input's partition on ``actions``, headers
:data:`OFFSET_HEADER` (the input's offset) and :data:`AUTH_HEADER` (the service
authentication result the decision was made under).

When to look: :class:`DecisionMemory` tracks the next offset it expects per input
partition. Faust delivers a partition's records in order, so an offset other than the
expected one means a restart or a rebalance — possibly a re-delivery — and only then is
the partition's tail of the ``decisions`` topic read back, from the end until a decision
for an earlier offset than the re-delivered one. In between, nothing is looked up.

Memory bound (the state's TTL): the memory holds only the decisions read back for
offsets at or after the re-delivered one — the inputs the crashed owner had processed
but not committed — and forgets each as the stream passes it, so it never holds more
than one commit interval's worth. The topic itself keeps decisions for
``DECISIONS_RETENTION_MS`` (7 days, :mod:`schemas.topics`); a decision older than that
can never be needed, since input offsets are committed every half second.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from processors.decider import StoredDecision
from trust.registry import ServiceVerification

__all__ = ["AUTH_HEADER", "OFFSET_HEADER", "DecisionMemory", "decision_headers", "parse_decision"]

OFFSET_HEADER = "lockgate.input-offset"
AUTH_HEADER = "lockgate.auth"


def decision_headers(offset: int, decision: StoredDecision) -> list[tuple[str, bytes]]:
    """The headers of the ``decisions`` record for the input at ``offset``."""
    auth = decision.auth.value if decision.auth is not None else ""
    return [(OFFSET_HEADER, str(offset).encode()), (AUTH_HEADER, auth.encode())]


def parse_decision(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> tuple[int, StoredDecision] | None:
    """``(input offset, decision)`` from a ``decisions`` record, or ``None`` if it is not one."""
    found = dict(headers)
    raw_offset, raw_auth = found.get(OFFSET_HEADER), found.get(AUTH_HEADER)
    if value is None or raw_offset is None:
        return None
    try:
        offset = int(raw_offset.decode())
        auth = ServiceVerification(raw_auth.decode()) if raw_auth else None
    except ValueError:
        return None
    return offset, StoredDecision(value, auth)


@dataclass
class _Partition:
    next_offset: int
    stored: dict[int, StoredDecision]


class DecisionMemory:
    """Stored decisions of inputs that may be delivered again (see the module docstring)."""

    def __init__(self) -> None:
        self._parts: dict[int, _Partition] = {}

    def needs_recovery(self, partition: int, offset: int) -> bool:
        """True unless ``offset`` is the next one expected on ``partition``."""
        state = self._parts.get(partition)
        return state is None or state.next_offset != offset

    @staticmethod
    def recovery_complete(from_offset: int, offsets_read: Iterable[int]) -> bool:
        """Whether a tail read back to these input offsets covers every input from ``from_offset``.

        The tail is read from the newest record backwards; once it holds a decision for an
        earlier input, every decision at or after ``from_offset`` is in it.
        """
        return any(o < from_offset for o in offsets_read)

    def recovered(self, partition: int, from_offset: int, decisions: Iterable[tuple[int, StoredDecision]]) -> int:
        """Install the decisions read back for ``partition``; returns how many may be re-sent."""
        stored = {o: d for o, d in sorted(decisions, key=lambda od: od[0]) if o >= from_offset}
        self._parts[partition] = _Partition(from_offset, stored)
        return len(stored)

    def take(self, partition: int, offset: int) -> StoredDecision | None:
        """The stored decision for the input at ``offset`` (forgetting it and every older one)."""
        state = self._parts.setdefault(partition, _Partition(offset, {}))
        state.next_offset = offset + 1
        stored = state.stored
        if not stored:
            return None
        found = stored.pop(offset, None)
        for old in [o for o in stored if o < offset]:
            del stored[old]
        return found

    def forget(self, partition: int) -> None:
        """Drop ``partition`` (revoked); its next delivery triggers a read-back."""
        self._parts.pop(partition, None)

    def held(self) -> int:
        """Decisions in memory (for metrics and tests)."""
        return sum(len(p.stored) for p in self._parts.values())
