"""What ``verify --since`` pays to judge outcomes whose verdict lies before its window.

Builds one partition in which ``n`` actions are proposed and decided (signed allows), a
legacy interval checkpoint is signed, and then the ``n`` committed outcomes follow: the worst
case, every outcome in the window answered by a verdict from before it. Writes it through the
sink's own writer into an embedded ClickHouse, then times, best of a few rounds:

* the window read (``events_from`` the anchor with derived columns, what ``--since`` reads;
  the baseline) and ``DecodedLedger.build`` of it (every run does this);
* finding the unanswered actions (``unanswered_actions``) and reading their verdicts by
  action id (``verdict_events``: ``IN`` over a bound array, :data:`sinks.ledger_source.ID_BATCH`
  ids a query);
* ``reconcile_enforcement`` over the window alone vs with those verdicts as context.

Wall-clock and CPU time per step (this box is shared: CPU time moves less).

Run: ``.venv/bin/python -m bench.since_verdicts_bench [outcomes]`` from the repository root.
Not part of the test suite.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

from bench.timing import best_of
from schemas.codec import get_codec
from sinks.clickhouse import connect
from sinks.ledger_source import ID_BATCH, ClickHouseSource
from sinks.migrations import migrate
from sinks.writer import BatchWriter
from tests.factories.ledger import T0, outcome, proposed_action, unchained, verdict
from trust.chain import Chain
from trust.keys import Keyring, SigningKey
from trust.verify import DecodedLedger, reconcile_enforcement, unanswered_actions

ROUNDS = 3


def _ledger(n: int, key: SigningKey) -> tuple[list[dict[str, Any]], int]:
    """``n`` proposals and allows, then their ``n`` outcomes; returns the events and the
    sequence the window starts at (the first outcome)."""
    codec = get_codec()
    chain = Chain()
    events: list[dict[str, Any]] = []
    embedded: list[tuple[str, bytes]] = []
    t = T0
    for _ in range(n):
        aid = str(uuid.uuid4())
        t += 10
        events.append(chain.append(unchained("action", codec.encode("ProposedAction", proposed_action(aid, t)),
                                             t, aid), 0))
        v = codec.encode("Verdict", verdict(aid, "allow", t + 1, key))
        events.append(chain.append(unchained("verdict", v, t + 1, aid), 0))
        embedded.append((aid, v))
    anchor = len(events)
    for aid, v in embedded:
        t += 10
        events.append(chain.append(unchained("outcome", codec.encode("ActionOutcome", outcome(aid, t, v)),
                                             t, aid), 0))
    return events, anchor


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    key = SigningKey.generate()
    ring = Keyring([key.public()])
    events, anchor = _ledger(n, key)
    rows: list[tuple[str, float, float]] = []

    def step(label: str, fn: Callable[[], Any]) -> Any:
        wall, cpu, result = best_of(fn, ROUNDS)
        rows.append((label, wall, cpu))
        return result

    with tempfile.TemporaryDirectory(prefix="lockgate-sincebench-") as tmp:
        client = connect(f"chdb://{tmp}", "bench")
        migrate(client)
        writer = BatchWriter(client, {"audit": "audit"})
        for off, ev in enumerate(events):
            writer.add("audit", 0, off, ev)
        writer.flush()
        source = ClickHouseSource(client)
        window = step("read the window, with columns (baseline)",
                      lambda: source.events_from({0: anchor}, columns=True))
        decoded = step("DecodedLedger.build of the window (baseline)", lambda: DecodedLedger.build(window))
        wanted = step("unanswered_actions", lambda: unanswered_actions(decoded))
        earlier = step(f"verdict_events by action id ({ID_BATCH} a query)", lambda: source.verdict_events(wanted))
        client.close()
    alone = step("reconcile_enforcement, window alone", lambda: reconcile_enforcement(window, ring))
    judged = step("reconcile_enforcement, with context", lambda: reconcile_enforcement(
        window, ring, context_verdicts=earlier))
    if len(window) != n or len(wanted) != n or len(earlier) != n or len(alone) != n or judged:
        raise SystemExit(f"unexpected: window {len(window)}, wanted {len(wanted)}, read {len(earlier)}, "
                         f"findings alone {len(alone)}, with context {len(judged)}")

    print(f"{n:,} outcomes in the window, each verdict before it ({len(events):,} events); best of {ROUNDS}")
    print(f"{'step':<50} {'wall s':>7} {'cpu s':>7}")
    for label, wall, cpu in rows:
        print(f"{label:<50} {wall:7.3f} {cpu:7.3f}")
    t = {label.split(" (")[0]: (wall, cpu) for label, wall, cpu in rows}
    base = t["read the window, with columns"][0] + t["DecodedLedger.build of the window"][0] + \
        t["reconcile_enforcement, window alone"][0]
    extra = t["unanswered_actions"][0] + t["verdict_events by action id"][0] + \
        t["reconcile_enforcement, with context"][0] - t["reconcile_enforcement, window alone"][0]
    print(f"extra wall time for the earlier verdicts: {extra:.3f} s on top of {base:.3f} s "
          f"(read + decode + enforcement of the window), {1e6 * extra / n:.0f} µs per outcome")


if __name__ == "__main__":
    main()
