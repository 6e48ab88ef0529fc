"""The ledger's decision records, decoded once: proposals, verdicts, outcomes, policy versions.

The binding pass (:mod:`trust.verify.bindings`) and the decision re-evaluation
(:mod:`trust.verify.decisions`) read the same records; this index decodes each payload
once and keeps where it sits in the ledger, so their findings name the record. A payload
that does not decode is left out here (the enforcement pass names it
``undecodable_payload``), and so is a second copy of an event id (the coverage pass names
it ``duplicate_event``).

What counts as what:

* a **proposal** is the payload of an ``action`` event (a ProposedAction);
* a **refused replay** is the ProposedAction payload of a ``security`` event whose detail
  starts with :data:`REPLAY_DETAIL` — the decide stage records a proposal it refused as a
  replay there, never as an ``action`` event (:mod:`processors.replay`);
* a **policy version** is the payload of a ``policy`` event: the PolicySet bytes exactly as
  published; its hash is :func:`trust.bindings.policy_sha256` of those bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import get_codec
from schemas.errors import CodecError
from trust.bindings import policy_sha256, record_sha256
from trust.verify.findings import Event

__all__ = ["REPLAY_DETAIL", "DecodedLedger", "Located", "PolicyVersion"]

_DECODED = frozenset({"action", "security", "verdict", "outcome", "policy"})

REPLAY_DETAIL = "replay refused:"
"""How the decide stage's ``security`` event for a refused replay begins its detail."""


@dataclass(frozen=True)
class Located:
    """A decoded record and the ledger event it came from."""

    event: Event
    record: dict[str, Any]

    @property
    def partition(self) -> int | None:
        part = self.event.get("ledger_partition")
        return part if type(part) is int else None

    @property
    def sequence(self) -> int | None:
        seq = self.event.get("sequence")
        return seq if type(seq) is int else None

    @property
    def event_id(self) -> str | None:
        eid = self.event.get("event_id")
        return eid if isinstance(eid, str) else None

    @property
    def order(self) -> tuple[int, int]:
        return (-1 if self.partition is None else self.partition, -1 if self.sequence is None else self.sequence)


@dataclass(frozen=True)
class PolicyVersion:
    """One ``policy`` event: the encoded PolicySet as published, decoded, and its hash."""

    event: Event
    encoded: bytes
    record: dict[str, Any]
    sha256: bytes

    @property
    def recorded_at(self) -> int:
        at = self.event.get("recorded_at")
        return at if type(at) is int else 0


@dataclass
class DecodedLedger:
    """Decision records by action id, policy versions by hash (see the module docstring)."""

    proposals: dict[str, list[Located]] = field(default_factory=dict)
    replays: dict[str, list[Located]] = field(default_factory=dict)
    verdicts: dict[str, list[Located]] = field(default_factory=dict)
    outcomes: list[Located] = field(default_factory=list)
    policies: dict[bytes, PolicyVersion] = field(default_factory=dict)
    _hashes: dict[int, bytes] = field(default_factory=dict)


    @classmethod
    def build(cls, events: Iterable[Event]) -> DecodedLedger:
        codec = get_codec()
        out = cls()
        seen: set[str] = set()
        for ev in events:
            kind, payload, eid = ev.get("kind"), ev.get("payload"), ev.get("event_id")
            if not isinstance(payload, bytes) or kind not in _DECODED:
                continue
            if isinstance(eid, str):
                if eid in seen:
                    continue  # one event stored twice: the coverage pass names a duplicate_event
                seen.add(eid)
            try:
                if kind == "action":
                    rec = codec.decode_as("ProposedAction", payload)
                    out.proposals.setdefault(rec["action_id"], []).append(Located(ev, rec))
                elif kind == "security" and str(ev.get("detail") or "").startswith(REPLAY_DETAIL):
                    rec = codec.decode_as("ProposedAction", payload)
                    out.replays.setdefault(rec["action_id"], []).append(Located(ev, rec))
                elif kind == "verdict":
                    rec = codec.decode_as("Verdict", payload)
                    out.verdicts.setdefault(rec["action_id"], []).append(Located(ev, rec))
                elif kind == "outcome":
                    out.outcomes.append(Located(ev, codec.decode_as("ActionOutcome", payload)))
                elif kind == "policy":
                    rec = codec.decode_as("PolicySet", payload)
                    digest = policy_sha256(payload)
                    out.policies.setdefault(digest, PolicyVersion(ev, payload, rec, digest))
            except CodecError:
                continue
        for items in (*out.proposals.values(), *out.replays.values(), *out.verdicts.values()):
            items.sort(key=lambda loc: loc.order)
        return out

    def sha256(self, located: Located) -> bytes:
        """:func:`trust.bindings.record_sha256` of a located record (computed once)."""
        key = id(located.record)
        found = self._hashes.get(key)
        if found is None:
            found = self._hashes[key] = record_sha256(located.record)
        return found
