"""The sink process against the real broker: consume, land, dead-letter, commit, SIGTERM.

The sink runs as its own process (as in production; chDB also allows one data directory
per process, which the pytest process may already own). Results are read through the
sink's own HTTP API.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.codec import get_codec
from schemas.topics import Topics
from sinks.tokens import create_token
from tests.conftest import free_port
from tests.integration.conftest import get_json, wait_for
from tests.integration.sink_process import alive, child_pids

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]






def _event(kind: str, payload: bytes, seq: int, action_id: str | None,
           ledger_partition: int = 0, event_id: str | None = None) -> bytes:
    return get_codec().encode("AuditEvent", {
        "event_id": event_id or str(uuid.uuid4()), "kind": kind,
        "recorded_at": time.time_ns() // 1000, "tenant": "acme", "action_id": action_id,
        "payload": payload, "detail": None, "ledger_partition": ledger_partition,
        "sequence": seq, "prev_hash": b"\0" * 32, "hash": b"\1" * 32, "canonical_version": 1,
    })


@pytest.fixture
def sink(kafka_bootstrap: str, topic_prefix: str, topics: Topics, tmp_path: Path
         ) -> Iterator[dict[str, Any]]:
    """Topics come from the catalogue fixture (created under this test's unique prefix)."""
    port = free_port()
    _, token = create_token(tmp_path, "acme")
    group = f"sink-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "LOCKGATE_HOME": str(tmp_path), "LOCKGATE_TOPIC_PREFIX": topic_prefix,
           "LOCKGATE_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "LOCKGATE_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'ch'}",
           "LOCKGATE_SINK_GROUP_ID": group,
           "LOCKGATE_SINK_HTTP_PORT": str(port), "PYTHONPATH": str(REPO)}
    started: list[subprocess.Popen[bytes]] = []

    def start(extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", "from sinks.service import main; main()"],
                                env={**env, **(extra_env or {})}, cwd=REPO)
        started.append(proc)
        wait_for(lambda: get_json(f"http://127.0.0.1:{port}/healthz", None) is not None)
        return proc

    try:
        yield {"start": start, "url": f"http://127.0.0.1:{port}", "token": token,
               "prefix": topic_prefix, "bootstrap": kafka_bootstrap, "group": group}
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()




def test_sink_lands_dead_letters_and_stops_cleanly(sink: dict[str, Any]) -> None:
    codec = get_codec()
    proc = sink["start"]()
    producer = Producer({"bootstrap.servers": sink["bootstrap"]})
    aid = str(uuid.uuid4())
    action = codec.encode("ProposedAction", {
        "action_id": aid, "correlation_id": aid, "proposed_at": time.time_ns() // 1000,
        "tenant": "acme", "service": "billing", "actor": {"id": "alice", "roles": [],
                                                          "attributes": {}},
        "type": "db.query", "resource": "db/prod/orders", "attributes": {},
        "change_json": None, "reply_topic": "r", "reply_partition": 0, "reply_instance": "g",
        "service_key_id": None, "service_signature": None,
    })
    topic = f"{sink['prefix']}audit"
    producer.produce(topic, _event("action", action, 0, aid), partition=0)
    producer.produce(topic, b"\x00poison", partition=0)  # undecodable: dead-letter, no stall
    producer.produce(topic, _event("dead_letter", b"raw", 1, None), partition=0)
    producer.flush(10)

    url = f"{sink['url']}/api/actions?since=1h"
    rows = wait_for(lambda: (get_json(url, sink["token"]) or {}).get("actions"))
    assert [r["action_id"] for r in rows] == [aid]
    metrics = urllib.request.urlopen(f"{sink['url']}/metrics", timeout=5).read().decode()
    assert "lockgate_sink_dead_letters_total" in metrics

    dl = Consumer({"bootstrap.servers": sink["bootstrap"], "group.id": uuid.uuid4().hex,
                   "auto.offset.reset": "earliest"})
    dl.subscribe([f"{sink['prefix']}deadletter"])
    msg = wait_for(lambda: dl.poll(1.0))
    dead = codec.decode_as("DeadLetter", msg.value())
    assert dead["raw"] == b"\x00poison" and dead["source_offset"] == 1
    dl.close()

    events = wait_for(lambda: (get_json(f"{sink['url']}/api/events?partition=0",
                                 sink["token"]) or {}).get("events"))
    assert len(events) == 2

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0

    # Restart: offsets were committed after the insert, so nothing is re-inserted.
    proc2 = sink["start"]()
    time.sleep(3)
    events = get_json(f"{sink['url']}/api/events?partition=0", sink["token"])["events"]
    assert len(events) == 2
    proc2.send_signal(signal.SIGTERM)
    assert proc2.wait(30) == 0


def _verdict_payload(decision: str = "allow") -> bytes:
    aid = str(uuid.uuid4())
    return get_codec().encode("Verdict", {
        "action_id": aid, "correlation_id": aid, "reply_instance": "g",
        "decided_at": time.time_ns() // 1000, "tenant": "acme", "service": "billing",
        "decision": decision, "basis": "default", "matched_rules": [], "policy_name": "p",
        "policy_version": 1, "reason": "crash test", "eval_latency_us": 1, "processor_id": "p",
        "key_id": "k", "signature": b"s" * 64,
    })


def _stored_verdicts(sink: dict[str, Any]) -> int | None:
    """Verdict rows stored for the token's tenant in the last hour, duplicates included,
    as the API counts them (the allow/block timeline is a count() over the raw rows)."""
    stats = get_json(f"{sink['url']}/api/stats?since=1h", sink["token"])
    if stats is None:
        return None
    return sum(int(b["allow"]) + int(b["block"]) for b in stats["timeline"])


def _ledger_rows(sink: dict[str, Any], partitions: int) -> list[dict[str, Any]]:
    """Every stored ledger row of ``partitions``, paged through ``/api/events``."""
    rows: list[dict[str, Any]] = []
    for part in range(partitions):
        after = -1
        while True:
            page = get_json(f"{sink['url']}/api/events?partition={part}&after={after}&limit=10000",
                        sink["token"])
            assert page is not None, "the sink's API did not answer /api/events"
            rows += page["events"]
            if page["next_after"] is None or len(page["events"]) < 10_000:
                break
            after = page["next_after"]
    return rows


def test_kill_9_mid_stream_loses_and_duplicates_nothing(sink: dict[str, Any]) -> None:
    """SIGKILL while batches are landing; the restarted sink completes the job exactly."""
    total, partitions = 20_000, 4
    per_partition = total // partitions
    topic = f"{sink['prefix']}audit"
    payload = _verdict_payload()
    producer = Producer({"bootstrap.servers": sink["bootstrap"], "linger.ms": 20})
    sent: set[str] = set()
    for part in range(partitions):
        for seq in range(per_partition):
            if seq == per_partition // 2:  # a poison record mid-partition: skipped, no stall
                producer.produce(topic, b"\x00poison", partition=part)
            event_id = str(uuid.uuid4())
            sent.add(event_id)
            producer.produce(topic, _event("verdict", payload, seq, None, part, event_id),
                             partition=part)
            if seq % 1000 == 0:
                producer.poll(0)
    assert producer.flush(30) == 0

    small_batches = {"LOCKGATE_SINK_BATCH_ROWS": "500"}
    proc = sink["start"](small_batches)
    seen = 0
    deadline = time.monotonic() + 60
    while seen < total // 4 and time.monotonic() < deadline:  # well into the stream
        seen = _stored_verdicts(sink) or 0
        if seen < total // 4:
            time.sleep(0.01)
    workers = child_pids(proc.pid)
    assert any(b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes() for p in workers), \
        "the sink runs no derive worker"
    proc.kill()  # SIGKILL: no flush, no commit, no cleanup
    assert proc.wait(10) == -signal.SIGKILL
    # Its derive workers do not outlive it (they would hold memory and a stale engine import).
    wait_for(lambda: not any(alive(p) for p in workers), 10, "derive workers gone")
    assert 0 < seen < total, f"expected the kill to land mid-stream, {seen} of {total} had landed"

    # The broker keeps the killed member in its group until the session times out (45 s by
    # default) and holds the rebalance until then. Instead of waiting, hand the offsets the
    # killed sink committed to a fresh group: the restarted sink resumes from exactly the
    # same place, which is what a restart in the same group would do.
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    resumed_group = f"{sink['group']}-restarted"
    probe = Consumer({"bootstrap.servers": sink["bootstrap"], "group.id": sink["group"],
                      "enable.auto.commit": False})
    try:
        at_kill = [tp for tp in probe.committed(tps, timeout=10) if tp.offset >= 0]
        ends = [probe.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
    finally:
        probe.close()
    assert sum(ends) == total + partitions
    assert sum(tp.offset for tp in at_kill) < sum(ends), "the kill came after the last commit"
    if at_kill:
        admin = AdminClient({"bootstrap.servers": sink["bootstrap"]})
        for future in admin.alter_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(resumed_group, at_kill)]).values():
            future.result(timeout=10)

    committed = Consumer({"bootstrap.servers": sink["bootstrap"], "group.id": resumed_group,
                          "enable.auto.commit": False})

    def done() -> bool:
        if _stored_verdicts(sink) != total:
            return False
        return [tp.offset for tp in committed.committed(tps, timeout=10)] == ends

    proc2 = sink["start"]({**small_batches, "LOCKGATE_SINK_GROUP_ID": resumed_group})
    try:
        # Everything inserted and every offset committed: nothing more can land.
        wait_for(done, 120)
    finally:
        committed.close()
    rows = _ledger_rows(sink, partitions)
    assert len(rows) == total
    assert len({r["event_id"] for r in rows}) == total
    assert {r["event_id"] for r in rows} == sent
    assert len({(r["ledger_partition"], r["sequence"]) for r in rows}) == total
    assert _stored_verdicts(sink) == total
    proc2.send_signal(signal.SIGTERM)
    assert proc2.wait(30) == 0


def test_a_second_row_with_one_sequence_stays_visible(sink: dict[str, Any]) -> None:
    """A forged record reusing a sequence number must reach ``verify``, even at a page edge."""
    proc = sink["start"]()
    topic = f"{sink['prefix']}audit"
    producer = Producer({"bootstrap.servers": sink["bootstrap"]})
    for seq in (0, 1, 1, 2):
        producer.produce(topic, _event("dead_letter", b"raw", seq, None), partition=0)
    assert producer.flush(10) == 0
    url = f"{sink['url']}/api/events?partition=0"

    def all_four() -> list[dict[str, Any]] | None:
        events: list[dict[str, Any]] = (get_json(url, sink["token"]) or {}).get("events", [])
        return events if len(events) == 4 else None

    events = wait_for(all_four)
    assert [e["sequence"] for e in events] == [0, 1, 1, 2]
    assert len({e["event_id"] for e in events}) == 4
    # Paging by "after the last sequence" must not split the twins across pages.
    first = get_json(f"{url}&after=-1&limit=2", sink["token"])
    assert [e["sequence"] for e in first["events"]] == [0, 1, 1] and first["next_after"] == 1
    rest = get_json(f"{url}&after=1&limit=2", sink["token"])
    assert [e["sequence"] for e in rest["events"]] == [2]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
