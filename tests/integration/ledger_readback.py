"""Read the ledger back the way an auditor would: the replay topics, read_committed, and verify it."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
