"""The review inbox: how soon a held action shows, and what a vote from it costs.

Needs the local stack (``lockgate up``; the example policy applied). For N production
DELETEs held by the example review rule, measures

* **shows**: pending verdict received by the Guard → listed by the sink's ``/api/reviews``;
* **API vote**: ``POST /api/reviews/{id}/vote`` round trip (sign, publish, read the
  judgement back from the sink's live fold) — alternating with the baseline, in the same
  run, the **CLI vote** path (:func:`lockgate.cli.reviews.vote_on_topic`: folds the whole
  reviews topic before and after publishing, as ``lockgate reviews approve`` does);
* **runs**: vote answered → the waiting Guard holds the final ``allow``.

    .venv/bin/python -m bench.review_inbox_bench [N]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import urllib.request
import uuid

from deploy.settings import StackSettings
from lockgate.cli.reviews import vote_on_topic
from lockgate.kernel.home import Home
from producers import Action, Actor, Guard, GuardSettings
from sinks.tokens import create_token
from trust.reviewers import ReviewerRegistry


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main(n: int) -> None:
    s = StackSettings()
    name = f"bench-{uuid.uuid4().hex[:6]}"
    ReviewerRegistry(Home(s.home).keys).add_reviewer(name, ["dba"])
    _info, token = create_token(s.home, "default", label="review inbox bench", reviewer=name)
    api = f"http://127.0.0.1:{s.api_port}"

    def listed(review_id: str) -> bool:
        req = urllib.request.Request(f"{api}/api/reviews", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return any(r["review_id"] == review_id for r in json.loads(resp.read())["pending"])

    def api_vote(review_id: str) -> dict[str, object]:
        req = urllib.request.Request(f"{api}/api/reviews/{review_id}/vote", method="POST",
                                     data=json.dumps({"vote": "approve", "reason": "bench"}).encode(),
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            out: dict[str, object] = json.loads(resp.read())
            return out

    shows: list[float] = []
    votes: dict[str, list[float]] = {"api": [], "cli": []}
    runs: list[float] = []
    settings = GuardSettings(bootstrap_servers=s.bootstrap, topic_prefix=s.topic_prefix, home=s.home,
                             timeout_s=15.0)
    with Guard(settings) as guard:
        for i in range(n):
            pending = guard.request(Action(Actor(f"carol-{i}", ("dev",)), "db.query", "db/prod/customers",
                                           {"sql": "DELETE FROM customers WHERE id = 7"},
                                           justification=f"bench {i}"))
            review_id = str(pending.verdict.review_id)
            t0 = time.perf_counter()
            while not listed(review_id):
                time.sleep(0.005)
            shows.append(time.perf_counter() - t0)
            path = "api" if i % 2 == 0 else "cli"
            t0 = time.perf_counter()
            if path == "api":
                outcome = api_vote(review_id)["outcome"]
            else:
                outcome = vote_on_topic(s.bootstrap, s.topics.reviews, s.home, name, review_id, "approve",
                                        "bench").outcome
            votes[path].append(time.perf_counter() - t0)
            if outcome != "accepted":
                raise RuntimeError(f"the vote was {outcome}: a bench that measured a refusal measured nothing")
            t0 = time.perf_counter()
            final = pending.wait(60)
            runs.append(time.perf_counter() - t0)
            if final.decision != "allow":
                raise RuntimeError(f"the review ended {final.decision}: {final.reason}")

    def line(label: str, xs: list[float]) -> str:
        return (f"{label:<34} n={len(xs):<4} p50 {pct(xs, .5):7.1f} ms  p95 {pct(xs, .95):7.1f} ms  "
                f"mean {statistics.mean(xs) * 1000:7.1f} ms")

    print(line("held → listed by /api/reviews", shows))
    print(line("vote via the inbox API", votes["api"]))
    print(line("vote via the CLI path (baseline)", votes["cli"]))
    print(line("vote answered → Guard has allow", runs))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
