"""kill -9 the processor under load, twice, and hold the ledger to its promises.

Real broker, real worker processes, a real AsyncGuard with many actions in flight. The
worker is killed (SIGKILL: no shutdown, no final commit, open transactions left behind)
in the middle of the load and restarted while the load goes on. Afterwards, read back
from the replay topics with ``read_committed``:

* every guarded body that ran has exactly one outcome in the ledger;
* every proposal on ``actions`` is in the ledger (an ``action`` event, or the ``security``
  event of a replay refusal), including those Faust's consumer dropped around a restart
  without handing them (``processors/input_gaps.py``; seen on every partition in kill -9
  runs, though not in every run);
* no event id is chained twice, no action is in the ledger twice, no action has two
  different verdicts (nothing was decided a second time);
* every event is covered by a signed checkpoint within a bounded wait;
* ``verify`` finds nothing (chain, checkpoints, duplicates, coverage, enforcement);
* the restarted worker resumed partitions from their newest checkpoint's frontier (the
  log says so), so the kill -9 path above is the one production takes.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from lockgate.kernel.partition_reader import committed_reader, read_partition
from schemas.codec import get_codec
from schemas.topics import CATALOGUE, Topics
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

ACTIONS = 1000
IN_FLIGHT = 16
KILL_AFTER = (200, 600)  # completed actions at which the worker is killed
CHECKPOINT_INTERVAL_S = 1.0
INTAKE_PARTITIONS = next(t.partitions for t in CATALOGUE if t.name == "audit-intake")
ACTIONS_PARTITIONS = next(t.partitions for t in CATALOGUE if t.name == "actions")


class _Workers:
    """The processor under test: killed and restarted from a thread while the load runs."""

    def __init__(self, bootstrap: str, home: Path, prefix: str, log: Path) -> None:
        self.args = (bootstrap, home, prefix, log)
        self.handle = start_processor(*self.args)
        self.recoveries: list[float] = []
        self.errors: list[BaseException] = []

    def kill_and_restart(self) -> None:
        try:
            self.handle.proc.kill()
            self.handle.proc.wait(30)
            started = time.monotonic()
            self.handle = start_processor(*self.args)
            wait_until_deciding(self.handle)
            self.recoveries.append(time.monotonic() - started)
        except BaseException as exc:
            self.errors.append(exc)


def _load(handle: ProcessorHandle, workers: _Workers) -> tuple[list[str], Counter[str]]:
    """The shared load; the worker is killed (from a thread) at each of ``KILL_AFTER``."""
    kills: list[threading.Thread] = []

    def after(done: int) -> None:
        if len(kills) < len(KILL_AFTER) and done >= KILL_AFTER[len(kills)]:
            kills.append(threading.Thread(target=workers.kill_and_restart))
            kills[-1].start()

    executed, results = asyncio.run(guarded_load(handle.guard_settings(timeout_s=4.0), ACTIONS, IN_FLIGHT, after))
    for t in kills:
        t.join(120)
    return executed, results


def _intake_ids(bootstrap: str, topics: Topics) -> list[str]:
    """Event ids of every event sent to the ledger, on audit-intake and in stored decisions
    (repeats included: the upstream is at-least-once)."""
    codec = get_codec()
    consumer = committed_reader(bootstrap, "test-intake")
    try:
        intake = [codec.decode_as("AuditEvent", r.value or b"")["event_id"]
                  for p in range(INTAKE_PARTITIONS) for r in read_partition(consumer, topics.audit_intake, p)]
        decided = [e["event_id"] for p in range(INTAKE_PARTITIONS)
                   for r in read_partition(consumer, topics.decisions, p)
                   for e in codec.decode_as("DecisionRecord", r.value or b"")["events"]]
        return intake + decided
    finally:
        consumer.close()


def _proposed_ids(bootstrap: str, topics: Topics) -> set[str]:
    """The action id of every proposal on ``actions``."""
    codec = get_codec()
    consumer = committed_reader(bootstrap, "test-actions")
    try:
        return {codec.decode_as("ProposedAction", r.value or b"")["action_id"]
                for p in range(ACTIONS_PARTITIONS) for r in read_partition(consumer, topics.actions, p)}
    finally:
        consumer.close()


def test_kill_9_mid_load_duplicates_nothing_loses_nothing_and_leaves_nothing_unprovable(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = fresh_topics(kafka_bootstrap, "k")
    prefix = topics.prefix
    home = tmp_path / "home"
    workers = _Workers(kafka_bootstrap, home, prefix, tmp_path / "processor.log")
    try:
        wait_until_deciding(workers.handle)
        started = time.monotonic()
        executed, results = _load(workers.handle, workers)
        load_s = time.monotonic() - started
        assert workers.errors == []
        assert len(workers.recoveries) == len(KILL_AFTER), "the worker was not killed mid-load"
        assert len(executed) >= ACTIONS // 2, results

        proposed = _proposed_ids(kafka_bootstrap, topics)
        assert len(proposed) >= ACTIONS

        missing: dict[str, object] = {}

        def outcomes_landed() -> Ledger | None:
            ledger = Ledger.read(kafka_bootstrap, prefix)
            got = {e["action_id"] for e in ledger.of_kind("outcome")}
            recorded = {e["action_id"] for e in ledger.of_kind("action") + ledger.of_kind("security")}
            missing.update(outcomes=sorted(set(executed) - got), proposals=sorted(proposed - recorded),
                           uncovered=len(ledger.uncovered()))
            return ledger if not any(missing.values()) else None

        try:
            ledger = wait_for(outcomes_landed, 90,
                              "every outcome and every proposal chained and every event checkpointed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; missing: {missing}") from None
        # One outcome per body that ran; nothing chained, recorded or decided twice; no fork;
        # every event checkpointed.
        assert ledger.unsound(executed) == []
        findings = ledger.verify(home, CHECKPOINT_INTERVAL_S)
        assert findings == [], [f"{f.kind} p{f.partition} s{f.sequence}: {f.message}" for f in findings[:10]]
        log = (tmp_path / "processor.log").read_text(errors="replace")
        intake = Counter(_intake_ids(kafka_bootstrap, topics))
        repeats = sum(n - 1 for n in intake.values())
        resent = sum(int(n) for n in re.findall(r"(\d+) stored decision\(s\) to re-send", log))
        covered = sum(int(n) for n in re.findall(r"(\d+) uncovered event\(s\) to checkpoint", log))
        never_handed = sum(int(n) for n in re.findall(r"\((\d+) record\(s\)\) were never handed", log))
        never_handed += sum(int(n) for n in re.findall(r"decided (\d+) record\(s\) the consumer never handed", log))
        # Killed hundreds of actions in, with checkpoints every second, the restarted worker
        # resumes partitions from their newest checkpoint's frontier, not by re-reading them.
        resumed = re.findall(r"recovered in [0-9.]+s from the frontier of checkpoint size (\d+)", log)
        assert resumed, "no partition was recovered from a checkpoint's frontier"
        print(f"\n{ACTIONS} actions in {load_s:.1f}s with {len(KILL_AFTER)} kills: {dict(results)}; "
              f"{len(ledger.events)} ledger events, {len(ledger.checkpoints)} checkpoints; "
              f"restart to first verdict {', '.join(f'{r:.1f}s' for r in workers.recoveries)}; "
              f"after the kills {resent} stored verdict(s) re-sent, {repeats} re-processed intake "
              f"event(s) dropped as repeats, {covered} event(s) a dead worker left uncovered checkpointed "
              f"by its successor; {len(resumed)} partition recovery(ies) from a checkpoint's frontier; "
              f"{never_handed} proposal(s) the consumer never handed decided by the agent")
    finally:
        stop_processor(workers.handle)
