"""``verify --decisions`` and the binding pass per 100,000 actions, next to a bare policy
evaluation baseline from the same run; and the replay memory's size per action id.

Builds a ledger the real decide stage writes (:mod:`tests.factories.decided`: the example
policy as a ``policy`` event, signed proposals decided by the real ``Decider`` — a mix of
allows, rule blocks and shadow matches —, outcomes bound to their verdicts for the allows),
then times, best of ``ROUNDS``:

* baseline: ``CompiledPolicy.evaluate`` of every proposal, already decoded — the floor of
  any re-evaluation;
* ``DecodedLedger.build``: decoding every action, verdict, outcome and policy payload once
  (shared by both passes in ``verify``);
* ``check_bindings``: every hash binding and the one-decision rule;
* ``recheck_decisions``: re-evaluation of every verdict under its recorded policy.

Then the memory of :class:`processors.replay.ActionIds` holding 100,000 ids (tracemalloc).

Run: ``.venv/bin/python -m bench.decisions_bench [actions]`` from the repository root
(it shares the tests' ledger factory). Not part of the test suite.
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

from processors.policy.reevaluate import Reevaluator
from processors.replay import ActionIds
from schemas.codec import get_codec
from tests.factories.decided import DecidedLedger, now_us
from trust.keys import SigningKey
from trust.verify.bindings import check_bindings
from trust.verify.decisions import recheck_decisions
from trust.verify.decoded import DecodedLedger

ROUNDS = 3
SQL = [
    "UPDATE orders SET status = 'x' WHERE id = 1",  # allow (default)
    "SELECT id FROM orders",  # allow, shadow rule matches
    "DELETE FROM orders",  # block (rule)
    "DROP TABLE orders",  # block (rule)
    "SELECT id FROM orders WHERE id = 7 LIMIT 1",  # allow
]


def build(n: int, directory: Path) -> DecidedLedger:
    ledger = DecidedLedger(SigningKey.generate(), directory)
    for i in range(n):
        _, result = ledger.propose(SQL[i % len(SQL)])
        if result.verdict is not None and result.verdict["decision"] == "allow":
            ledger.record_outcome(result)
    return ledger


def best(fn: object, rounds: int = ROUNDS) -> float:
    assert callable(fn)
    fastest = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        fn()
        fastest = min(fastest, time.process_time() - t0)
    return fastest


def replay_memory(n: int) -> float:
    """Bytes per remembered action id, its string included (uuid4 strings, one partition)."""
    ids = ActionIds(1, 3_600_000_000)
    now = now_us()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(n):
        ids.admit({"action_id": str(uuid.uuid4()), "proposed_at": now}, 0, now)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = build(n, Path(tmp))
    built = time.perf_counter() - t0
    codec = get_codec()
    proposals = [codec.decode_as("ProposedAction", e["payload"]) for e in ledger.events if e["kind"] == "action"]
    policy = ledger.policy
    per = 100_000 / n

    baseline = best(lambda: [policy.evaluate(p, authenticated=True, now_us=0) for p in proposals])
    decode = best(lambda: DecodedLedger.build(ledger.events))
    decoded = DecodedLedger.build(ledger.events)
    bindings = best(lambda: check_bindings(decoded))
    recheck = best(lambda: recheck_decisions(decoded, Reevaluator()))
    findings = check_bindings(decoded) + recheck_decisions(decoded, Reevaluator()).findings
    if findings:
        raise SystemExit(f"bench ledger did not verify: {findings[0]}")
    kinds: dict[str, int] = {}
    for located in decoded.verdicts.values():
        v = located[0].record
        kinds[f"{v['decision']}/{v['basis']}"] = kinds.get(f"{v['decision']}/{v['basis']}", 0) + 1

    print(f"actions: {n:,} ({', '.join(f'{k} {c:,}' for k, c in sorted(kinds.items()))}), "
          f"{len(decoded.outcomes):,} outcomes, {len(ledger.events):,} events; built in {built:.1f} s; "
          f"CPU seconds per 100k actions, best of {ROUNDS}")
    print(f"baseline CompiledPolicy.evaluate, decoded proposals: {baseline * per:7.2f} s")
    print(f"DecodedLedger.build (decode every payload once):     {decode * per:7.2f} s")
    print(f"check_bindings (hashes + one decision per action):   {bindings * per:7.2f} s")
    print(f"recheck_decisions (verify --decisions):              {recheck * per:7.2f} s "
          f"({recheck / baseline:.1f}x the baseline)")
    print(f"replay memory: {replay_memory(100_000):.0f} bytes per remembered action id")


if __name__ == "__main__":
    main()
