"""End-to-end lag: from a verdict reaching the Guard to the action being queryable in ClickHouse.

Needs the local stack (``lockgate up``, example policy applied). Sends N guarded actions,
notes when each verdict arrived, then polls the sink's API and notes when each action's
row (with its verdict) became visible. Baseline in the same run: the API round trip of the
same query (the floor any "queryable" measurement carries).

    .venv/bin/python bench/e2e_lag_bench.py [N]
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
import urllib.request
import uuid

from deploy.settings import StackSettings
from producers import Action, Actor, Guard, GuardSettings
from sinks.tokens import create_token, revoke_token


def get(url: str, token: str) -> dict[str, object]:
    req = urllib.request.Request(url)
    req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        body: dict[str, object] = json.loads(resp.read())
        return body


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    s = StackSettings()
    api = f"http://127.0.0.1:{s.api_port}"
    info, token = create_token(s.home, "default", label="e2e lag bench")
    actor = f"lag-{uuid.uuid4().hex[:8]}"
    query = f"{api}/api/actions?actor={actor}&since=1h&limit=1000"
    try:
        floor = []
        for _ in range(20):
            t = time.perf_counter()
            get(query, token)
            floor.append(time.perf_counter() - t)
        decided: dict[str, float] = {}
        seen: dict[str, float] = {}
        stop = threading.Event()

        def poll() -> None:
            # Polls while actions are still being sent, so every lag is measured as it happens.
            while not stop.is_set():
                rows = get(query, token)["actions"]
                now = time.perf_counter()
                for row in rows:  # type: ignore[attr-defined]
                    aid = row["action_id"]
                    if aid not in seen and row.get("has_verdict"):
                        seen[aid] = now
                time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        settings = GuardSettings(bootstrap_servers=s.bootstrap, topic_prefix=s.topic_prefix, home=s.home)
        with Guard(settings) as guard:
            for i in range(n):
                v = guard.check(Action(Actor(actor), "deploy", f"env/staging/{i}"))
                decided[v.action_id] = time.perf_counter()
                time.sleep(0.01)
        deadline = time.monotonic() + 60
        while not set(decided) <= set(seen) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        poller.join()
        # An action can be seen before check() returned (the row landed first): lag 0.
        lags = sorted(max(0.0, seen[a] - decided[a]) for a in decided if a in seen)
    finally:
        revoke_token(s.home, info.token_id)
    if not lags:
        print("no action became queryable within 60 s")
        return
    def p(q: float) -> float:
        return lags[min(len(lags) - 1, int(q * len(lags)))] * 1000

    print(f"verdict -> queryable, {len(lags)}/{n} actions (ms): p50 {p(.5):.0f}  p95 {p(.95):.0f}  "
          f"p99 {p(.99):.0f}  max {lags[-1] * 1000:.0f}")
    print(f"baseline: API round trip of the same query (ms): median {statistics.median(floor) * 1000:.1f}")


if __name__ == "__main__":
    main()
