"""A restarted ledger stage resumes from the newest checkpoint's frontier — and only a proven one.

Real broker, real ledger stages (in this process, so their counters and log lines can be
read). A first stage chains a partition's intake and checkpoints it; it stops; a second
stage with the same ids takes the partition over. Checked:

* the second stage resumes the log from the frontier published with the newest checkpoint
  and reads a bounded number of audit records (the dedup window and the events after the
  checkpoint), not the partition — and the ledger it goes on to write verifies;
* a copy of the newest checkpoint whose frontier header was edited (its root is not the
  signed one), truncated (it does not decode) or dropped (as an older worker wrote it),
  appended as the partition's newest checkpoint, gives no frontier: the stage says why,
  rebuilds the log from every event, and the ledger it goes on to write still verifies;
* (real worker processes, kill -9) checkpoints appended by an attacker — claiming 2^40
  events under their own key, or a genuine one with its size raised, or not a Checkpoint at
  all — do not stop a restarted worker from checkpointing the events its killed predecessor
  left uncovered: the covered sequence comes only from a checkpoint that verifies.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from lockgate.kernel.home import Home
from lockgate.kernel.partition_reader import committed_reader, read_partition
from processors.ledger_stage import LOG_FRONTIER_HEADER, LedgerStage
from processors.ledger_writer import LedgerWriter
from producers import Action, Actor
from schemas.codec import get_codec
from schemas.records import AuditKind, audit_event, event_id_for
from schemas.topics import Topics
from tests.integration.conftest import (
    ProcessorHandle,
    fresh_topics,
    start_processor,
    stop_processor,
    wait_for,
    wait_until_deciding,
)
from tests.integration.ledger_readback import Ledger
from trust.checkpoints import verify_checkpoint
from trust.frontier import CompactRange
from trust.keys import Keyring, PublicKey, SigningKey
from trust.tlog import build_log_checkpoint
from trust.verify import CoverageRule, verify_ledger

pytestmark = pytest.mark.integration

FIRST = 1500  # events chained before the restart
THEN = 200  # events chained after it
WINDOW = 50
EVERY = 100
INTERVAL_S = 0.5


def _intake(bootstrap: str, topics: Topics, start: int, n: int) -> None:
    codec = get_codec()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20})
    for i in range(start, start + n):
        ev = audit_event(AuditKind.ACTION, "acme", f"a{i}", b"payload %d" % i, now_us=1_000 + i,
                         event_id=event_id_for(AuditKind.ACTION, topics.actions, 0, i))
        producer.produce(topics.audit_intake, codec.encode("AuditEvent", ev), partition=0)
        producer.poll(0)
    assert producer.flush(30) == 0


class _Run:
    """Ledger stages of one app and processor id, run one after the other against ``topics``."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.bootstrap, self.topics = bootstrap, topics
        self.key = SigningKey.generate()
        self.app_id = f"app-{uuid.uuid4().hex[:8]}"
        self.stage: LedgerStage | None = None

    def start(self) -> LedgerStage:
        writer = LedgerWriter(self.key, "p-recovery", checkpoint_every=EVERY, checkpoint_interval_s=INTERVAL_S,
                              dedup_window=WINDOW)
        self.stage = LedgerStage(writer, bootstrap=self.bootstrap, topics=self.topics, app_id=self.app_id,
                                 processor_id="p-recovery", recovery_timeout_s=30.0)
        self.stage.start()
        return self.stage

    def stop(self) -> None:
        if self.stage is not None:
            self.stage.stop()
            assert self.stage.failure is None, self.stage.failure
            self.stage = None

    def settled(self, n: int) -> Ledger:
        """Wait until ``n`` events are chained and every one is checkpointed."""
        def done() -> Ledger | None:
            ledger = Ledger.read(self.bootstrap, self.topics.prefix)
            return ledger if len(ledger.events) == n and not ledger.uncovered() else None
        ledger: Ledger = wait_for(done, 90, f"{n} events chained and checkpointed")
        return ledger

    def findings(self, ledger: Ledger) -> list[Any]:
        rule = CoverageRule(int(10 * INTERVAL_S * 1e6), time.time_ns() // 1000)
        return verify_ledger(ledger.events, ledger.checkpoints, Keyring([self.key.public()]),
                             position_key="_position", enforcement=False, coverage=rule)


@pytest.fixture
def run(kafka_bootstrap: str, topics: Topics) -> Iterator[_Run]:
    r = _Run(kafka_bootstrap, topics)
    try:
        yield r
    finally:
        r.stop()


def _read(mode: str) -> float:
    return REGISTRY.get_sample_value("lockgate_ledger_recovery_records_total", {"mode": mode}) or 0.0


def _first_run(run: _Run) -> Ledger:
    _intake(run.bootstrap, run.topics, 0, FIRST)
    run.start()
    ledger = run.settled(FIRST)
    run.stop()
    return ledger


def _recovered(caplog: pytest.LogCaptureFixture) -> str:
    def line() -> str | None:
        return next((r.getMessage() for r in caplog.records
                     if r.getMessage().startswith("ledger partition 0 recovered")), None)
    found: str = wait_for(line, 60, "partition 0 recovered")
    return found


def test_a_restart_resumes_from_the_frontier_and_reads_only_the_suffix(
        run: _Run, caplog: pytest.LogCaptureFixture) -> None:
    first = _first_run(run)
    newest = max((cp for cp in first.checkpoints if cp["ledger_partition"] == 0), key=lambda c: c["last_sequence"])
    assert newest["last_sequence"] == FIRST - 1
    frontier_before, full_before = _read("frontier"), _read("full")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lockgate.ledger"):
        run.start()
        line = _recovered(caplog)
        _intake(run.bootstrap, run.topics, FIRST, THEN)
        ledger = run.settled(FIRST + THEN)
    assert f"from the frontier of checkpoint size {FIRST}" in line
    read = _read("frontier") - frontier_before
    # The dedup window back from the head, read in chunks of WINDOW + EVERY offsets: one or
    # two chunks; a full rebuild would read all FIRST records (plus their markers' offsets).
    assert 0 < read <= 2 * (WINDOW + EVERY), line
    assert _read("full") == full_before  # no partition with events was rebuilt whole
    assert [e["sequence"] for e in ledger.events if e["ledger_partition"] == 0] == list(range(FIRST + THEN))
    assert run.findings(ledger) == []


def _edited(raw: bytes) -> list[tuple[str, bytes]]:
    return [(LOG_FRONTIER_HEADER, raw[:-1] + bytes([raw[-1] ^ 0x01]))]  # the last node: the root moves


def _truncated(raw: bytes) -> list[tuple[str, bytes]]:
    return [(LOG_FRONTIER_HEADER, raw[:-5])]


def _stripped(_raw: bytes) -> list[tuple[str, bytes]]:
    return []  # as an older worker published it


@pytest.mark.parametrize(("forge", "why"), [
    (_edited, "has root"),
    (_truncated, "does not decode"),
    (_stripped, f"carries no {LOG_FRONTIER_HEADER} header"),
], ids=["edited-node", "truncated", "no-header"])
def test_a_newest_checkpoint_without_a_proven_frontier_means_a_rebuild_from_every_event(
        run: _Run, caplog: pytest.LogCaptureFixture, forge: Any, why: str) -> None:
    _first_run(run)
    reader = committed_reader(run.bootstrap, "test-forge")
    try:
        records = list(read_partition(reader, run.topics.checkpoints, 0))
    finally:
        reader.close()
    newest = records[-1]
    raw = newest.header(LOG_FRONTIER_HEADER)
    assert raw is not None and len(raw) == 8 + 32 * FIRST.bit_count()
    # The same signed checkpoint again, now the newest of the partition, with its header forged.
    forger = Producer({"bootstrap.servers": run.bootstrap, "acks": "all"})
    forger.produce(run.topics.checkpoints, newest.value, key=newest.key, partition=0, headers=forge(raw))
    assert forger.flush(30) == 0
    full_before = _read("full")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lockgate.ledger"):
        run.start()
        line = _recovered(caplog)
        _intake(run.bootstrap, run.topics, FIRST, THEN)
        ledger = run.settled(FIRST + THEN)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("gives no frontier to resume from" in w and why in w for w in warnings), warnings
    assert "from every event" in line
    assert _read("full") - full_before >= FIRST  # the whole partition was read
    assert [e["sequence"] for e in ledger.events if e["ledger_partition"] == 0] == list(range(FIRST + THEN))
    assert run.findings(ledger) == []


# -- a forged checkpoint must not leave a killed worker's last events unprovable ---------------

ATTACKED_SIZE = 2**40  # what the forged checkpoints claim: far beyond any head


_Headers = list[tuple[str, str | bytes | None]]


def _forged_records(ledger: Ledger, partitions: list[int]) -> tuple[list[tuple[bytes, _Headers]], list[str]]:
    """Per attacked partition: a whole-log checkpoint of ``ATTACKED_SIZE`` events signed by an
    attacker's key with a frontier header that proves out against its own note, and (where the
    partition has a genuine checkpoint) a copy of the newest one with its size raised; then a
    record that is not a Checkpoint. The encoded records with headers, and their checkpoint ids."""
    codec = get_codec()
    attacker = SigningKey.generate()
    out: list[tuple[bytes, _Headers]] = []
    ids: list[str] = []
    for p in partitions:
        tree = CompactRange(ATTACKED_SIZE, [bytes([p + 1]) * 32])
        forged = build_log_checkpoint(partition=p, size=ATTACKED_SIZE, root=tree.root(), head_hash=b"\x09" * 32,
                                      key=attacker, processor_id="processor-1", now_us=time.time_ns() // 1000)
        out.append((codec.encode("Checkpoint", forged), [(LOG_FRONTIER_HEADER, tree.to_bytes())]))
        ids.append(forged["checkpoint_id"])
        genuine = [cp for cp in ledger.checkpoints if cp["ledger_partition"] == p]
        if genuine:
            newest = max(genuine, key=lambda cp: cp["last_sequence"])
            raised = {**newest, "last_sequence": ATTACKED_SIZE - 1, "checkpoint_id": f"p{p}@{ATTACKED_SIZE}"}
            out.append((codec.encode("Checkpoint", raised), [(LOG_FRONTIER_HEADER, tree.to_bytes())]))
            ids.append(raised["checkpoint_id"])
    out.append((b"\xc3\x01not a checkpoint", []))
    return out, ids


def _uncovered_by_verified(ledger: Ledger, key: PublicKey) -> dict[int, int]:
    """Per partition, how many of its events no checkpoint that verifies under ``key`` covers."""
    covered: dict[int, int] = {}
    for cp in ledger.checkpoints:
        if verify_checkpoint(cp, key):
            p = cp["ledger_partition"]
            covered[p] = max(covered.get(p, -1), cp["last_sequence"])
    out: dict[int, int] = {}
    for e in ledger.events:
        if e["sequence"] > covered.get(e["ledger_partition"], -1):
            out[e["ledger_partition"]] = out.get(e["ledger_partition"], 0) + 1
    return out


def _decide(handle: ProcessorHandle, n: int, tag: str) -> list[str]:
    with handle.guard() as guard:
        return [guard.check(Action(Actor(f"{tag}-{i}"), "read", f"{tag}/r{i}")).action_id for i in range(n)]


def _chained(bootstrap: str, prefix: str, action_ids: list[str]) -> Ledger:
    def done() -> Ledger | None:
        ledger = Ledger.read(bootstrap, prefix)
        return ledger if {e["action_id"] for e in ledger.of_kind("verdict")} >= set(action_ids) else None
    ledger: Ledger = wait_for(done, 60, f"the verdicts of {len(action_ids)} actions chained")
    return ledger


def test_a_forged_checkpoint_does_not_leave_a_killed_workers_last_events_unprovable(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """Real worker processes. Actions are decided and checkpointed; more are decided under a
    checkpoint interval of an hour (so they stay uncovered) and the worker is killed (-9).
    Then, for every partition with uncovered events, an attacker appends to ``checkpoints``
    a checkpoint claiming 2^40 events under their own key (with a frontier header that
    matches its note), a copy of the partition's newest genuine checkpoint with its size
    raised, and a record that is not a Checkpoint. The restarted worker must checkpoint the
    dead worker's last events anyway, and `lockgate verify` must find every event covered
    and nothing but the forged records."""
    topics = fresh_topics(kafka_bootstrap, "c")
    home, log = tmp_path / "home", tmp_path / "processor.log"
    args = (kafka_bootstrap, home, topics.prefix, log)
    handle = start_processor(*args)  # checkpoints within 1 s of chaining
    try:
        wait_until_deciding(handle)
        first = _decide(handle, 24, "before")
        wait_for(lambda: not _chained(kafka_bootstrap, topics.prefix, first).uncovered(), 60,
                 "the first actions checkpointed")
        stop_processor(handle)
        handle = start_processor(*args, extra_env={"LOCKGATE_CHECKPOINT_INTERVAL_S": "3600",
                                                   "LOCKGATE_CHECKPOINT_EVERY": "1000000"})
        wait_until_deciding(handle)
        _chained(kafka_bootstrap, topics.prefix, _decide(handle, 24, "after"))
        handle.proc.kill()  # -9: the last events are chained, no checkpoint covers them
        handle.proc.wait(30)

        key = PublicKey.load(Home(home).processor_public_key)
        ledger = Ledger.read(kafka_bootstrap, topics.prefix)
        uncovered = _uncovered_by_verified(ledger, key)
        with_genuine = {cp["ledger_partition"] for cp in ledger.checkpoints}
        assert uncovered and set(uncovered) & with_genuine, (uncovered, with_genuine)
        records, forged_ids = _forged_records(ledger, sorted(uncovered))
        attacker = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
        for value, headers in records:
            attacker.produce(topics.checkpoints, value, partition=0, headers=headers)
        assert attacker.flush(30) == 0

        handle = start_processor(*args)  # no new actions: only recovery can checkpoint those events

        def all_covered() -> Ledger | None:
            now = Ledger.read(kafka_bootstrap, topics.prefix)
            return None if _uncovered_by_verified(now, key) else now
        settled: Ledger = wait_for(all_covered, 60, "the dead worker's last events checkpointed by its successor")
        assert len(settled.events) == len(ledger.events)  # recovery chained nothing new
        text = log.read_text(errors="replace")
        for p in uncovered:
            assert re.search(rf"ledger partition {p} recovered .* {uncovered[p]} uncovered event\(s\) to checkpoint",
                             text), text[-3000:]
        assert "does not verify under this worker's key and is skipped" in text
        assert "is not a Checkpoint" in text

        res = subprocess.run([sys.executable, "-m", "lockgate.cli", "verify", "--from-topics", "--json",
                              "--checkpoint-interval", "1"], capture_output=True, text=True, timeout=120,
                             check=False, env={**os.environ, "LOCKGATE_HOME": str(home),
                                               "LOCKGATE_BOOTSTRAP_SERVERS": kafka_bootstrap,
                                               "LOCKGATE_TOPIC_PREFIX": topics.prefix})
        report = json.loads(res.stdout)
        # Every event is covered by a verified checkpoint; the only findings name the forgeries.
        assert {f["kind"] for f in report["findings"]} == {"forged_checkpoint"}, report["findings"]
        assert Counter(f["checkpoint_id"] for f in report["findings"]) == Counter(forged_ids)
        assert res.returncode == 1 and report["events"] == len(settled.events)
    finally:
        stop_processor(handle)
