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
  rebuilds the log from every event, and the ledger it goes on to write still verifies.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from lockgate.kernel.partition_reader import committed_reader, read_partition
from processors.ledger_stage import LOG_FRONTIER_HEADER, LedgerStage
from processors.ledger_writer import LedgerWriter
from schemas.codec import get_codec
from schemas.records import AuditKind, audit_event, event_id_for
from schemas.topics import Topics
from tests.integration.conftest import wait_for
from tests.integration.ledger_readback import Ledger
from trust.keys import Keyring, SigningKey
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
