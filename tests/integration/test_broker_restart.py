"""Kill -9 the broker under running components: each must carry on by itself, losing nothing.

Each test runs its own broker (``own_broker``): killing the session broker would break every
other test. The sink and the processor run as their own processes, as ``lockgate up`` starts
them, and are never restarted by the test.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.health import describe
from deploy.stack import Stack
from tests.integration.conftest import get_json, wait_for
from tests.integration.own_broker import kill_broker, own_stack
from tests.integration.sink_process import audit_records, produce, start_sink

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with own_stack(tmp_path / "home", prefix=f"r{uuid.uuid4().hex[:6]}.") as s:
        yield s


def test_sink_resumes_by_itself_after_broker_kill_9(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    sink = start_sink(s.bootstrap, s.topic_prefix, s.home, tmp_path,
                      {"LOCKGATE_SINK_BATCH_ROWS": "100", "LOCKGATE_STALL_AFTER_S": "5"})
    try:
        before, before_ids = audit_records(30_000)
        produce(s.bootstrap, s.topics.audit, before)
        # Kill while the sink has measured a backlog: on a quiet box it drains small ones in
        # seconds, and a sink with no lag is idle, not stalled.
        landed = wait_for(lambda: (h := sink.health()).get("lag") and h["lag"] > 1_000 and h["lag"], 60,
                          "the sink to measure a backlog")
        kill_broker(stack)  # mid-stream: rows buffered, batches uncommitted
        killed_at = time.monotonic()
        # Up but not consuming, and `lockgate status` says so, with the reason.
        stalled = wait_for(lambda: (h := sink.health()).get("state") == "stalled" and h.get("reason") and h, 60,
                           "the sink to report itself stalled")
        assert "Kafka unreachable" in stalled["reason"]
        assert describe(True, sink.proc.pid, stalled).startswith("UP BUT NOT CONSUMING")
        assert "lockgate_sink_stalled 1.0" in sink.metrics()
        stack.broker.start()
        back_at = time.monotonic()

        after, after_ids = audit_records(2_000)
        produce(s.bootstrap, s.topics.audit, after)
        total = len(before) + len(after)
        # 100-row batches: ~320 inserts after the restart, each a part with its projections; on a
        # box loaded by other suites that alone can take a minute. The test is about resuming.
        wait_for(lambda: sink.stored() >= total, 180, f"all {total} rows stored; sink log:\n{sink.tail()}")
        done_at = time.monotonic()
        ids = sink.event_ids()
        assert len(ids) == total, f"{len(ids) - len(set(ids))} duplicates landed"
        assert set(ids) == before_ids | after_ids
        assert sink.proc.poll() is None, "the sink exited"
        health = wait_for(lambda: (h := sink.health()).get("state") == "idle" and h, 30,
                          "the sink to report itself caught up")
        assert "lockgate_sink_stalled 0.0" in sink.metrics()
        print(f"\nbacklog at the kill: {landed}; broker restarted in {back_at - killed_at:.1f}s; "
              f"all {total} rows stored {done_at - back_at:.1f}s after the broker was back; "
              f"consumer restarts: {health['consumer_restarts']}")
    finally:
        sink.stop()


def test_processor_resumes_deciding_after_broker_kill_9(stack: Stack, tmp_path: Path) -> None:
    from processors.policy.files import load_policy_file
    from processors.policy.store import publish_policy
    from tests.integration.conftest import EXAMPLE_POLICY, start_processor, stop_processor, wait_until_deciding

    s = stack.settings
    publish_policy(load_policy_file(EXAMPLE_POLICY), s.bootstrap, s.topics, published_by="tests")
    handle = start_processor(s.bootstrap, s.home, s.topic_prefix, tmp_path / "processor.log")
    try:
        wait_until_deciding(handle)
        kill_broker(stack)
        stack.broker.start()
        back_at = time.monotonic()
        wait_until_deciding(handle, 60)
        print(f"\nfirst verdict {time.monotonic() - back_at:.1f}s after the broker was back")
        assert handle.proc.poll() is None
        url = f"http://127.0.0.1:{handle.port}/healthz/consumer"
        wait_for(lambda: (get_json(url, None) or {}).get("state") in ("consuming", "idle"), 30,
                 "the processor to report its consumer healthy")
    finally:
        stop_processor(handle)
