"""One decision per input: the decisions the decide stage kept, and when to look them up.

Why: the decide agent is at-least-once (Faust commits input offsets after the fact). A
worker that crashes after sending a verdict but before committing its input would, on
restart, decide that action again — a second verdict, possibly different (a policy or
clock changed), which the ledger may hold while the caller ran under the first one
(``embedded_verdict_mismatch``). So every decision is written to the ``decisions`` topic
and acknowledged by the broker *before* its verdict or audit events are sent; processing
an input again re-sends the stored verdict bytes instead of deciding anew.

The record (:func:`decision_record`, written by the shell, read back here): key = the
action id, partition = the input's partition on ``actions``, value = a ``DecisionRecord``
(``schemas/DecisionRecord.avsc``) holding the input's offset, the service-authentication
result the decision was made under, the encoded verdict, and the decision's audit events.
**The record is also the ledger's input** (:func:`decision_events`): the ledger stage
chains its events straight from ``decisions``, so a decision costs one record on the
decision path instead of one plus an ``audit-intake`` record per event, and its events can
never reach the ledger without the decision they describe. Records written before this
format (value = the encoded Verdict, offset and auth in the headers :data:`OFFSET_HEADER`
and :data:`AUTH_HEADER`, events sent separately through ``audit-intake``) are still read
back; the ledger takes no events from them, and a re-delivered input whose stored decision
is one of them has its events sent through ``audit-intake`` again
(:attr:`~processors.decider.StoredDecision.carries_events`), as before.

When to look: :class:`DecisionMemory` tracks the next offset it expects per input
partition. Faust delivers a partition's records in order, so an offset other than the
expected one means a restart or a rebalance — possibly a re-delivery — or records the
consumer dropped (:mod:`processors.input_gaps` decides which, and decides those), and only
then is the partition's tail of the ``decisions`` topic read back, from the end until a
decision for an earlier offset than the re-delivered one. In between, nothing is looked up.

Memory bound (the state's TTL): the memory holds only the decisions read back for
offsets at or after the re-delivered one — the inputs the crashed owner had processed
but not committed — and forgets each as the stream passes it, so it never holds more
than one commit interval's worth. The topic itself keeps decisions for
as long as ``audit-intake`` (:mod:`schemas.topics`); the read-back only ever reads its tail,
since input offsets are committed every half second.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from processors.decider import StoredDecision
from processors.errors import NullRecord
from processors.stage import Source, StageOutput, refuse
from schemas.codec import Codec, get_codec
from schemas.errors import CodecError
from trust.chain import ChainError
from trust.keys import PublicKey
from trust.registry import ServiceVerification
from trust.signatures import verify_record

__all__ = ["AUTH_HEADER", "OFFSET_HEADER", "DecisionMemory", "decision_events", "decision_headers", "decision_record",
           "parse_decision"]

OFFSET_HEADER = "lockgate.input-offset"
AUTH_HEADER = "lockgate.auth"


def decision_record(codec: Codec, offset: int, decision: StoredDecision, events: Sequence[dict[str, Any]]) -> bytes:
    """The ``decisions`` record of the input at ``offset``: its decision and audit events."""
    return codec.encode("DecisionRecord", {
        "input_offset": offset,
        "auth": decision.auth.value if decision.auth is not None else "",
        "verdict": decision.verdict,
        "events": list(events),
    })


def decision_headers(offset: int, decision: StoredDecision) -> list[tuple[str, bytes]]:
    """The headers of a ``decisions`` record in the format before :func:`decision_record`
    (kept for tests of the upgrade path: workers no longer write it)."""
    auth = decision.auth.value if decision.auth is not None else ""
    return [(OFFSET_HEADER, str(offset).encode()), (AUTH_HEADER, auth.encode())]


def _auth(raw: str) -> ServiceVerification | None:
    return ServiceVerification(raw) if raw else None


def parse_decision(value: bytes | None, headers: Sequence[tuple[str, bytes]], *,
                   signer: PublicKey | None = None, key: bytes | None = None) -> tuple[int, StoredDecision] | None:
    """``(input offset, decision)`` from a ``decisions`` record of either format, or ``None``
    if it is not one (see the module docstring). A record whose verdict bytes do not decode as
    a Verdict is not one: no requester can have been sent it, so the input is decided anew
    rather than answered with bytes that would fail the decider (a forged record on
    ``decisions`` must not stop a partition from being decided).

    With ``signer`` (the processors' public key), a record is a decision only if its verdict
    is signed by that key and names the action id the record is keyed by (``key``): a
    forged record, or a genuine verdict copied under another input's offset, would
    otherwise be re-sent to that input's requester instead of its own decision (the Guard
    refuses it, so the requester would get nothing useful). The worker always passes it."""
    if value is None:
        return None
    codec = get_codec()
    try:
        current = codec.peek_schema(value) == "DecisionRecord"
    except CodecError:
        current = False
    try:
        if current:
            rec = codec.decode_as("DecisionRecord", value)
            offset, stored = int(rec["input_offset"]), StoredDecision(bytes(rec["verdict"]), _auth(rec["auth"]),
                                                                     carries_events=True)
        else:
            found = dict(headers)
            raw_offset, raw_auth = found.get(OFFSET_HEADER), found.get(AUTH_HEADER)
            if raw_offset is None:
                return None
            offset, stored = int(raw_offset.decode()), StoredDecision(value, _auth(raw_auth.decode()) if raw_auth
                                                                      else None)
        verdict = codec.decode_as("Verdict", stored.verdict)  # a verdict nobody could have been sent is no decision
        if signer is not None and not (key is not None and verdict["action_id"].encode() == key
                                       and verify_record(verdict, "signature", b"", signer)):
            return None
        return offset, stored
    except (CodecError, ValueError):
        return None


def decision_events(codec: Codec, raw: bytes | None, source: Source) -> StageOutput:
    """What the ledger chains for the ``decisions`` record at ``source``.

    A ``DecisionRecord``: its events, in order (each must have an event id). A record in the
    older format (an encoded Verdict): nothing — its events went through ``audit-intake``.
    Anything else (a null value, bytes that do not decode, an event without an id): the
    refusal (a dead letter and a ``dead_letter`` event); never raises.
    """
    try:
        if raw is None:
            raise NullRecord(source.topic, source.partition, source.offset)
        name, rec = codec.decode(raw)
        if name == "Verdict":
            return StageOutput()
        if name != "DecisionRecord":
            raise ChainError(f"a decisions record must be a DecisionRecord, got a {name} record")
        events: list[dict[str, Any]] = rec["events"]
        if any(not isinstance(e.get("event_id"), str) or not e["event_id"] for e in events):
            raise ChainError("a decisions record carries an audit event with an empty event_id")
        return StageOutput(audit=events)
    except (CodecError, ChainError, NullRecord, KeyError, TypeError) as exc:
        return refuse(raw, exc, source, "ledger", StageOutput())


@dataclass
class _Partition:
    next_offset: int
    stored: dict[int, StoredDecision]


class DecisionMemory:
    """Stored decisions of inputs that may be delivered again (see the module docstring)."""

    def __init__(self) -> None:
        self._parts: dict[int, _Partition] = {}

    def next_offset(self, partition: int) -> int | None:
        """The offset expected next on ``partition``; ``None`` before its first delivery."""
        state = self._parts.get(partition)
        return None if state is None else state.next_offset

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
