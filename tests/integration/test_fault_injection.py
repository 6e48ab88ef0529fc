"""kill -9 the broker or the sink in the middle of 1,000 guarded actions, and hold every promise.

The whole path is real and runs on a broker of the test's own (the session broker is never
killed): a processor worker, a sink on its own embedded ClickHouse directory, an AsyncGuard
with many actions in flight whose outcomes go through the durable spool. Mid-load one
component gets SIGKILL (no shutdown, nothing flushed) and is started again while the load
goes on. The processor's own kill -9 is ``test_processor_crash.py``. Afterwards:

* every guarded body that ran has exactly one outcome in the ledger (read back
  ``read_committed`` from the replay topics);
* no event id is chained twice, no action is decided twice;
* every event is covered by a signed checkpoint, ``verify`` finds nothing;
* the store holds every ledger event exactly once (the sink lost and duplicated nothing).

Figures go to ``docs/reliability.md``; they are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from deploy.stack import Stack
from processors.policy.files import load_policy_file
from processors.policy.store import publish_policy
from producers import Guard, GuardSettings
from tests.integration.conftest import EXAMPLE_POLICY, start_processor, stop_processor, wait_for, wait_until_deciding
from tests.integration.guarded_load import guarded_load
from tests.integration.ledger_readback import Ledger
from tests.integration.own_broker import kill_broker, own_stack
from tests.integration.sink_process import SinkProcess, start_sink

pytestmark = pytest.mark.integration

ACTIONS = 1000
IN_FLIGHT = 16
KILL_AT = 300  # completed actions
CHECKPOINT_INTERVAL_S = 1.0


def _restart_sink(old: SinkProcess) -> SinkProcess:
    """The same sink again: same group, instance id, ClickHouse directory and port."""
    with open(old.log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sinks"], env=old.env, stdout=out, stderr=subprocess.STDOUT)
    new = SinkProcess(proc, old.url, old.token, old.log, old.env)
    wait_for(lambda: new.health().get("consuming") or proc.poll() is not None, 90, "the restarted sink consuming")
    assert proc.poll() is None, f"the restarted sink exited; log:\n{new.tail()}"
    return new


class _Fault:
    """Kills one component from a thread while the load runs, then brings it back."""

    def __init__(self, name: str, stack: Stack, sink: SinkProcess) -> None:
        self.name, self.stack, self.sink = name, stack, sink
        self.recovery_s: float | None = None
        self.errors: list[BaseException] = []

    def __call__(self) -> None:
        try:
            started = time.monotonic()
            if self.name == "broker":
                kill_broker(self.stack)
                self.stack.broker.start()
            else:
                self.sink.proc.kill()
                self.sink.proc.wait(30)
                self.sink = _restart_sink(self.sink)
            self.recovery_s = time.monotonic() - started
        except BaseException as exc:
            self.errors.append(exc)


def _load(settings: GuardSettings, fault: _Fault) -> tuple[list[str], Counter[str]]:
    """The shared load; the component is killed (from a thread) once ``KILL_AT`` actions finished."""
    killer: list[threading.Thread] = []

    def after(done: int) -> None:
        if not killer and done >= KILL_AT:
            killer.append(threading.Thread(target=fault))
            killer[0].start()

    executed, results = asyncio.run(guarded_load(settings, ACTIONS, IN_FLIGHT, after))
    for t in killer:
        t.join(180)
    return executed, results


@pytest.mark.parametrize("component", ["broker", "sink"])
def test_kill_9_mid_load_loses_nothing_duplicates_nothing_leaves_nothing_unprovable(
        component: str, tmp_path: Path) -> None:
    prefix = f"f{uuid.uuid4().hex[:8]}."
    with own_stack(tmp_path / "home", prefix=prefix) as stack:
        s = stack.settings
        publish_policy(load_policy_file(EXAMPLE_POLICY), s.bootstrap, s.topics, published_by="tests")
        worker = start_processor(s.bootstrap, s.home, prefix, tmp_path / "processor.log",
                                 {"LOCKGATE_CHECKPOINT_INTERVAL_S": str(CHECKPOINT_INTERVAL_S)})
        sink = start_sink(s.bootstrap, prefix, s.home, tmp_path, {"LOCKGATE_STALL_AFTER_S": "5"}, tenant="*")
        fault = _Fault(component, stack, sink)
        try:
            wait_until_deciding(worker)
            started = time.monotonic()
            executed, results = _load(worker.guard_settings(timeout_s=4.0), fault)
            load_s = time.monotonic() - started
            assert fault.errors == []
            assert fault.recovery_s is not None, f"the {component} was not killed mid-load"
            assert len(executed) >= KILL_AT // 2, results  # bodies ran; while the broker is down, none do
            with Guard(worker.guard_settings()):  # a Guard start redelivers whatever is still spooled
                pass

            def settled() -> Ledger | None:
                ledger = Ledger.read(s.bootstrap, prefix)
                got = {e["action_id"] for e in ledger.of_kind("outcome")}
                return ledger if got >= set(executed) and not ledger.uncovered() else None

            ledger = wait_for(settled, 180, "every outcome chained and every event checkpointed")
            outcomes = Counter(e["action_id"] for e in ledger.of_kind("outcome"))
            assert [a for a in executed if outcomes[a] != 1] == [], "a body ran without exactly one outcome"
            assert ledger.duplicated_ids() == []
            verdicts: dict[str, set[bytes]] = {}
            for e in ledger.of_kind("verdict"):
                verdicts.setdefault(e["action_id"], set()).add(e["payload"])
            assert [a for a, v in verdicts.items() if len(v) != 1] == [], "an action was decided twice"
            findings = ledger.verify(s.home, CHECKPOINT_INTERVAL_S)
            assert findings == [], [f"{f.kind} p{f.partition} s{f.sequence}: {f.message}" for f in findings[:10]]

            want = {e["event_id"] for e in ledger.events}
            stored = wait_for(lambda: (ids := fault.sink.event_ids()) and set(ids) >= want and ids, 180,
                              f"the store to hold all {len(want)} ledger events")
            assert len(stored) == len(set(stored)), f"{len(stored) - len(set(stored))} rows stored twice"
            assert set(stored) == want
            print(f"\nkill -9 {component} after {KILL_AT} of {ACTIONS} actions ({IN_FLIGHT} in flight): "
                  f"{dict(results)}; {len(executed)} bodies ran, 0 outcomes lost, 0 duplicated, "
                  f"{len(ledger.events)} ledger events all checkpointed and stored once; load {load_s:.1f}s; "
                  f"{component} back in {fault.recovery_s:.1f}s")
        finally:
            fault.sink.stop()
            stop_processor(worker)
