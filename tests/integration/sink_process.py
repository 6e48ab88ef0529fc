"""The sink as its own process (as ``lockgate up`` starts it), and what tests read from it.

Results are read through the sink's HTTP API: the embedded ClickHouse allows one owning
process per data directory, and the pytest process may own another one already.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sinks.tokens import create_token
from tests.conftest import free_port
from tests.integration.conftest import get_json, wait_for

__all__ = ["SinkProcess", "alive", "audit_records", "child_pids", "produce", "start_sink"]

AUDIT_PARTITIONS = 4  # of the audit topic (catalogue)


@dataclass
class SinkProcess:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    log: Path
    env: dict[str, str] = field(repr=False)

    def health(self) -> dict[str, Any]:
        body = get_json(f"{self.url}/healthz", None)
        return body if isinstance(body, dict) else {}

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def event_ids(self) -> list[str]:
        """Every stored ledger row's event id (duplicates included), via ``/api/events``."""
        ids: list[str] = []
        for part in range(AUDIT_PARTITIONS):
            after = -1
            while True:
                req = urllib.request.Request(f"{self.url}/api/events?partition={part}&after={after}&limit=10000",
                                             headers={"Authorization": f"Bearer {self.token}"})
                with urllib.request.urlopen(req, timeout=60) as resp:  # a loaded box: be patient
                    page = json.loads(resp.read())
                ids += [e["event_id"] for e in page["events"]]
                if page["next_after"] is None or len(page["events"]) < 10_000:
                    break
                after = page["next_after"]
        return ids

    def stored(self) -> int:
        return len(self.event_ids())

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def child_pids(pid: int) -> set[int]:
    """Live child processes of ``pid`` (the sink's derive workers and their resource tracker)."""
    out: set[int] = set()
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:  # a thread may end between the listing and the read
            out.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def start_sink(bootstrap: str, prefix: str, home: Path, state: Path,
               extra_env: dict[str, str] | None = None, tenant: str = "acme") -> SinkProcess:
    """Start ``python -m sinks`` on its own ClickHouse directory under ``state``; wait until it consumes."""
    port = free_port()
    _, token = create_token(home, tenant)
    log = state / "sink.log"
    env = {**os.environ, "LOCKGATE_HOME": str(home), "LOCKGATE_TOPIC_PREFIX": prefix,
           "LOCKGATE_BOOTSTRAP_SERVERS": bootstrap,
           "LOCKGATE_CLICKHOUSE_DSN": f"chdb://{state / 'ch'}",
           "LOCKGATE_SINK_GROUP_ID": f"sink-{uuid.uuid4().hex[:8]}",
           "LOCKGATE_SINK_INSTANCE_ID": f"sink-test-{uuid.uuid4().hex[:8]}",
           "LOCKGATE_SINK_HTTP_PORT": str(port), "PYTHONFAULTHANDLER": "1", **(extra_env or {})}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sinks"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    handle = SinkProcess(proc, f"http://127.0.0.1:{port}", token, log, env)
    try:
        wait_for(lambda: handle.health().get("consuming") or proc.poll() is not None, 60, "sink consuming")
    except BaseException:
        handle.stop()
        raise
    if proc.poll() is not None:
        raise RuntimeError(f"the sink exited with {proc.returncode}; log:\n{handle.tail()}")
    return handle


def audit_records(n: int, tenant: str = "acme") -> tuple[list[tuple[int, bytes]], set[str]]:
    """``n`` encoded AuditEvents spread over the audit partitions, and their event ids."""
    import time

    from schemas.codec import get_codec

    codec = get_codec()
    aid = str(uuid.uuid4())
    payload = codec.encode("Verdict", {
        "action_id": aid, "correlation_id": aid, "reply_instance": "g",
        "decided_at": time.time_ns() // 1000, "tenant": tenant, "service": "billing",
        "decision": "allow", "basis": "default", "matched_rules": [], "policy_name": "p",
        "policy_version": 1, "reason": "sink recovery test", "eval_latency_us": 1,
        "processor_id": "p", "key_id": "k", "signature": b"s" * 64,
    })
    out: list[tuple[int, bytes]] = []
    ids: set[str] = set()
    for i in range(n):
        event_id = str(uuid.uuid4())
        ids.add(event_id)
        part = i % AUDIT_PARTITIONS
        out.append((part, codec.encode("AuditEvent", {
            "event_id": event_id, "kind": "verdict", "recorded_at": time.time_ns() // 1000,
            "tenant": tenant, "action_id": None, "payload": payload, "detail": None,
            "ledger_partition": part, "sequence": i // AUDIT_PARTITIONS, "prev_hash": b"\0" * 32,
            "hash": b"\1" * 32, "canonical_version": 1,
        })))
    return out, ids


def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes]]) -> None:
    """Produce ``(partition, value)`` records idempotently and wait until all are acknowledged."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    for i, (part, value) in enumerate(records):
        producer.produce(topic, value, partition=part)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
