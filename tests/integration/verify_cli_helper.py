"""Subprocess helper for test_verify_cli.py: chDB allows one data directory per process.

``python -m tests.integration.verify_cli_helper setup HOME`` builds a clean signed ledger
and writes it through the sink's own writer; ``... sql HOME STATEMENT...`` runs statements
(``{db}`` is replaced by the database name). Prints JSON on stdout.

``setup-tlog HOME`` builds the same ledger under whole-log checkpoints, each submitted to a
real witness (HTTP on localhost, its own home under ``HOME/witness-home``) exactly as the
ledger writer will, and stores them with the cosignatures; ``fork HOME`` then rewrites
partition 0 without its record 3 and re-signs it with the processor key (a compromised
processor), asks the same witness to cosign, and stores what it got.

``setup-split HOME`` stores one partition whose legacy interval checkpoint (created in 2023)
ends right after an action's verdict, and whose next checkpoint (created now) covers that
action's outcome and another whole action: ``verify --since 1h`` starts the partition at the
outcome, whose verdict lies before the window.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from schemas.codec import get_codec
from sinks.clickhouse import connect
from sinks.migrations import migrate
from sinks.writer import BatchWriter
from tests.integration.sinks.sink_fixtures import Events
from trust.chain import Chain
from trust.checkpoints import build_checkpoint
from trust.keys import SigningKey
from trust.signatures import sign_record

DB = "lockgate"
AUDIT = "lockgate.audit"
CPS = "lockgate.checkpoints"


def _unchained(kind: str, payload: bytes, aid: str | None, at: int) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "kind": kind, "recorded_at": at, "tenant": "acme",
            "action_id": aid, "payload": payload, "detail": None}


def _ledger(home: Path) -> tuple[SigningKey, dict[int, list[dict[str, Any]]], list[str]]:
    codec = get_codec()
    key, _ = SigningKey.generate(), None
    (home / "keys").mkdir(parents=True, exist_ok=True)
    key.save(home / "keys" / "processor.pem")
    chain = Chain()
    fx = Events()
    events: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    t = 1_700_000_000_000_000
    actions: list[str] = []
    for i, part in enumerate([0, 0, 0, 1, 1]):
        aid = str(uuid.uuid4())
        actions.append(aid)
        _, act = fx.action(action_id=aid, at=t + i * 10)
        verdict = sign_record({
            "action_id": aid, "correlation_id": aid, "reply_instance": "g1", "decided_at": t + i * 10 + 1,
            "tenant": "acme", "service": "billing", "decision": "allow", "basis": "rule",
            "matched_rules": [], "policy_name": "prod", "policy_version": 7, "reason": "ok",
            "eval_latency_us": 42, "processor_id": "p1", "key_id": key.key_id, "signature": b"",
        }, "signature", b"", key)
        vbytes = codec.encode("Verdict", verdict)
        outcome = {
            "outcome_id": str(uuid.uuid4()), "action_id": aid, "correlation_id": aid,
            "recorded_at": t + i * 10 + 2, "tenant": "acme", "service": "billing", "actor_id": "alice",
            "status": "committed", "error_type": None, "error_message": None, "before_json": None,
            "after_json": None, "verdict": vbytes, "service_key_id": None, "service_signature": None,
        }
        for kind, payload, at in (("action", act["payload"], t + i * 10), ("verdict", vbytes, t + i * 10 + 1),
                                  ("outcome", codec.encode("ActionOutcome", outcome), t + i * 10 + 2)):
            events[part].append(chain.append(_unchained(kind, payload, aid, at), part))
    return key, events, actions


def setup(home: Path) -> dict[str, Any]:
    key, events, actions = _ledger(home)
    t = 1_700_000_000_000_000
    cps = [
        build_checkpoint(events[0][:6], key, "p1", t + 100),
        build_checkpoint(events[0][6:], key, "p1", t + 101, prev_head=events[0][5]["hash"]),
        build_checkpoint(events[1], key, "p1", t + 102),
    ]
    _store(home, events, cps)
    return {"actions": actions,
            "events": {str(p): [{"event_id": e["event_id"], "sequence": e["sequence"]} for e in evs]
                       for p, evs in events.items()}}


def split_ledger(home: Path) -> tuple[dict[int, list[dict[str, Any]]], list[dict[str, Any]], dict[str, Any]]:
    """The ``setup-split`` ledger (module docstring): its events by partition, its checkpoints,
    and what tests name (the split action, its verdict's and outcome's event ids, the anchor).
    Writes the processor key into ``home``; stores nothing."""
    key, events, actions = _ledger(home)
    t = 1_700_000_000_000_000
    # Partition 0 holds three whole actions (3 events each): the first two, then the third's
    # proposal and verdict are checkpointed in 2023; the third's outcome starts what the
    # second checkpoint (created a second ago) covers. Partition 1 has one old checkpoint:
    # a --since window leaves it empty.
    p0 = events[0]
    anchor = 8
    cps = [
        build_checkpoint(p0[:anchor], key, "p1", t + 100),
        build_checkpoint(p0[anchor:], key, "p1", time.time_ns() // 1000 - 1_000_000, prev_head=p0[anchor - 1]["hash"]),
        build_checkpoint(events[1], key, "p1", t + 102),
    ]
    return events, cps, {"action": actions[2], "verdict_event_id": p0[anchor - 1]["event_id"], "anchor": anchor,
                         "outcome_event_id": p0[anchor]["event_id"]}


def setup_split(home: Path) -> dict[str, Any]:
    events, cps, info = split_ledger(home)
    _store(home, events, cps)
    return info


def _store(home: Path, events: dict[int, list[dict[str, Any]]], cps: list[dict[str, Any]],
           offset: int = 0) -> None:
    client = connect(f"chdb://{home / 'clickhouse'}", DB)
    migrate(client)
    writer = BatchWriter(client, {AUDIT: "audit", CPS: "checkpoint"})
    for part, evs in events.items():
        for off, ev in enumerate(evs):
            writer.add(AUDIT, part, offset + off, ev)
    for off, cp in enumerate(cps):
        writer.add(CPS, 0, offset + off, cp)
    writer.flush()
    client.close()


def _witness(home: Path) -> Any:
    from witness import WitnessSettings, build_witness

    server = build_witness(WitnessSettings(home=home / "witness-home", witness_port=0,
                                           witness_name="witness.example/w1",
                                           witness_log_key=home / "keys" / "processor.pub.pem"))
    server.start()
    return server


def _post(url: str) -> Any:
    import urllib.error
    import urllib.request

    def post(body: bytes) -> tuple[int, str | None, bytes]:
        req = urllib.request.Request(f"{url}/add-checkpoint", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.headers.get("Content-Type"), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type"), exc.read()

    return post


def _witnessed_checkpoints(home: Path, key: SigningKey, part: int, evs: list[dict[str, Any]], sizes: list[int],
                           witness_size: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Whole-log checkpoints at ``sizes``, each submitted to the witness as the writer will."""
    from trust.cosignature import CosignatureV1Verifier
    from trust.partition_log import PartitionLog
    from trust.tlog_witness import Cosigned, submit_checkpoint, with_cosignatures

    server = _witness(home)
    verifier = CosignatureV1Verifier.from_vkey((home / "witness-home" / "witness" / "witness.vkey").read_text())
    log = PartitionLog(part)
    out: list[dict[str, Any]] = []
    answers: list[str] = []
    try:
        for size in sizes:
            while log.size < size:
                log.append(evs[log.size]["hash"])
            cp = log.checkpoint(key, "p1", 1_700_000_000_000_000 + 100 * part + size)
            result, known = submit_checkpoint(_post(server.url), cp["signature"].decode(), witness_size,
                                              log.consistency_proof, verifier)
            answers.append(type(result).__name__ + (f" {result.status}" if hasattr(result, "status") else ""))
            if isinstance(result, Cosigned):
                cp = with_cosignatures(cp, result.cosignatures)
                witness_size = known or witness_size
            out.append(cp)
    finally:
        server.close()
    return out, answers


def setup_tlog(home: Path) -> dict[str, Any]:
    key, events, actions = _ledger(home)
    cps0, _ = _witnessed_checkpoints(home, key, 0, events[0], [6, 9], 0)
    cps1, _ = _witnessed_checkpoints(home, key, 1, events[1], [6], 0)
    _store(home, events, cps0 + cps1)
    return {"actions": actions, "witness_vkey": str(home / "witness-home" / "witness" / "witness.vkey"),
            "events": {str(p): [{"event_id": e["event_id"], "sequence": e["sequence"]} for e in evs]
                       for p, evs in events.items()}}


def fork(home: Path) -> dict[str, Any]:
    """Rewrite partition 0 without record 3, re-sign it, and ask the witness to cosign it."""
    from sinks.ledger_source import ClickHouseSource

    key = SigningKey.load(home / "keys" / "processor.pem")
    client = connect(f"chdb://{home / 'clickhouse'}", DB)
    stored = [e for e in ClickHouseSource(client).events() if e["ledger_partition"] == 0]
    client._client.command(f"ALTER TABLE {DB}.audit_events DELETE WHERE ledger_partition = 0 "
                           "SETTINGS mutations_sync = 1")
    client.close()
    chain = Chain()
    rewritten = [chain.append({k: v for k, v in e.items() if not k.startswith("_")}, 0)
                 for e in stored if e["sequence"] != 3]
    cps, answers = _witnessed_checkpoints(home, key, 0, rewritten, [len(rewritten)], 9)
    _store(home, {0: rewritten}, cps, offset=1000)
    return {"witness": answers, "size": len(rewritten)}


def sql(home: Path, statements: list[str]) -> dict[str, Any]:
    client = connect(f"chdb://{home / 'clickhouse'}", DB)
    # The raw clickhouse-connect client, without a (empty) parameter dict: through chDB an
    # INSERT ... SELECT sent with parameters={} was observed to write nothing.
    raw = client._client
    out = [str(raw.command(s.replace("{db}", DB))) for s in statements]
    client.close()
    return {"results": out}


if __name__ == "__main__":
    cmd, home_arg, *rest = sys.argv[1:]
    commands = {"setup": setup, "setup-tlog": setup_tlog, "fork": fork, "setup-split": setup_split}
    result = commands[cmd](Path(home_arg)) if cmd in commands else sql(Path(home_arg), rest)
    print(json.dumps(result))
