"""A three-node Kafka cluster (``lockgate up --brokers 3``): kill -9 one node under load, lose nothing.

The stack starts a real three-node KRaft cluster on this machine; the catalogue's topics get
three replicas and ``min.insync.replicas`` 2. A real processor worker and a real AsyncGuard
with many actions in flight run against it. Mid-load the node leading ``actions[0]`` (so the
decision path must fail over) is killed with SIGKILL and stays dead. Checked:

* every guard got its verdict or failed closed within its timeout;
* the two surviving nodes carry the load: once a probe is decided again, a second load
  (no kill) is decided in full, none refused;
* no acknowledged record was lost: every body that ran has exactly one outcome in the
  ledger, nothing is chained twice, every event is checkpointed, ``verify`` is clean —
  which needs the ledger stage's transactions to go on after the node's death (its
  ``send_offsets_to_transaction`` used to block for good when the dead node had been the
  ledger group's coordinator; see ``processors/ledger_stage.py``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from deploy.settings import StackSettings
from deploy.stack import Stack
from processors.policy.files import load_policy_file
from processors.policy.store import publish_policy
from tests.conftest import free_port
from tests.integration.conftest import EXAMPLE_POLICY, start_processor, stop_processor, wait_for, wait_until_deciding
from tests.integration.guarded_load import guarded_load
from tests.integration.ledger_readback import Ledger

pytestmark = pytest.mark.integration

ACTIONS = 300
IN_FLIGHT = 16
KILL_AFTER = 100
AFTER = 100  # actions run once the survivors decide again: every one must be decided
TIMEOUT_S = 5.0
SLACK_S = 2.0  # event-loop and scheduling delay on a loaded 2-core box
CHECKPOINT_INTERVAL_S = 1.0
REFUSED = "refused: no verdict (fail-closed)"


def test_kill_9_of_one_broker_of_three_under_load_loses_nothing(tmp_path: Path) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}."
    settings = StackSettings(home=tmp_path / "home", brokers=3, kafka_port=free_port(), controller_port=free_port(),
                             api_port=free_port(), processor_port=free_port(), topic_prefix=prefix,
                             kafka_heap="256m", start_processor=False, start_sink=False)
    stack = Stack(settings, progress=lambda _m: None)
    processor = None
    try:
        stack.up()
        bootstrap = stack.bootstrap
        nodes = [c for c in stack.status()["components"] if c["name"].startswith("kafka")]
        assert [(c["name"], c["running"]) for c in nodes] == [("kafka", True), ("kafka-2", True), ("kafka-3", True)]
        admin = AdminClient({"bootstrap.servers": bootstrap})
        md = admin.list_topics(timeout=10).topics
        assert {len(p.replicas) for t in settings.topics.specs() for p in md[t[0]].partitions.values()} == {3}
        audit = ConfigResource(ConfigResource.Type.TOPIC, settings.topics.audit)
        assert admin.describe_configs([audit])[audit].result(10)["min.insync.replicas"].value == "2"

        publish_policy(load_policy_file(EXAMPLE_POLICY), bootstrap, settings.topics, published_by="tests")
        processor = start_processor(bootstrap, settings.home, prefix, tmp_path / "processor.log")
        wait_until_deciding(processor)
        leader = md[settings.topics.actions].partitions[0].leader
        victim = stack.broker.nodes[leader - 1]
        pid = victim.process.pid()
        assert pid is not None
        killed: list[float] = []

        def after(done: int) -> None:
            if not killed and done >= KILL_AFTER:
                os.kill(pid, signal.SIGKILL)
                killed.append(time.monotonic())

        timeline: list[tuple[float, str, float]] = []
        executed, results = asyncio.run(guarded_load(processor.guard_settings(timeout_s=TIMEOUT_S), ACTIONS,
                                                     IN_FLIGHT, after, timeline))
        assert killed, "no broker was killed mid-load"
        assert wait_for(lambda: victim.process.exited() is not None, 10, "the killed node reaped")
        refused = [t - killed[0] for t, how, _ in timeline if how == REFUSED]
        print(f"\n{ACTIONS} actions, node {leader} (leader of actions[0]) killed after {KILL_AFTER}: "
              f"{dict(results)}; refusals {min(refused, default=0):.1f} to {max(refused, default=0):.1f}s after "
              f"the kill; longest wait {max(w for _, _, w in timeline):.2f}s (timeout {TIMEOUT_S}s)")
        slow = [(round(t - killed[0], 1), how, round(w, 2)) for t, how, w in timeline if w > TIMEOUT_S + SLACK_S]
        assert slow == [], f"guards waited past their timeout: {slow[:10]}"

        wait_until_deciding(processor)
        after_kill, results_after = asyncio.run(guarded_load(processor.guard_settings(timeout_s=TIMEOUT_S), AFTER,
                                                             IN_FLIGHT, lambda _done: None))
        print(f"then {AFTER} actions on the two survivors: {dict(results_after)}")
        assert results_after[REFUSED] == 0, f"the two surviving nodes did not carry the load: {results_after}"
        executed += after_kill

        seen: list[str] = []

        def outcomes_landed() -> Ledger | None:
            ledger = Ledger.read(bootstrap, prefix)
            got = {e["action_id"] for e in ledger.of_kind("outcome")}
            missing, uncovered = set(executed) - got, ledger.uncovered()
            seen[:] = [f"{len(missing)} outcomes missing (e.g. {sorted(missing)[:3]}), {len(uncovered)} events "
                       f"uncovered, {len(ledger.events)} events"]
            return ledger if not missing and not uncovered else None

        # The ledger stage resumes seconds after the death; the bound only matters when it does not.
        try:
            ledger = wait_for(outcomes_landed, 120, "every outcome chained and every event checkpointed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {seen}") from None
        assert ledger.unsound(executed) == []
        findings = ledger.verify(settings.home, CHECKPOINT_INTERVAL_S)
        assert findings == [], [f"{f.kind} p{f.partition} s{f.sequence}: {f.message}" for f in findings[:10]]
        replays = sum(e["detail"].startswith("replay refused") for e in ledger.of_kind("security"))
        print(f"{len(ledger.events)} ledger events ({replays} repeated proposal(s) refused as replays), all "
              f"chained and checkpointed {time.monotonic() - killed[0]:.1f}s after the kill; worker restarts: "
              f"{processor.log.read_text(errors='replace').count('worker exited with status')}")
    finally:
        if processor is not None:
            stop_processor(processor)
        stack.down()
