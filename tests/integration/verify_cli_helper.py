"""Subprocess helper for test_verify_cli.py: chDB allows one data directory per process.

``python -m tests.integration.verify_cli_helper setup HOME`` builds a clean signed ledger
and writes it through the sink's own writer; ``... sql HOME STATEMENT...`` runs statements
(``{db}`` is replaced by the database name). Prints JSON on stdout.
"""

from __future__ import annotations

import json
import sys
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


def setup(home: Path) -> dict[str, Any]:
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
    cps = [
        build_checkpoint(events[0][:6], key, "p1", t + 100),
        build_checkpoint(events[0][6:], key, "p1", t + 101, prev_head=events[0][5]["hash"]),
        build_checkpoint(events[1], key, "p1", t + 102),
    ]
    client = connect(f"chdb://{home / 'clickhouse'}", DB)
    migrate(client)
    writer = BatchWriter(client, {AUDIT: "audit", CPS: "checkpoint"})
    for part, evs in events.items():
        for off, ev in enumerate(evs):
            writer.add(AUDIT, part, off, ev)
    for off, cp in enumerate(cps):
        writer.add(CPS, 0, off, cp)
    writer.flush()
    client.close()
    return {"actions": actions,
            "events": {str(p): [{"event_id": e["event_id"], "sequence": e["sequence"]} for e in evs]
                       for p, evs in events.items()}}


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
    result = setup(Path(home_arg)) if cmd == "setup" else sql(Path(home_arg), rest)
    print(json.dumps(result))
