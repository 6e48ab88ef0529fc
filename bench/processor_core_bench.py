"""The processor's own work per guarded action, without Kafka or Faust, next to its
cryptographic floor measured in the same run.

Why: the end-to-end capacity bench (:mod:`bench.capacity_bench`) measures the worker's
whole CPU per action on a box where broker, sink and load generator compete for two
cores; it cannot say how much of that is ours and how much is framework and transport.
This bench runs exactly the code the worker runs per guarded action, in one process:

* **decide**: :meth:`processors.decider.Decider.decide` on a signed proposal (decode,
  service signature check, one-decision memory, policy, verdict signing and encoding,
  event ids) and the encoding of its stored ``decisions`` record, which carries the audit
  events (:func:`processors.decisions.decision_record`);
* **ledger**: the ledger stage's per-event work on those events and the action's
  outcome: decode the decision records (:func:`processors.decisions.decision_events`),
  :meth:`processors.outcomes.OutcomeRecorder.record`
  (decode, service signature check), :meth:`processors.ledger_writer.LedgerWriter.append`
  (hash chain, dedup window, Merkle log) and the chained events' encoding;
* **floor**: two Ed25519 verifications and one signature over payloads of the same size —
  what any implementation of the same protocol must spend.

It prints CPU microseconds per action (best of ``ROUNDS``; ``time.process_time``).
Proposals are the example policy's mix (allows, rule blocks, shadow matches) from
:mod:`tests.factories.decided`; an outcome is recorded for every allow, as the Guard does.

    .venv/bin/python -m bench.processor_core_bench [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.decisions_bench import ROUNDS, best
from processors.decider import Decider
from processors.decisions import decision_events, decision_record
from processors.ledger_writer import LedgerWriter
from processors.outcomes import OutcomeRecorder
from processors.replay import ActionIds, home_partition
from processors.stage import Source
from schemas.codec import get_codec
from tests.factories.decided import PARTITIONS, DecidedLedger
from trust.keys import SigningKey

SQL = [
    "UPDATE orders SET status = 'x' WHERE id = 1",
    "SELECT id FROM orders",
    "DELETE FROM orders",
    "DROP TABLE orders",
    "SELECT id FROM orders WHERE id = 7 LIMIT 1",
]


class Workload:
    """Signed proposals, and for each allow its outcome bytes, built once."""

    def __init__(self, n: int, directory: Path) -> None:
        self.key = SigningKey.generate()
        self.factory = DecidedLedger(self.key, directory)
        self.codec = get_codec()
        self.proposals: list[bytes] = []
        self.outcomes: list[bytes | None] = []
        for i in range(n):
            raw, result = self.factory.propose(SQL[i % len(SQL)])
            self.proposals.append(raw)
            allowed = result.verdict is not None and result.verdict["decision"] == "allow"
            self.outcomes.append(self.codec.encode("ActionOutcome", self.factory.outcome_record(result))
                                 if allowed else None)

    def decider(self) -> Decider:
        """A fresh decider (empty one-decision memory) with the factory's policy and registry."""
        f = self.factory
        return Decider(self.codec, self.key, "proc-1", lambda _t: f.policy, f.registry,
                       decided=ActionIds(PARTITIONS, 3_600_000_000))

    def decide_all(self) -> list[bytes]:
        """The decide agent's work; returns each action's stored decisions record."""
        decider, codec = self.decider(), self.codec
        stored: list[bytes] = []
        for offset, raw in enumerate(self.proposals):
            part = home_partition(codec.decode_as("ProposedAction", raw)["action_id"], PARTITIONS)
            result = decider.decide(raw, Source("lockgate.actions", part, offset, None))
            assert result.stored is not None
            stored.append(decision_record(codec, offset, result.stored, result.audit))
        return stored

    def ledger_all(self, stored: list[bytes]) -> int:
        """The ledger stage's work on the decisions records and outcomes; returns events chained."""
        codec = self.codec
        writer = LedgerWriter(self.key, "proc-1", checkpoint_every=10**9, checkpoint_interval_s=3600.0,
                              dedup_window=20_000)
        for p in range(PARTITIONS):
            writer.recover(p, [], None)
        recorder = OutcomeRecorder(codec, self.factory.registry)
        chained = 0
        now = time.monotonic()
        for offset, (record, outcome) in enumerate(zip(stored, self.outcomes, strict=True)):
            part = offset % PARTITIONS
            events: list[dict[str, Any]] = decision_events(codec, record,
                                                           Source("lockgate.decisions", part, offset, None)).audit
            if outcome is not None:
                events += recorder.record(outcome, Source("lockgate.outcomes", part, offset, None)).audit
            for ev in events:
                done = writer.append(part, ev, now)
                if done is not None:
                    codec.encode("AuditEvent", done)
                    chained += 1
        return chained


def floor(n: int, key: SigningKey) -> None:
    """Two Ed25519 verifications (proposal, outcome) and one signature (verdict) per action."""
    payload = b"x" * 400
    sig = key.sign(payload)
    public = key.public()
    for _ in range(n):
        public.verify(payload, sig)
        public.verify(payload, sig)
        key.sign(payload)


def main(argv: list[str]) -> int:
    n = int(argv[1]) if len(argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as tmp:
        work = Workload(n, Path(tmp))
        stored = work.decide_all()
        events = work.ledger_all(stored)
        t_floor = best(lambda: floor(n, work.key))
        t_decide = best(work.decide_all)
        t_ledger = best(lambda: work.ledger_all(stored))
    us = 1e6 / n
    print(f"processor core per guarded action, n={n} ({events / n:.2f} ledger events per action), "
          f"CPU µs, best of {ROUNDS}")
    print(f"  Ed25519 floor (2 verify + 1 sign)   {t_floor * us:8.0f}   (baseline)")
    print(f"  decide (+ decision record encoding) {t_decide * us:8.0f}")
    print(f"  ledger (decision, outcome, chain)   {t_ledger * us:8.0f}")
    print(f"  total                               {(t_decide + t_ledger) * us:8.0f}   "
          f"= {(t_decide + t_ledger) / t_floor:.1f}x the floor")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
