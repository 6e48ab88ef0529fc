"""Once the guarded body has run, its outcome is never lost: tried against the real broker.

The broker is frozen with SIGSTOP *inside* the guarded body (connections stay open, requests
pile up unanswered: the worst case for a client) and resumed with SIGCONT in a ``finally``,
each stall kept to a second or two. What must hold: the ``with`` block returns within the
documented bound with the outcome spooled; afterwards the open Guard, ``close()``, the next
Guard start or ``lockgate spool flush`` delivers it; it is on the outcomes topic exactly once
(read_committed) with the spooled bytes; the spool is empty.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from deploy.stack import Stack
from producers import AsyncGuard, outcome_recorder
from producers.outcome_recorder import OutcomeRecorder
from producers.spool import OutcomeSpool, SpoolEntry
from schemas.codec import get_codec
from tests.integration.conftest import ProcessorHandle, wait_for

pytestmark = pytest.mark.integration

CODEC = get_codec()
#: outcome_timeout_s of the Guards here: the documented bound on recording.
BOUND_S = 1.0
#: What the bound may be exceeded by: one fsync'd spool write and thread wake-ups on a busy box.
SLACK_S = 0.75


class BrokerStall:
    """SIGSTOP / SIGCONT of the session's broker; always resumed, and ready again, on exit."""

    def __init__(self, stack: Stack) -> None:
        pid = stack.broker.process.pid()
        assert pid is not None, "the session broker is not running"
        self.pid = pid
        self.stack = stack
        self.stopped = False

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped = True
        wait_for(self._all_threads_stopped, 10, "every broker thread to stop")

    def _all_threads_stopped(self) -> bool:
        states = []
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue
        return all(state in ("T", "t") for state in states)

    def resume(self) -> None:
        if self.stopped:
            os.kill(self.pid, signal.SIGCONT)
            self.stopped = False
            self.stack.broker.wait_ready()

    def __enter__(self) -> BrokerStall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.resume()


def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its current end, as a read_committed consumer sees it."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        todo = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in todo])
        out = []
        deadline = time.monotonic() + 30
        while todo:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                out.append(msg)
            for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
                if tp.offset >= ends[tp.partition]:
                    todo.discard(tp.partition)
        return out
    finally:
        consumer.close()


def copies_of(bootstrap: str, topic: str, outcome_id: str) -> list[bytes]:
    return [m.value() for m in read_all(bootstrap, topic)
            if CODEC.decode_as("ActionOutcome", m.value())["outcome_id"] == outcome_id]


def spooled(spool: OutcomeSpool) -> list[SpoolEntry]:
    return [s.entry for s in spool.status()]


@pytest.mark.parametrize("held_limit", [outcome_recorder.MAX_HELD_CLAIMS, 0], ids=["claimed", "over-claim-limit"])
def test_stalled_broker_sync_guard_spools_within_the_bound_then_delivers_once_while_open(
        processor: ProcessorHandle, kafka_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        held_limit: int) -> None:
    monkeypatch.setattr(outcome_recorder, "MAX_HELD_CLAIMS", held_limit)
    spool = OutcomeSpool(tmp_path / "spool")
    guard = processor.guard(outcome_timeout_s=BOUND_S, spool_dir=spool.directory)
    try:
        with BrokerStall(kafka_stack) as stall:
            with guard.action(actor="alice", type="deploy", resource="svc/staging/api") as act:
                act.record_change(before={"v": 1}, after={"v": 2})
                stall.stop()
                body_end = time.monotonic()
            blocked = time.monotonic() - body_end
            assert act.recorded == "spooled"
            [status] = list(spool.status())
            assert status.entry.action_id == act.action_id
            # In flight, the spooled copy stays claimed (past the limit of open claims it is
            # spooled unclaimed; this process still does not re-send it, and the callback removes it).
            assert status.held is (held_limit > 0)
        # Resumed: the in-flight message lands and its callback removes the spool file.
        wait_for(lambda: spool.count() == 0, 30, "the open Guard to deliver the spooled outcome")
        entry = status.entry
    finally:
        guard.close()
    assert BOUND_S <= blocked < BOUND_S + SLACK_S, f"recording blocked the caller {blocked:.2f}s"
    assert copies_of(processor.bootstrap, processor.topics.outcomes, entry.outcome_id) == [entry.value]
    assert CODEC.decode_as("ActionOutcome", entry.value)["after_json"] == '{"v":2}'


def test_stalled_broker_async_guard_keeps_the_loop_free_and_close_delivers_once(
        processor: ProcessorHandle, kafka_stack: Stack, tmp_path: Path) -> None:
    spool = OutcomeSpool(tmp_path / "spool")
    settings = processor.guard_settings(outcome_timeout_s=BOUND_S, spool_dir=spool.directory)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    async def scenario(stall: BrokerStall) -> tuple[float, int, str | None, list[SpoolEntry]]:
        nonlocal ticks
        async with AsyncGuard(settings) as guard:
            async with guard.action(actor="alice", type="deploy", resource="svc/staging/api") as act:
                stall.stop()
                task = asyncio.create_task(ticker())
                await asyncio.sleep(0)
                ticks = 0
                body_end = time.monotonic()
            blocked = time.monotonic() - body_end
            during = ticks
            task.cancel()
            entries = spooled(spool)
            stall.resume()
        return blocked, during, act.recorded, entries  # aclose() has returned

    with BrokerStall(kafka_stack) as stall:
        blocked, ticks_while_waiting, recorded, entries = asyncio.run(scenario(stall))
    assert recorded == "spooled"
    assert BOUND_S <= blocked < BOUND_S + SLACK_S, f"recording blocked the caller {blocked:.2f}s"
    # The loop kept running while the outcome waited for Kafka (a blocked loop ticks 0 or 1
    # times; a free one ~BOUND_S / 0.02, fewer on a busy box).
    assert ticks_while_waiting >= 5, ticks_while_waiting
    [entry] = entries
    assert spool.count() == 0, "close() returned with the outcome still spooled"
    assert copies_of(processor.bootstrap, processor.topics.outcomes, entry.outcome_id) == [entry.value]


def spool_one_outcome_and_close_while_stalled(processor: ProcessorHandle, stall: BrokerStall,
                                              spool: OutcomeSpool) -> tuple[SpoolEntry, float]:
    """A Guard records an outcome into a frozen broker and is closed before it thaws; the
    produce request it sent sits in the broker's socket and is appended on SIGCONT."""
    guard = processor.guard(outcome_timeout_s=BOUND_S, spool_dir=spool.directory)
    try:
        with guard.action(actor="bob", type="deploy", resource="svc/staging/api") as act:
            stall.stop()
    finally:
        started = time.monotonic()
        guard.close()
        closing = time.monotonic() - started
    assert act.recorded == "spooled"
    [status] = list(spool.status())
    assert not status.held, "a closed Guard must let go of its spooled outcomes"
    return status.entry, closing


def test_next_guard_start_redelivers_what_a_closed_guard_left_spooled(
        processor: ProcessorHandle, kafka_stack: Stack, tmp_path: Path) -> None:
    spool = OutcomeSpool(tmp_path / "spool")
    with BrokerStall(kafka_stack) as stall:
        entry, closing = spool_one_outcome_and_close_while_stalled(processor, stall, spool)
    assert closing < BOUND_S + SLACK_S + 1.0, f"close() with a stalled broker took {closing:.2f}s"
    corrupt = spool.directory / f"{uuid.uuid4()}.outcome"
    corrupt.write_bytes(entry.to_bytes()[:50])  # a torn file must not stop the next Guard
    with processor.guard(outcome_timeout_s=BOUND_S, spool_dir=spool.directory) as guard:
        wait_for(lambda: spool.count() == 0, 30, "the next Guard to redeliver the spool")
        with guard.action(actor="bob", type="deploy", resource="svc/staging/api") as act:
            pass
        assert act.recorded == "delivered"
    assert [p.name.split(".outcome")[0] for p in spool.quarantined()] == [corrupt.stem]
    assert copies_of(processor.bootstrap, processor.topics.outcomes, entry.outcome_id) == [entry.value]


def cli(processor: ProcessorHandle, spool: OutcomeSpool, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCKGATE_HOME": str(processor.home), "LOCKGATE_BOOTSTRAP_SERVERS": processor.bootstrap,
           "LOCKGATE_TOPIC_PREFIX": processor.topics.prefix, "LOCKGATE_SPOOL_DIR": str(spool.directory)}
    return subprocess.run([sys.executable, "-m", "lockgate.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_spool_flush_cli_redelivers_once_and_status_counts_the_spool(
        processor: ProcessorHandle, kafka_stack: Stack, tmp_path: Path) -> None:
    spool = OutcomeSpool(tmp_path / "spool")
    with BrokerStall(kafka_stack) as stall:
        entry, _closing = spool_one_outcome_and_close_while_stalled(processor, stall, spool)

    listed = cli(processor, spool, "spool", "list", "--json")
    assert listed.returncode == 1, listed.stderr
    assert [o["outcome_id"] for o in json.loads(listed.stdout)["outcomes"]] == [entry.outcome_id]
    status = cli(processor, spool, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["spool"]["outcomes"] == 1

    flushed = cli(processor, spool, "spool", "flush", "--json")
    assert flushed.returncode == 0, flushed.stderr
    report = json.loads(flushed.stdout)
    assert report["delivered"] + report["already_delivered"] == [entry.outcome_id]
    assert report["remaining"] == []

    assert cli(processor, spool, "spool", "list").returncode == 0
    assert json.loads(cli(processor, spool, "status", "--json").stdout)["spool"]["outcomes"] == 0
    assert copies_of(processor.bootstrap, processor.topics.outcomes, entry.outcome_id) == [entry.value]


# -- the recorder alone, on a topic of its own ---------------------------------------------


@pytest.fixture
def small_topic(kafka_bootstrap: str) -> str:
    """A topic whose broker-side limit refuses records over 4 KiB (the producer allows 8 MiB)."""
    name = f"small-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(name, 1, 1, config={"max.message.bytes": "4096"})]).values():
        fut.result(30)
    wait_for(lambda: admin.list_topics(name, timeout=5).topics[name].partitions, 30, "topic leader")
    return name


def raw_entry(topic: str, size: int) -> SpoolEntry:
    oid = str(uuid.uuid4())
    return SpoolEntry(oid, f"a-{oid[:8]}", topic, f"a-{oid[:8]}".encode(), os.urandom(size),
                      time.time_ns() // 1_000_000)


def test_a_message_the_broker_refuses_is_caught_by_its_own_callback(
        kafka_bootstrap: str, small_topic: str, tmp_path: Path) -> None:
    spool = OutcomeSpool(tmp_path / "spool")
    spool.ensure()
    recorder = OutcomeRecorder(kafka_bootstrap, small_topic, spool, timeout_s=20.0, background=False)
    try:
        first, big, last = raw_entry(small_topic, 200), raw_entry(small_topic, 20_000), raw_entry(small_topic, 200)
        assert recorder.record(first) == "delivered"
        started = time.monotonic()
        assert recorder.record(big) == "spooled"
        refused_after = time.monotonic() - started
        assert recorder.record(last) == "delivered"
    finally:
        recorder.close()
    # Known from the callback, not from waiting out the 20 s bound.
    assert refused_after < 10, refused_after
    [kept] = spooled(spool)
    assert kept.outcome_id == big.outcome_id and kept.value == big.value
    assert "MSG_SIZE_TOO_LARGE" in kept.reason
    assert [m.value() for m in read_all(kafka_bootstrap, small_topic)] == [first.value, last.value]


def test_redelivery_sends_the_spooled_bytes_once_and_a_stale_copy_is_not_sent_again(
        kafka_bootstrap: str, small_topic: str, tmp_path: Path) -> None:
    spool = OutcomeSpool(tmp_path / "spool")
    spool.ensure()
    never_sent = raw_entry(small_topic, 300)
    spool.write(never_sent)
    recorder = OutcomeRecorder(kafka_bootstrap, small_topic, spool, timeout_s=5.0)  # start: a pass
    try:
        wait_for(lambda: spool.count() == 0, 30, "the start-up pass to redeliver the entry")
    finally:
        recorder.close()
    spool.write(never_sent)  # the same entry again, as if its removal had been lost in a crash
    again = OutcomeRecorder(kafka_bootstrap, small_topic, spool, timeout_s=5.0, background=False)
    try:
        report = again.redeliver(time.monotonic() + 10)
    finally:
        again.close()
    assert report.already_delivered == [never_sent.outcome_id] and report.sent == []
    [msg] = read_all(kafka_bootstrap, small_topic)
    assert (msg.key(), msg.value(), msg.timestamp()[1]) == (never_sent.key, never_sent.value,
                                                            never_sent.timestamp_ms)
    assert spool.count() == 0
