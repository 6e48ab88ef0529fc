"""Subprocess helper for test_verify_views.py (chDB: one data directory per process).

Commands (each prints JSON on stdout):

``setup HOME``
    the reader scenario (``tests.factories.ledger.reader_scenario``) written through the
    sink's own writer, so its materialized view fills ``action_summary``; prints the action
    ids, every event's place, and a snapshot of what the store holds for readers (derived
    columns by event id, summary groups) read back from ClickHouse before any tampering.
``sql HOME STATEMENT...``
    statements run as they are (``{db}`` is the database).
``serve HOME PORT``
    the sink's HTTP API over the store (with the processor key), until stdin closes;
    prints ``{"url": ...}`` once it listens.
``publish HOME BOOTSTRAP PREFIX GROUP``
    the scenario produced to ``PREFIX`` audit/checkpoints topics and written to the store
    at its real offsets, offsets committed for sink group ``GROUP`` (as the sink does after
    an insert), then two more chained events produced that the sink has not consumed.
``rewrite HOME``
    an attacker with write access to the store: rewrites proposal 13 of partition 0 (after
    the newest checkpoint) and re-chains 13..15; deletes partition 1's records after its
    checkpoint but the proposal; rebuilds the affected summary rows. The store alone then
    verifies clean.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from schemas.codec import get_codec
from sinks.clickhouse import ConnectClient, connect
from sinks.ledger_source import ClickHouseSource
from sinks.migrations import migrate
from sinks.view_check import display_value, stored_columns, stored_summary
from sinks.writer import BatchWriter
from tests.factories.ledger import reader_scenario
from tests.integration.verify_cli_helper import sql
from trust.chain import Chain
from trust.keys import SigningKey

DB = "lockgate"
AUDIT, CPS = "lockgate.audit", "lockgate.checkpoints"


def _client(home: Path) -> ConnectClient:
    client = connect(f"chdb://{home / 'clickhouse'}", DB)
    migrate(client)
    return client


def _scenario(home: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    key = SigningKey.generate()
    (home / "keys").mkdir(parents=True, exist_ok=True)
    key.save(home / "keys" / "processor.pem")
    lb, cps, ids = reader_scenario(key)
    return lb.events, cps, ids


def _write(client: ConnectClient, events: list[dict[str, Any]], cps: list[dict[str, Any]],
           positions: dict[str, tuple[int, int]] | None = None, audit: str = AUDIT,
           checkpoints: str = CPS) -> None:
    """Through the sink's writer; ``positions`` maps a record's key (:func:`_key`) to its
    (topic partition, offset), default (ledger partition, sequence) / (0, index)."""
    where = positions or {}
    writer = BatchWriter(client, {audit: "audit", checkpoints: "checkpoint"})
    for ev in events:
        part, off = where.get(_key(ev), (ev["ledger_partition"], ev["sequence"]))
        writer.add(audit, part, off, ev)
    for i, cp in enumerate(cps):
        part, off = where.get(_key(cp), (0, i))
        writer.add(checkpoints, part, off, cp)
    writer.flush()


def _key(record: dict[str, Any]) -> str:
    if "checkpoint_id" in record:
        return f"checkpoint {record['checkpoint_id']}"
    return f"event {record['event_id']}@{record['sequence']}"


def _snapshot(client: ConnectClient) -> dict[str, Any]:
    """What the store holds for readers, read back from ClickHouse (not re-derived)."""
    from sinks.view_check import EVENT_COLUMNS_SELECT, SUMMARY_FOLD_SELECT

    names, rows = client.query(f"SELECT event_id, sequence, {EVENT_COLUMNS_SELECT} FROM {DB}.audit_events")
    columns: dict[str, dict[str, Any]] = {}
    for r in rows:
        rec = dict(zip(names, r, strict=True))
        values = stored_columns(rec)
        columns[_key(rec)] = {
            n[2:]: display_value(n[2:], v) for n, v in zip(names[2:], values, strict=True)}
    names, rows = client.query(f"SELECT {SUMMARY_FOLD_SELECT} FROM {DB}.action_summary "
                               "GROUP BY tenant, day, action_id")
    summary = {}
    for r in rows:
        (tenant, day, aid), values = stored_summary(dict(zip(names, r, strict=True)))
        summary[f"{tenant}|{day}|{aid}"] = {
            n[2:]: display_value(n[2:], v) for n, v in zip(names[3:], values, strict=True)}
    return {"columns": columns, "summary": summary}


def _info(events: list[dict[str, Any]], ids: dict[str, str]) -> dict[str, Any]:
    return {"ids": ids, "events": [{k: ev[k] for k in ("event_id", "kind", "ledger_partition", "sequence",
                                                       "action_id", "tenant")} for ev in events]}


def setup(home: Path) -> dict[str, Any]:
    events, cps, ids = _scenario(home)
    client = _client(home)
    _write(client, events, cps)
    out = {**_info(events, ids), **_snapshot(client)}
    client.close()
    return out


def serve(home: Path, port: int) -> None:
    from prometheus_client import CollectorRegistry

    from sinks.action_record import keyring_from_file
    from sinks.api import ApiServer
    from sinks.query import AuditQueries
    from sinks.tokens import TokenStore

    client = _client(home)
    server = ApiServer(AuditQueries(client), TokenStore(home), port=port, registry=CollectorRegistry(),
                       keyring=keyring_from_file(home / "keys" / "processor.pub.pem"))
    server.start()
    print(json.dumps({"url": server.url}), flush=True)
    sys.stdin.read()  # the test closes stdin to stop the server
    server.stop()
    client.close()


def publish(home: Path, bootstrap: str, prefix: str, group: str) -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer, TopicPartition

    from lockgate.kernel.topic_admin import ensure_topics
    from schemas.topics import Topics

    topics = Topics(prefix)
    ensure_topics(bootstrap, topics)
    events, cps, ids = _scenario(home)
    codec = get_codec()
    positions: dict[str, tuple[int, int]] = {}
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})

    def send(topic: str, record: dict[str, Any], schema: str, partition: int) -> None:
        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                raise RuntimeError(f"delivery to {topic} failed: {err}")
            positions[_key(record)] = (int(msg.partition()), int(msg.offset()))
        producer.produce(topic, value=codec.encode(schema, record), partition=partition, on_delivery=delivered)

    for ev in events:
        send(topics.audit, ev, "AuditEvent", ev["ledger_partition"])
    for cp in cps:
        send(topics.checkpoints, cp, "Checkpoint", 0)
    producer.flush(30)
    client = _client(home)
    _write(client, events, cps, positions, topics.audit, topics.checkpoints)
    client.close()
    # What the sink does after an insert: commit past the stored records.
    ends: dict[tuple[str, int], int] = {}
    for key, (part, off) in positions.items():
        topic = topics.checkpoints if key.startswith("checkpoint ") else topics.audit
        ends[(topic, part)] = max(ends.get((topic, part), 0), off + 1)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()], asynchronous=False)
    consumer.close()
    # Two records the sink has not consumed yet: chained on, produced, not stored.
    chain = Chain()
    last = max((e for e in events if e["ledger_partition"] == 1), key=lambda e: e["sequence"])
    chain.resume_from(last)
    pending = []
    for i in range(2):
        ev = chain.append({k: last[k] for k in ("kind", "tenant", "action_id", "payload", "detail")} | {
            "event_id": f"00000000-0000-4000-8000-00000000000{i}", "recorded_at": last["recorded_at"] + i + 1}, 1)
        send(topics.audit, ev, "AuditEvent", 1)
        pending.append(ev["sequence"])
    producer.flush(30)
    return {**_info(events, ids), "pending_sequences": pending}


def rewrite(home: Path) -> dict[str, Any]:
    client = _client(home)
    source = ClickHouseSource(client)
    events = sorted(source.events(), key=lambda e: (e["ledger_partition"], e["sequence"]))
    codec = get_codec()
    p0 = [e for e in events if e["ledger_partition"] == 0]
    target = p0[13]
    proposal = codec.decode_as("ProposedAction", target["payload"])
    proposal["attributes"] = {"sql": "SELECT 1", "rows": 0}
    chain = Chain()
    chain.resume_from(p0[12])
    rewritten = []
    for i, ev in enumerate(p0[13:]):
        body = {k: ev[k] for k in ("event_id", "kind", "recorded_at", "tenant", "action_id", "payload", "detail")}
        if i == 0:
            body["payload"] = codec.encode("ProposedAction", proposal)
        rewritten.append(chain.append(body, 0) | {"_position": ev["_position"]})
    p1 = [e for e in events if e["ledger_partition"] == 1]
    tail_action = p1[3]["action_id"]
    statements = [
        f"ALTER TABLE {DB}.audit_events DELETE WHERE (ledger_partition = 0 AND sequence >= 13) OR "
        "(ledger_partition = 1 AND sequence >= 3) SETTINGS mutations_sync = 1",
        f"ALTER TABLE {DB}.action_summary DELETE WHERE action_id IN ('{target['action_id']}', '{tail_action}') "
        "SETTINGS mutations_sync = 1",
    ]
    for stmt in statements:
        client.command(stmt)
    # Re-inserted through the sink's own writer (so the view rebuilds the summary rows), at
    # the records' original offsets under a topic name of its own (fresh dedup tokens).
    writer = BatchWriter(client, {"attacker": "audit"})
    for ev in [*rewritten, p1[3]]:
        writer.add("attacker", ev["_position"][0], ev["_position"][1], {k: v for k, v in ev.items()
                                                                         if k != "_position"})
    writer.flush()
    client.close()
    return {"rewritten": [e["sequence"] for e in rewritten], "deleted_partition_1": [4, 5],
            "action": target["action_id"]}


if __name__ == "__main__":
    cmd, home_arg, *rest = sys.argv[1:]
    home = Path(home_arg)
    if cmd == "serve":
        serve(home, int(rest[0]))
        sys.exit(0)
    result = (setup(home) if cmd == "setup" else sql(home, rest) if cmd == "sql"
              else publish(home, *rest) if cmd == "publish" else rewrite(home, *rest))
    print(json.dumps(result))
