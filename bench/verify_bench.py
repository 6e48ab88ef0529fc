"""Ledger chain verification throughput, next to a raw SHA-256 baseline from the same run.

Builds a realistic ledger (Avro-encoded ProposedAction / signed Verdict / ActionOutcome
payloads, chained over a few partitions), then times:

* baseline: ``hashlib.sha256(canonical_bytes + prev_hash)`` over bytes prepared in
  advance — the floor no verifier can beat;
* ``verify_chain``: group, sort, canonicalize, hash, compare, link — the real work.

Run: ``.venv/bin/python -m bench.verify_bench [events]`` (from the repository root: it shares
the tests' ledger builder). Not part of the test suite.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from typing import Any

from tests.factories.ledger import LedgerBuilder
from trust.chain import hashed_bytes
from trust.keys import SigningKey
from trust.verify import verify_chain

PARTITIONS = 4
ROUNDS = 5


def build(n: int) -> list[dict[str, Any]]:
    """``n`` chained events of action/verdict/outcome flows (the tests' ledger builder),
    spread over the partitions and shuffled: storage order is not chain order."""
    ledger = LedgerBuilder(SigningKey.generate())
    i = 0
    while len(ledger.events) < n:
        ledger.flow(partition=i % PARTITIONS)
        i += 1
    events = ledger.events[:n]
    random.Random(1).shuffle(events)
    return events


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    events = build(n)
    avg_payload = sum(len(e["payload"]) for e in events) / n
    prepared = [hashed_bytes(e) + e["prev_hash"] for e in events]

    sha = hashlib.sha256
    baseline = best = float("inf")
    for _ in range(ROUNDS):  # interleaved, best of each: robust to a busy machine
        t0 = time.perf_counter()
        for data in prepared:
            sha(data).digest()
        baseline = min(baseline, time.perf_counter() - t0)
        t0 = time.perf_counter()
        findings, _ = verify_chain(events)
        best = min(best, time.perf_counter() - t0)
        if findings:
            raise SystemExit(f"bench ledger did not verify: {findings[0]}")

    print(
        f"events: {n:,} over {PARTITIONS} partitions, shuffled; avg payload {avg_payload:.0f} B, "
        f"avg hashed input {sum(map(len, prepared)) / n:.0f} B; best of {ROUNDS}"
    )
    print(f"baseline raw sha256 over prepared canonical bytes: {n / baseline:>12,.0f} events/s")
    print(
        f"verify_chain (group + sort + canonicalize + hash + link): {n / best:>12,.0f} events/s "
        f"({baseline / best:.0%} of baseline)"
    )


if __name__ == "__main__":
    main()
