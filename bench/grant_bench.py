"""Time-boxed review grants: what a grant costs on the decision path and at a worker's restart.

Builds ``N`` approved ``grant: window`` reviews (proposal, pending verdict, one signed vote,
the signed final verdict: the four records each leaves on the reviews topic) for ``N / 10``
requesters, then times, best of ``ROUNDS``:

* baseline: :func:`processors.reviews.requests.hold_for_review` holding a review decision
  with no grant index (what every such action cost before grants);
* the same with the full :class:`processors.reviews.grants.GrantIndex`, for a requester that
  holds 10 grants: lookup, coverage check, the allow;
* the rebuild: folding all ``4 N`` records into a fresh index (what a restarted worker does
  before it allows anything by grant; its reviews-topic read is not included).

Run: ``.venv/bin/python -m bench.grant_bench [reviews]`` from the repository root (it shares
the unit tests' review fixtures). Not part of the test suite.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from processors.reviews.grants import GrantIndex
from processors.reviews.requests import hold_for_review
from tests.unit.trust.review_fixtures import NOW, WINDOW_RULE, decision, proposal, reviews_topic, world

ROUNDS = 3
CALLS = 20_000


def best(fn: Any, rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        w = world(Path(tmp))
        records: list[bytes] = []
        started = time.perf_counter()
        for i in range(n):
            rec = proposal(f"user-{i % max(1, n // 10)}@corp.example")
            rec["resource"] = f"db/prod/t{i}"
            made, _ = reviews_topic(w, rec, closed_at=NOW + 20 + i)
            records.extend(made)
        print(f"built {n} approved window reviews ({len(records)} records) in {time.perf_counter() - started:.1f} s")

        def fold() -> GrantIndex:
            index = GrantIndex(w.ring, w.registry)
            index.reset([0])
            for raw in records:
                index.apply(0, raw, NOW + 5)
            index.at_end(0)
            return index

        index = fold()
        assert len(index.grants()) == n, len(index.grants())
        later = {**proposal("user-0@corp.example"), "resource": "db/prod/orders"}
        held_decision = decision(rule=WINDOW_RULE)
        at = NOW + 30 + n
        assert hold_for_review(later, held_decision, at, index).decision.decision == "allow"
        assert hold_for_review(later, held_decision, at).decision.decision == "review"

        base = best(lambda: [hold_for_review(later, held_decision, at) for _ in range(CALLS)]) / CALLS
        granted = best(lambda: [hold_for_review(later, held_decision, at, index) for _ in range(CALLS)]) / CALLS
        rebuild = best(fold, rounds=1)
        print(f"hold_for_review, no grant index (baseline): {base * 1e6:.1f} µs per action")
        print(f"hold_for_review, allowed by grant ({n} grants, 10 for this requester): {granted * 1e6:.1f} µs "
              "per action")
        print(f"rebuild: fold {len(records)} records into a fresh index: {rebuild:.2f} s "
              f"({rebuild / n * 1e6:.0f} µs per review)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
