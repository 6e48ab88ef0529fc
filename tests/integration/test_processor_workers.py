"""Two processor workers share the partitions; kill -9 one under load and hold the ledger to its promises.

Real broker, two real worker processes in one consumer group (what ``lockgate up
--processors 2`` runs), a real AsyncGuard with many actions in flight. Checked:

* the load flows through both workers: each signs verdicts (``processor_id``);
* worker 2 is killed with SIGKILL mid-load and not restarted: worker 1 takes its
  partitions after the session timeout, and the last actions of the load are all answered;
* during the gap every guard fails closed within its timeout — none hangs;
* the ledger read back ``read_committed``: every body that ran has exactly one outcome, no
  event chained twice, no action recorded or decided twice, every event checkpointed
  (the dead worker's uncovered events by its successor), ``verify`` finds nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from processors.app import _app_id, faust_instance_id
from tests.integration.conftest import (
    ProcessorHandle,
    fresh_topics,
    start_processor,
    stop_processor,
    wait_for,
    wait_until_deciding,
)
from tests.integration.guarded_load import guarded_load
from tests.integration.ledger_readback import Ledger

pytestmark = pytest.mark.integration

ACTIONS = 600
IN_FLIGHT = 16
KILL_AFTER = 150  # completed actions at which worker 2 is killed
LAST = 100  # the load's last actions: all answered once worker 1 took over
TIMEOUT_S = 4.0
SLACK_S = 2.0  # event-loop and scheduling delay on a loaded 2-core box
SESSION_TIMEOUT_S = 6  # the broker's minimum (group.min.session.timeout.ms)
CHECKPOINT_INTERVAL_S = 1.0
REFUSED = "refused: no verdict (fail-closed)"


def _members(bootstrap: str, group: str) -> dict[str, int]:
    """``worker (processor id, or the member id of a stranger) -> partitions assigned`` in the workers' group."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    by_id = {m.group_instance_id or m.member_id: len(m.assignment.topic_partitions) for m in described.members}
    workers = {faust_instance_id(w): w for w in ("processor-1", "processor-2")}
    return {workers.get(member, member): n for member, n in by_id.items()}


def _start(bootstrap: str, home: Path, prefix: str, tmp_path: Path, worker: int) -> ProcessorHandle:
    return start_processor(bootstrap, home, prefix, tmp_path / f"processor-{worker}.log", extra_env={
        "LOCKGATE_PROCESSOR_ID": f"processor-{worker}",
        "LOCKGATE_PROCESSOR_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S)})


def test_two_workers_share_the_load_and_one_survives_the_others_kill_9(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = fresh_topics(kafka_bootstrap, "w").prefix
    home = tmp_path / "home"
    one = _start(kafka_bootstrap, home, prefix, tmp_path, 1)
    two: ProcessorHandle | None = None
    try:
        two = _start(kafka_bootstrap, home, prefix, tmp_path, 2)
        group = _app_id(prefix)
        shared = wait_for(lambda: (m := _members(kafka_bootstrap, group)).get("processor-1", 0) > 0
                          and m.get("processor-2", 0) > 0 and m, 90, "both workers holding partitions")
        wait_until_deciding(one)
        killed: list[float] = []

        def after(done: int) -> None:
            if not killed and done >= KILL_AFTER and two is not None:
                two.proc.kill()  # the supervisor; its worker child dies with it (PDEATHSIG)
                killed.append(time.monotonic())

        timeline: list[tuple[float, str, float]] = []
        executed, results = asyncio.run(guarded_load(one.guard_settings(timeout_s=TIMEOUT_S), ACTIONS,
                                                     IN_FLIGHT, after, timeline))
        assert killed, "worker 2 was not killed mid-load"
        assert two.proc.wait(10) is not None

        # Fail closed, never hang: every guard had its verdict or its refusal within the timeout.
        slow = [(round(t - killed[0], 1), how, round(w, 2)) for t, how, w in timeline if w > TIMEOUT_S + SLACK_S]
        assert slow == [], f"guards waited past their timeout: {slow[:10]}"
        gap = [t for t, how, _ in timeline if how == REFUSED]
        assert gap, f"no guard noticed the dead worker's partitions: {dict(results)}"
        assert all(how != REFUSED for _, how, _ in timeline[-LAST:]), \
            f"worker 1 did not take over: {Counter(how for _, how, _ in timeline[-LAST:])}"
        alone = _members(kafka_bootstrap, group)
        assert list(alone) == ["processor-1"] and alone["processor-1"] > shared["processor-1"], (shared, alone)

        def outcomes_landed() -> Ledger | None:
            ledger = Ledger.read(kafka_bootstrap, prefix)
            got = {e["action_id"] for e in ledger.of_kind("outcome")}
            return ledger if got >= set(executed) and not ledger.uncovered() else None

        try:
            ledger = wait_for(outcomes_landed, 90, "every outcome chained and every event checkpointed")
        except AssertionError as exc:
            late = Ledger.read(kafka_bootstrap, prefix)
            raise AssertionError(f"{exc}; sequences chained twice (a fork): {late.forked()[:10]}; "
                                 f"{late.unsound(executed)[:10]}") from exc
        assert ledger.unsound(executed) == []
        deciders = Counter(ledger.deciders().values())
        assert deciders["processor-1"] > 0 and deciders["processor-2"] > 0, deciders
        findings = ledger.verify(home, CHECKPOINT_INTERVAL_S)
        assert findings == [], [f"{f.kind} p{f.partition} s{f.sequence}: {f.message}" for f in findings[:10]]
        print(f"\n{ACTIONS} actions, worker 2 killed after {KILL_AFTER}: {dict(results)}; verdicts by "
              f"{dict(deciders)}; fail-closed gap {max(gap) - killed[0]:.1f}s after the kill; "
              f"longest wait {max(w for _, _, w in timeline):.2f}s (timeout {TIMEOUT_S}s)")
    finally:
        if two is not None and two.proc.poll() is None:
            stop_processor(two)
        stop_processor(one)

