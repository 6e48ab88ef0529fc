"""Read the ledger back the way an auditor would: the replay topics, read_committed, and verify it."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.codec import get_codec
from sinks.ledger_source import load_from_topics
from trust.keys import Keyring, PublicKey
from trust.verify import CoverageRule, Finding, verify_ledger


@dataclass
class Ledger:
    """The committed contents of ``audit`` and ``checkpoints``."""

    events: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]

    @classmethod
    def read(cls, bootstrap: str, prefix: str) -> Ledger:
        events, cps = load_from_topics(bootstrap, prefix)
        return cls(events, cps)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]

    def duplicated_ids(self) -> list[str]:
        return [eid for eid, n in Counter(e["event_id"] for e in self.events).items() if n > 1]

    def uncovered(self) -> list[dict[str, Any]]:
        spans: dict[int, list[tuple[int, int]]] = {}
        for cp in self.checkpoints:
            spans.setdefault(cp["ledger_partition"], []).append((cp["first_sequence"], cp["last_sequence"]))
        return [e for e in self.events
                if not any(a <= e["sequence"] <= b for a, b in spans.get(e["ledger_partition"], []))]

    def verify(self, home: Path, interval_s: float) -> list[Finding]:
        keyring = Keyring([PublicKey.load(home / "keys" / "processor.pub.pem")])
        rule = CoverageRule(int(interval_s * 1e6), time.time_ns() // 1000)
        return verify_ledger(self.events, self.checkpoints, keyring, position_key="_position", coverage=rule)

    def unsound(self, executed: list[str]) -> list[str]:
        """What breaks the ledger's promises for a load whose bodies ``executed`` ran: a body
        without exactly one outcome, an event chained twice, an action recorded twice or
        decided twice (a replay refusal is not a decision), an event no checkpoint covers.
        Empty when sound."""
        problems: list[str] = []
        outcomes = Counter(e["action_id"] for e in self.of_kind("outcome"))
        problems += [f"body ran, {outcomes[a]} outcomes: {a}" for a in executed if outcomes[a] != 1]
        problems += [f"event chained twice: {eid}" for eid in self.duplicated_ids()]
        problems += [f"chain forked at p{p} s{q}" for p, q in self.forked()]
        actions = Counter(e["action_id"] for e in self.of_kind("action"))
        problems += [f"action recorded {n} times: {a}" for a, n in actions.items() if n != 1]
        # A repeated proposal (a replay, or a producer's duplicate while a broker fails over) is
        # refused with a signed block of basis ``replay`` next to the one decision: not a second one.
        codec = get_codec()
        verdicts: dict[str, set[bytes]] = {}
        for e in self.of_kind("verdict"):
            if codec.decode_as("Verdict", e["payload"])["basis"] != "replay":
                verdicts.setdefault(e["action_id"], set()).add(e["payload"])
        problems += [f"action decided {len(v)} times: {a}" for a, v in verdicts.items() if len(v) != 1]
        problems += [f"uncovered p{e['ledger_partition']} s{e['sequence']}" for e in self.uncovered()]
        return problems

    def forked(self) -> list[tuple[int, int]]:
        """``(partition, sequence)`` pairs held by more than one event: the chain forked there."""
        seen = Counter((e["ledger_partition"], e["sequence"]) for e in self.events)
        return sorted(k for k, n in seen.items() if n > 1)

    def deciders(self) -> dict[str, str]:
        """``action id -> processor_id`` of the worker that signed its verdict."""
        codec = get_codec()
        return {e["action_id"]: codec.decode_as("Verdict", e["payload"])["processor_id"]
                for e in self.of_kind("verdict")}
