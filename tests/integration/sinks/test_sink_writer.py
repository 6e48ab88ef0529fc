"""Writer against the real embedded engine: landing, all four facts, no duplicates."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from sinks.clickhouse import ConnectClient
from sinks.errors import InsertFailed
from sinks.query import AuditQueries, parse_action_filter
from sinks.writer import BatchWriter, WriterConfig
from tests.integration.sinks.sink_fixtures import Events

AUDIT = "lockgate.audit"
CPS = "lockgate.checkpoints"
ROUTES: dict[str, Any] = {AUDIT: "audit", CPS: "checkpoint"}


def _count(ch: ConnectClient, table: str = "audit_events") -> int:
    return int(ch.command(f"SELECT count() FROM {ch.database}.{table}"))


def _feed(writer: BatchWriter, records: list[dict[str, Any]], first_offset: int = 0,
          topic: str = AUDIT, partition: int = 0) -> None:
    for i, rec in enumerate(records):
        writer.add(topic, partition, first_offset + i, rec)


def _scenario(events: Events, n: int = 5) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [events.policy()]
    for _ in range(n):
        aid, act = events.action()
        out += [act, events.verdict(aid), events.outcome(aid)]
    return out


def test_rows_land_with_all_four_facts(ch: ConnectClient, events: Events) -> None:
    writer = BatchWriter(ch, ROUTES)
    recs = _scenario(events, 3)
    _feed(writer, recs)
    writer.add(CPS, 0, 0, events.checkpoint())
    safe = writer.flush()
    assert safe == {(AUDIT, 0): len(recs), (CPS, 0): 1}
    assert _count(ch) == len(recs)
    assert _count(ch, "checkpoints") == 1
    _, kinds = ch.query(f"SELECT kind, count() FROM {ch.database}.audit_events GROUP BY kind "
                        "ORDER BY kind")
    assert dict(kinds) == {"action": 3, "outcome": 3, "policy": 1, "verdict": 3}
    # Ledger columns are lossless: payload and hashes come back byte-identical.
    ev = recs[1]
    _, rows = ch.query(
        f"SELECT hex(payload), hex(hash), hex(prev_hash), sequence, action_id, detail "
        f"FROM {ch.database}.audit_events WHERE event_id = {{id:String}}", {"id": ev["event_id"]})
    assert rows == [(ev["payload"].hex().upper(), ev["hash"].hex().upper(),
                     ev["prev_hash"].hex().upper(), ev["sequence"], ev["action_id"], None)]
    # One row per action with who / what / what changed / which rules / decision / outcome.
    page = AuditQueries(ch).actions(parse_action_filter({}, "acme"))
    assert len(page.rows) == 3
    row = page.rows[0]
    assert row["actor_id"] == "alice" and row["actor_roles"] == ["dba", "oncall"]
    assert row["resource"] == "db/prod/orders" and row["sql"].startswith("DELETE")
    assert row["attributes"]["rows"] == "1" and row["attributes"]["dry"] == "false"
    assert row["before_json"] == '{"qty":1}' and row["after_json"] == '{"qty":2}'
    assert row["rule_ids"] == ["no-unbounded-delete", "shadow-rule"]
    assert row["rule_modes"] == ["enforce", "shadow"]
    assert row["decision"] == "block" and row["policy_version"] == 7
    assert row["outcome_status"] == "committed"
    assert row["proposed_at"] <= row["decided_at"] <= row["outcome_at"]


def test_token_dedup_is_real_in_chdb(ch: ConnectClient) -> None:
    """The engine itself drops a re-insert carrying a token it has seen."""
    ch.command(f"CREATE TABLE {ch.database}.probe (k UInt64) ENGINE = MergeTree ORDER BY k "
               "SETTINGS non_replicated_deduplication_window = 100")
    for _ in range(3):
        ch.insert(f"{ch.database}.probe", [[1], [2]], ["k"],
                  settings={"insert_deduplication_token": "same"})
    assert _count(ch, "probe") == 2


def test_redelivered_identical_batch_creates_no_duplicates(ch: ConnectClient,
                                                           events: Events) -> None:
    recs = _scenario(events, 4)
    first = BatchWriter(ch, ROUTES)
    _feed(first, recs)
    first.flush()
    # Crash before commit: a fresh writer (fresh process) gets the same records again.
    second = BatchWriter(ch, ROUTES)
    _feed(second, recs)
    assert second.flush() == {(AUDIT, 0): len(recs)}
    assert _count(ch) == len(recs)
    _, dup = ch.query(f"SELECT count() FROM (SELECT event_id FROM {ch.database}.audit_events "
                      "GROUP BY event_id HAVING count() > 1)")
    assert dup == [(0,)]


def test_redelivery_cut_differently_creates_no_duplicates(ch: ConnectClient,
                                                          events: Events) -> None:
    recs = _scenario(events, 10)  # 31 records
    first = BatchWriter(ch, ROUTES, WriterConfig(max_rows=7))
    _feed(first, recs[:20])  # inserted as 7 + 7 + 6, never committed
    first.flush()
    again = BatchWriter(ch, ROUTES, WriterConfig(max_rows=11))
    _feed(again, recs)  # re-read from offset 0, cut at 11/22/31: tokens all differ
    assert again.flush() == {(AUDIT, 0): 31}
    assert _count(ch) == 31
    # Tokens alone would not have caught this: prove the check did the work.
    _, offsets = ch.query(f"SELECT count(DISTINCT src_offset) FROM {ch.database}.audit_events")
    assert offsets == [(31,)]


class FlakyClient:
    """Forwards to a real client but fails the first insert *after* it landed (lost ack)."""

    def __init__(self, inner: ConnectClient) -> None:
        self.inner = inner
        self.database = inner.database
        self.failed = False

    def command(self, sql: str, parameters: Any = None) -> Any:
        return self.inner.command(sql, parameters)

    def query(self, sql: str, parameters: Any = None) -> Any:
        return self.inner.query(sql, parameters)

    def insert(self, table: str, rows: Any, column_names: Any, settings: Any = None) -> None:
        self.inner.insert(table, rows, column_names, settings)
        if not self.failed:
            self.failed = True
            raise InsertFailed("ack lost", retry_after=0.0)

    def close(self) -> None:
        self.inner.close()


def test_retry_after_lost_ack_is_deduplicated(ch: ConnectClient, events: Events) -> None:
    flaky = FlakyClient(ch)
    writer = BatchWriter(flaky, ROUTES)
    recs = _scenario(events, 2)
    _feed(writer, recs)
    with pytest.raises(InsertFailed):
        writer.flush()
    # New records arrive while the failed batch waits: they must not change its token.
    _, extra = events.action()
    writer.add(AUDIT, 0, len(recs), extra)
    assert writer.flush() == {(AUDIT, 0): len(recs) + 1}
    assert _count(ch) == len(recs) + 1


def test_bad_payload_still_lands(ch: ConnectClient, events: Events) -> None:
    ev = events.wrap("verdict", "acme", b"\xc3\x01garbage!", "a-1")
    writer = BatchWriter(ch, ROUTES)
    writer.add(AUDIT, 0, 0, ev)
    writer.flush()
    _, rows = ch.query(f"SELECT kind, decision, decode_error != '' FROM {ch.database}.audit_events")
    assert rows == [("verdict", "", 1)]


def test_batch_bounds(ch: ConnectClient, events: Events) -> None:
    now = [0.0]
    writer = BatchWriter(ch, ROUTES, WriterConfig(max_rows=3, max_age_s=0.5),
                         clock=lambda: now[0])
    _, a = events.action()
    writer.add(AUDIT, 0, 0, a)
    assert not writer.due()
    now[0] = 0.6
    assert writer.due()
    _feed(writer, _scenario(events, 1), first_offset=1)  # 5 rows: 3 sealed, insert started at once
    deadline = time.monotonic() + 30
    while not writer.due() and time.monotonic() < deadline:  # due once it landed
        time.sleep(0.01)
    assert writer.flush(wait=False) == {(AUDIT, 0): 3}  # only the landed batch, without waiting
    assert writer.pending_rows == 2 and not writer.due()
    assert writer.flush() == {(AUDIT, 0): 5}
    assert writer.pending_rows == 0 and not writer.due()


def test_both_checkpoint_formats_land_and_still_verify(ch: ConnectClient, events: Events) -> None:
    """A whole-log (signed note) and a legacy interval checkpoint keep their signature_format
    through the table, the one SELECT and the row converter, and verify after the trip."""
    from sinks.ledger_source import ClickHouseSource
    from tests.factories.ledger import LedgerBuilder
    from trust.checkpoints import build_checkpoint, verify_checkpoint
    from trust.keys import SigningKey
    from trust.partition_log import PartitionLog

    key = SigningKey.generate()
    ledger = LedgerBuilder(key)
    ledger.flow(0)
    interval = build_checkpoint(ledger.events, key, "p1", 1)
    whole = PartitionLog.from_hashes(0, [e["hash"] for e in ledger.events]).checkpoint(key, "p1", 2)
    writer = BatchWriter(ch, ROUTES)
    writer.add(CPS, 0, 0, interval)  # as decoded from an old record: no signature_format key
    writer.add(CPS, 0, 1, whole)
    writer.flush()
    stored = sorted(ClickHouseSource(ch).checkpoints(), key=lambda c: c["created_at"])
    assert [c["signature_format"] for c in stored] == ["interval/v1", "tlog-checkpoint/v1"]
    assert stored[1] == whole
    assert all(verify_checkpoint(c, key.public()) for c in stored)


def test_a_replay_block_is_not_the_actions_decision_in_the_summary(ch: ConnectClient, tmp_path: Any) -> None:
    """The per-action summary shows the allow an action ran under, not the replay blocks after it;
    the Python fold verify uses agrees with the materialized view (migration 005)."""
    from sinks.ledger_source import ClickHouseSource
    from sinks.view_check import check_views
    from tests.factories.decided import DecidedLedger
    from trust.keys import SigningKey

    ledger = DecidedLedger(SigningKey.generate(), tmp_path)
    raw, allowed = ledger.propose()
    ledger.submit(raw)
    ledger.submit(raw)
    assert allowed.verdict is not None
    writer = BatchWriter(ch, ROUTES)
    _feed(writer, ledger.events)
    writer.flush()
    _, kinds = ch.query(f"SELECT basis, count() FROM {ch.database}.audit_events WHERE kind = 'verdict' "
                        "GROUP BY basis ORDER BY basis")
    assert dict(kinds) == {"default": 1, "replay": 2}  # every refusal is in the store ...
    (row,) = AuditQueries(ch).actions(parse_action_filter({}, "default")).rows
    assert (row["action_id"], row["decision"], row["basis"]) == (allowed.verdict["action_id"], "allow", "default")
    source = ClickHouseSource(ch)
    views = check_views(source.events(columns=True), source.summary_rows())
    assert views.findings == [] and views.summary_rows == 1  # ... and the summary folds without them


class FailNthInsert(FlakyClient):
    """Fails the ``n``-th insert once, before (``landed=False``) or after it landed (lost ack)."""

    def __init__(self, inner: ConnectClient, n: int, landed: bool) -> None:
        super().__init__(inner)
        self.n, self.landed, self.calls = n, landed, 0

    def insert(self, table: str, rows: Any, column_names: Any, settings: Any = None) -> None:
        self.calls += 1
        if self.calls != self.n:
            self.inner.insert(table, rows, column_names, settings)
            return
        if self.landed:
            self.inner.insert(table, rows, column_names, settings)
        raise InsertFailed(f"insert {self.n} failed", retry_after=0.0)


@pytest.mark.parametrize("landed", [False, True], ids=["failed-before-landing", "ack-lost"])
def test_failed_insert_in_the_pipeline_holds_back_later_batches(
        ch: ConnectClient, events: Events, landed: bool) -> None:
    """Batches 2 and 3 of a partition are in flight behind a failing batch 1: no offset of the
    partition may be returned until batch 1 landed, and the retry duplicates nothing."""
    client = FailNthInsert(ch, 1, landed)
    writer = BatchWriter(client, ROUTES, WriterConfig(max_rows=4, max_in_flight=3))
    recs = _scenario(events, 4)  # 13 records: batches of 4, 4, 4 sealed while fed, 1 open
    _feed(writer, recs)
    writer.add(CPS, 0, 0, events.checkpoint())  # another partition flushes regardless
    with pytest.raises(InsertFailed, match="insert 1 failed"):
        writer.flush()
    assert writer.pending_rows == 13  # everything of the audit partition held back, retried next
    assert writer.flush() == {(AUDIT, 0): 13, (CPS, 0): 1}
    assert _count(ch) == 13
    _, dup = ch.query(f"SELECT count() FROM (SELECT event_id FROM {ch.database}.audit_events "
                      "GROUP BY event_id HAVING count() > 1)")
    assert dup == [(0,)]


def _derive_worker_pids() -> set[int]:
    """Live derive workers of this test process (not their multiprocessing resource tracker)."""
    from pathlib import Path

    from tests.integration.sink_process import alive, child_pids

    def worker(pid: int) -> bool:
        try:
            return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    return {p for p in child_pids(os.getpid()) if alive(p) and worker(p)}


def _check_stored_views(ch: ConnectClient, rows: int) -> None:
    from sinks.ledger_source import ClickHouseSource
    from sinks.view_check import check_views

    source = ClickHouseSource(ch)
    views = check_views(source.events(columns=True), source.summary_rows())
    assert views.findings == [] and views.rows == rows
    _, dup = ch.query(f"SELECT count() FROM (SELECT event_id FROM {ch.database}.audit_events "
                      "GROUP BY event_id HAVING count() > 1)")
    assert dup == [(0,)]


def test_derive_workers_store_what_verify_derives(ch: ConnectClient, events: Events) -> None:
    """Payload columns derived in a worker process are the ones ``verify`` re-derives, and a
    payload that does not decode still lands (with ``decode_error``), as in-process."""
    before = _derive_worker_pids()
    writer = BatchWriter(ch, ROUTES, WriterConfig(max_rows=4, derive_workers=1))
    try:
        assert len(_derive_worker_pids() - before) == 1
        recs = _scenario(events, 4)
        recs.append(events.wrap("action", "acme", b"\xc3\x01garbage", "a-bad"))
        _feed(writer, recs)
        assert writer.flush() == {(AUDIT, 0): len(recs)}
    finally:
        writer.close()
    assert _derive_worker_pids() == before  # close() stops them
    _check_stored_views(ch, len(recs))
    _, bad = ch.query(f"SELECT decode_error FROM {ch.database}.audit_events WHERE action_id = 'a-bad'")
    assert bad[0][0].startswith("TruncatedRecord") or "ProposedAction" in bad[0][0]


def test_kill_9_of_a_derive_worker_loses_and_duplicates_nothing(ch: ConnectClient, events: Events) -> None:
    """The worker deriving the batches dies (kill -9) with three batches handed over: the
    batches are derived again by a new worker and land exactly once; no offset is returned
    before they did."""
    before = _derive_worker_pids()
    writer = BatchWriter(ch, ROUTES, WriterConfig(max_rows=4, max_in_flight=3, derive_workers=1))
    try:
        (victim,) = _derive_worker_pids() - before
        recs = _scenario(events, 4)  # 13 records: three batches of 4 sealed and handed over
        _feed(writer, recs)
        os.kill(victim, signal.SIGKILL)
        failures = 0
        for _ in range(5):
            try:
                safe = writer.flush()
                break
            except InsertFailed as exc:
                assert "derive worker" in str(exc)
                assert _count(ch) <= 13  # (a later batch may have landed: its retry is deduplicated)
                failures += 1
        else:
            pytest.fail("the writer did not recover from a killed derive worker")
        assert safe == {(AUDIT, 0): 13}
        assert failures <= 1
        (replacement,) = _derive_worker_pids() - before
        assert replacement != victim
    finally:
        writer.close()
    _check_stored_views(ch, 13)


# -- one insert per table across partitions --------------------------------------------------

Fed = list[tuple[int, int, dict[str, Any]]]  # (partition, offset, record)


def _partitions(events: Events, partitions: int, actions: int) -> dict[int, list[dict[str, Any]]]:
    return {p: _scenario(events, actions) for p in range(partitions)}


def _round_robin(streams: dict[int, list[dict[str, Any]]], start: int = 0) -> Fed:
    """Records of every partition from offset ``start``, interleaved as a consumer reads them."""
    out: Fed = []
    for i in range(start, max(len(s) for s in streams.values())):
        out += [(p, i, s[i]) for p, s in streams.items() if i < len(s)]
    return out


def _partition_major(streams: dict[int, list[dict[str, Any]]]) -> Fed:
    """The same records read one partition after another (a differently cut redelivery)."""
    return [(p, i, rec) for p, s in streams.items() for i, rec in enumerate(s)]


def _feed_fed(writer: BatchWriter, fed: Fed) -> None:
    for partition, offset, rec in fed:
        writer.add(AUDIT, partition, offset, rec)


def _stored_exactly_once(ch: ConnectClient, streams: dict[int, list[dict[str, Any]]]) -> None:
    """Every record of every partition is stored once, under its own source offset."""
    want = sorted((AUDIT, p, i, rec["event_id"]) for p, s in streams.items() for i, rec in enumerate(s))
    _, got = ch.query(f"SELECT src_topic, src_partition, src_offset, event_id FROM {ch.database}.audit_events "
                      "ORDER BY src_topic, src_partition, src_offset")
    assert sorted(got) == want


class RecordingClient(FlakyClient):
    """Forwards to a real client and records every insert's table, token and row count;
    ``fail`` lists the calls (1-based) that fail once, ``landed`` whether they landed first."""

    def __init__(self, inner: ConnectClient, fail: tuple[int, ...] = (), landed: bool = False) -> None:
        super().__init__(inner)
        self.fail, self.landed = fail, landed
        self.inserts: list[tuple[str, str, int]] = []

    def insert(self, table: str, rows: Any, column_names: Any, settings: Any = None) -> None:
        self.inserts.append((table.rsplit(".", 1)[-1], settings["insert_deduplication_token"], len(rows)))
        if len(self.inserts) not in self.fail or self.landed:
            self.inner.insert(table, rows, column_names, settings)
        if len(self.inserts) in self.fail:
            raise InsertFailed(f"insert {len(self.inserts)} failed", retry_after=0.0)


def test_one_insert_per_table_holds_every_partitions_rows(ch: ConnectClient, events: Events) -> None:
    """Four audit partitions and a checkpoint partition read interleaved: one insert per
    table, its token naming every partition's range in order, every offset committable."""
    client = RecordingClient(ch)
    writer = BatchWriter(client, ROUTES)
    streams = _partitions(events, 4, 2)  # 7 records each
    for p in (3, 1, 2, 0):  # first seen out of order: the token is still sorted
        writer.add(AUDIT, p, 0, streams[p][0])
    _feed_fed(writer, [f for f in _round_robin(streams, 1)])
    writer.add(CPS, 5, 40, events.checkpoint())
    assert writer.flush() == {**{(AUDIT, p): 7 for p in range(4)}, (CPS, 5): 41}
    ranges = ",".join(f"{AUDIT}:{p}:0-6" for p in range(4))
    assert sorted(client.inserts) == [("audit_events", f"lockgate:audit_events:{ranges}", 28),
                                      ("checkpoints", f"lockgate:checkpoints:{CPS}:5:40-40", 1)]
    _stored_exactly_once(ch, streams)


@pytest.mark.parametrize("partitions", [4, 64], ids=["4-partitions", "64-partitions-hashed-token"])
@pytest.mark.parametrize("landed", [False, True], ids=["failed-before-landing", "ack-lost"])
def test_failed_multi_partition_insert_is_retried_unchanged(
        ch: ConnectClient, events: Events, landed: bool, partitions: int) -> None:
    """A batch holding every partition's rows fails (before landing, or landed with the ack
    lost); rows read meanwhile go to a new batch; the retry carries the same token and rows,
    and nothing is stored twice. 40 partitions make the token long enough to be hashed."""
    client = RecordingClient(ch, fail=(1,), landed=landed)
    writer = BatchWriter(client, ROUTES)
    streams = _partitions(events, partitions, 1)  # 4 records each
    first = {p: s[:3] for p, s in streams.items()}
    _feed_fed(writer, _round_robin(first))
    with pytest.raises(InsertFailed, match="insert 1 failed"):
        writer.flush()
    assert writer.pending_rows == 3 * partitions
    _feed_fed(writer, [(p, 3, s[3]) for p, s in streams.items()])  # arrive while the batch waits
    assert writer.flush() == {(AUDIT, p): 4 for p in range(partitions)}
    (_, token, rows), (_, retry_token, retry_rows), (_, later_token, later_rows) = client.inserts
    assert (retry_token, retry_rows) == (token, rows) == (token, 3 * partitions)
    assert later_rows == partitions and later_token != token
    assert len(token) <= 1024 and (token.startswith("lockgate:audit_events:sha256:") == (partitions == 64))
    _stored_exactly_once(ch, streams)


@pytest.mark.parametrize("last_lands", [True, False], ids=["all-landed", "last-insert-lost"])
def test_crash_before_commit_redelivered_cut_differently_across_partitions(
        ch: ConnectClient, events: Events, last_lands: bool) -> None:
    """A writer inserts batches mixing three partitions, then the process dies before any
    commit (its last insert landed or not). The next one re-reads every partition from
    offset 0 in another order and cuts other batches (no token matches): each partition's
    stored offsets are dropped by set, the rest lands, nothing twice, nothing missing."""
    streams = _partitions(events, 3, 6)  # 19 records each, 57 in all
    crashed = RecordingClient(ch, fail=(6,) if not last_lands else ())
    first = BatchWriter(crashed, ROUTES, WriterConfig(max_rows=7, max_in_flight=1))
    _feed_fed(first, _round_robin({p: s[:12] for p, s in streams.items()}))  # 36 rows: 6 batches
    if last_lands:
        first.flush()
    else:
        with pytest.raises(InsertFailed):
            first.flush()
    _, per_partition = ch.query(f"SELECT src_partition, count() FROM {ch.database}.audit_events "
                                "GROUP BY src_partition ORDER BY src_partition")
    assert sum(n for _, n in per_partition) == (36 if last_lands else 35)
    again = RecordingClient(ch)
    second = BatchWriter(again, ROUTES, WriterConfig(max_rows=11))
    _feed_fed(second, _partition_major(streams))
    assert second.flush() == {(AUDIT, p): 19 for p in range(3)}
    assert not {t for _, t, _ in again.inserts} & {t for _, t, _ in crashed.inserts}  # tokens did not help
    assert sum(n for _, _, n in again.inserts) == 57 - (36 if last_lands else 35)
    _stored_exactly_once(ch, streams)


class GatedClient(FlakyClient):
    """Forwards to a real client; inserts wait for ``gate`` (the batch stays in flight)."""

    def __init__(self, inner: ConnectClient) -> None:
        super().__init__(inner)
        import threading

        self.gate, self.entered, self.landed = threading.Event(), threading.Event(), 0

    def insert(self, table: str, rows: Any, column_names: Any, settings: Any = None) -> None:
        self.entered.set()
        assert self.gate.wait(60)
        self.inner.insert(table, rows, column_names, settings)
        self.landed += 1


def test_revoking_one_partition_with_a_multi_partition_batch_in_flight(
        ch: ConnectClient, events: Events) -> None:
    """Partitions 0 and 1 share a batch in flight and an open batch when 0 is revoked:
    ``forget`` waits for the insert in flight, keeps partition 1's offsets and rows, drops
    partition 0's; 0's next owner re-reads it from its commit and stores each row once."""
    import threading

    client = GatedClient(ch)
    writer = BatchWriter(client, ROUTES, WriterConfig(max_rows=8))
    streams = _partitions(events, 2, 3)  # 10 records each
    fed = _round_robin(streams)
    _feed_fed(writer, fed[:8])  # sealed and handed over: offsets 0-3 of both partitions
    assert client.entered.wait(60)
    _feed_fed(writer, fed[8:14])  # open: offsets 4-6 of both
    assert client.landed == 0
    threading.Timer(0.2, client.gate.set).start()
    writer.forget(AUDIT, 0)
    assert client.landed == 1  # forget returned only once the insert in flight landed
    assert writer.pending_rows == 3  # partition 1's open rows, partition 0's gone
    _feed_fed(writer, [f for f in fed[14:] if f[0] == 1])  # offsets 7-9: 0 is no longer ours
    assert writer.flush() == {(AUDIT, 1): 10}
    assert client.landed == 2 and writer.pending_rows == 0
    nxt = BatchWriter(ch, ROUTES, WriterConfig(max_rows=3))  # 0's next owner; nothing was committed
    _feed_fed(nxt, _partition_major({0: streams[0]}))
    assert nxt.flush() == {(AUDIT, 0): 10}
    _stored_exactly_once(ch, streams)


@pytest.mark.parametrize("landed", [False, True], ids=["failed-before-landing", "ack-lost"])
def test_revoking_one_partition_of_a_failed_multi_partition_batch(
        ch: ConnectClient, events: Events, landed: bool) -> None:
    """A batch of partitions 0, 1 and 2 failed (or landed with its ack lost) and waits
    sealed when 0 is revoked: 0's rows are cut out, 1's and 2's are checked against the store
    again and land once under the token of what is left; 0's next owner stores its rows
    once. The retry cannot keep the old token: it named partition 0's range."""
    client = RecordingClient(ch, fail=(1,), landed=landed)
    writer = BatchWriter(client, ROUTES)
    streams = _partitions(events, 3, 2)  # 7 records each
    _feed_fed(writer, _round_robin(streams))
    with pytest.raises(InsertFailed):
        writer.flush()
    writer.forget(AUDIT, 0)
    assert writer.pending_rows == 14
    assert writer.flush() == {(AUDIT, 1): 7, (AUDIT, 2): 7}
    first_token = client.inserts[0][1]
    if landed:  # everything left was already stored: dropped by the check, nothing inserted
        assert len(client.inserts) == 1
    else:
        ((_, token, rows),) = client.inserts[1:]
        assert rows == 14 and token != first_token and f"{AUDIT}:0:" not in token
    nxt = RecordingClient(ch)
    successor = BatchWriter(nxt, ROUTES)
    _feed_fed(successor, _partition_major({0: streams[0]}))
    assert successor.flush() == {(AUDIT, 0): 7}
    assert sum(n for _, _, n in nxt.inserts) == (0 if landed else 7)
    _stored_exactly_once(ch, streams)


def test_a_dead_letter_commits_after_the_rows_before_it_in_a_shared_batch(
        ch: ConnectClient, events: Events) -> None:
    """A skipped record of partition 1 is committable only with the batch holding the rows of
    partition 1 read before it, which also holds partition 0's rows."""
    client = GatedClient(ch)
    writer = BatchWriter(client, ROUTES, WriterConfig(max_rows=4))
    streams = _partitions(events, 2, 1)
    _feed_fed(writer, _round_robin(streams)[:4])  # sealed, in flight: offsets 0-1 of both
    writer.skip(AUDIT, 1, 2)  # dead-lettered
    writer.skip(AUDIT, 3, 0)  # a partition with nothing buffered: committable at once
    assert writer.flush(wait=False) == {(AUDIT, 3): 1}
    client.gate.set()
    assert writer.flush() == {(AUDIT, 0): 2, (AUDIT, 1): 3}
