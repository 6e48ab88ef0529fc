"""The whole pipeline: Guard → processor (verdict + ledger) → sink → ClickHouse → API.

Real broker, real Faust worker, real sink process with the embedded ClickHouse engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from producers import ActionBlocked
from sinks.tokens import create_token
from tests.integration.conftest import ProcessorHandle, Sink, get_json, wait_for

pytestmark = pytest.mark.integration


def test_allowed_and_blocked_actions_are_queryable_with_all_four_facts(
        pipeline: tuple[ProcessorHandle, Sink, str]) -> None:
    processor, sink, token = pipeline
    actor = f"pat-{uuid.uuid4().hex[:6]}"
    with processor.guard() as guard:
        with guard.action(actor=actor, roles=["dba"], type="db.query", resource="db/prod/orders",
                          attributes={"sql": "UPDATE orders SET total = 10 WHERE id = 3"}) as act:
            act.record_change(before={"id": 3, "total": 9}, after={"id": 3, "total": 10})
        allowed_id = act.action_id
        with pytest.raises(ActionBlocked) as info:
            with guard.action(actor=actor, type="db.query", resource="db/prod/orders",
                              attributes={"sql": "DELETE FROM orders"}):
                raise AssertionError("must not run")
        blocked_id = info.value.verdict.action_id

    def both_landed() -> dict[str, dict[str, Any]] | None:
        page = get_json(f"{sink.url}/api/actions?actor={actor}&since=1h", token)
        if not page:
            return None
        rows = {r["action_id"]: r for r in page["actions"]}
        ok = (allowed_id in rows and blocked_id in rows and rows[allowed_id]["outcome_status"] == "committed"
              and rows[blocked_id]["has_verdict"])
        return rows if ok else None

    rows = wait_for(both_landed, 60, "both actions in ClickHouse")
    allowed, blocked = rows[allowed_id], rows[blocked_id]
    # who
    assert allowed["actor_id"] == actor and allowed["actor_roles"] == ["dba"] and allowed["service"] == "cli"
    # what data changed
    assert json.loads(allowed["before_json"]) == {"id": 3, "total": 9}
    assert json.loads(allowed["after_json"]) == {"id": 3, "total": 10}
    assert blocked["sql"] == "DELETE FROM orders"
    # which rules applied
    assert blocked["rule_ids"] == ["prod-delete-update-without-where"]
    assert blocked["rule_modes"] == ["enforce"]
    # passed or blocked
    assert allowed["decision"] == "allow" and blocked["decision"] == "block"
    assert blocked["reason"] and blocked["policy_name"] == "example"
    assert blocked["outcome_status"] in ("", None)

    detail = get_json(f"{sink.url}/api/actions/{blocked_id}", token)
    kinds = sorted(e["kind"] for e in detail["events"])
    assert kinds == ["action", "verdict"]


def test_ledger_and_checkpoints_land(pipeline: tuple[ProcessorHandle, Sink, str]) -> None:
    processor, sink, _token = pipeline
    _info, admin = create_token(processor.home, "*", label="pipeline admin")

    def checkpoints() -> Any:
        res = get_json(f"{sink.url}/api/checkpoints", admin)
        return res and res.get("checkpoints")

    cps = wait_for(checkpoints, 30, "a signed checkpoint")
    # Whole-log checkpoints: each covers its partition from sequence 0; the signature is
    # the C2SP signed note (UTF-8) whose body names the log, the size and the root.
    for cp in cps:
        assert cp["signature_format"] == "tlog-checkpoint/v1" and cp["first_sequence"] == 0
        origin, size = bytes.fromhex(cp["signature_hex"]).decode().split("\n")[:2]
        assert origin.endswith(f"/p{cp['ledger_partition']}") and size == str(cp["last_sequence"] + 1)


def _verify_cli(sink: Sink, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**sink.env}
    return subprocess.run([sys.executable, "-m", "lockgate.cli", "verify", "--json", *extra],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def _outcome(action_id: str, verdict: bytes | None) -> dict[str, Any]:
    return {
        "outcome_id": str(uuid.uuid4()), "action_id": action_id, "correlation_id": action_id,
        "recorded_at": time.time_ns() // 1000, "tenant": "default", "service": "cli", "actor_id": "sneaky",
        "status": "committed", "error_type": None, "error_message": None, "before_json": '{"balance": 10}',
        "after_json": '{"balance": 0}', "verdict": verdict, "service_key_id": None, "service_signature": None,
    }


def test_verify_proves_enforcement_and_reports_bypasses(pipeline: tuple[ProcessorHandle, Sink, str]) -> None:
    """A clean pipeline verifies; a commit that skipped the guard or used a forged verdict is named."""
    from confluent_kafka import Producer

    from schemas.codec import get_codec
    from trust.keys import SigningKey
    from trust.signatures import sign_record

    processor, sink, token = pipeline
    with processor.guard() as guard, guard.action(actor="ok", type="deploy", resource="env/staging"):
        pass
    def complete() -> bool:
        # The outcome is chained straight from `outcomes`, the verdict through `audit-intake`:
        # either may land first, and verify judges what has landed. Wait for both.
        page = get_json(f"{sink.url}/api/actions?actor=ok&outcome=committed", token)
        return bool(page) and any(r["has_verdict"] for r in page["actions"])

    wait_for(complete, 60, "the action's verdict and outcome")
    clean = _verify_cli(sink, "--decisions")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    report = json.loads(clean.stdout)
    assert report["decisions"]["checked"] >= 2 and report["bindings"]["bound_outcomes"] >= 1

    codec = get_codec()
    cli_key = SigningKey.load(processor.home / "keys" / "services" / "cli.pem")
    skipped = str(uuid.uuid4())
    forged_for = str(uuid.uuid4())
    impostor = SigningKey.generate()
    forged_verdict = codec.encode("Verdict", sign_record({
        "action_id": forged_for, "correlation_id": "x", "reply_instance": "x", "decided_at": 1,
        "tenant": "default", "service": "cli", "decision": "allow", "basis": "rule", "matched_rules": [],
        "policy_name": "example", "policy_version": 1, "reason": "trust me", "eval_latency_us": 1,
        "processor_id": "processor-1", "key_id": "", "signature": b""}, "signature", b"", impostor))
    producer = Producer({"bootstrap.servers": processor.bootstrap})
    for rec in (_outcome(skipped, None), _outcome(forged_for, forged_verdict)):
        signed = sign_record(rec, "service_signature", None, cli_key)
        producer.produce(processor.topics.outcomes, codec.encode("ActionOutcome", signed),
                         key=rec["action_id"].encode())
    assert producer.flush(10) == 0

    def both_landed() -> bool:
        got = [get_json(f"{sink.url}/api/actions/{a}", token) for a in (skipped, forged_for)]
        return all(g and any(e["kind"] == "outcome" for e in g.get("events", [])) for g in got)

    wait_for(both_landed, 60, "bypassing outcomes in ClickHouse")
    res = _verify_cli(sink)
    assert res.returncode == 1, res.stdout + res.stderr
    bypass = json.loads(res.stdout)
    findings = bypass["findings"]
    by_action = {(f["kind"], f.get("action_id")) for f in findings}
    assert ("commit_without_allow", skipped) in by_action, findings
    # Seconds old and without a verdict, yet not pending: neither embeds a valid allow.
    assert not {skipped, forged_for} & set(bypass["pending_verdicts"]["action_ids"]), bypass["pending_verdicts"]
    assert any(a == forged_for and k in ("embedded_verdict_forged", "commit_without_allow")
               for k, a in by_action), findings
    assert ("embedded_verdict_forged", forged_for) in by_action, findings

    history = subprocess.run([sys.executable, "-m", "lockgate.cli", "history", "", "--from-topics", "--json"],
                             capture_output=True, text=True, env=sink.env, timeout=120, check=False)
    assert history.returncode == 0, history.stderr
    assert any(st["actor"] == "ok" and st["outcome"] == "committed" for st in json.loads(history.stdout))

    replay = _verify_cli(sink, "--from-topics")
    assert replay.returncode == 1, replay.stdout + replay.stderr
    replay_kinds = {(f["kind"], f.get("action_id")) for f in json.loads(replay.stdout)["findings"]}
    assert ("commit_without_allow", skipped) in replay_kinds


def test_dashboard_is_served_with_protective_headers(pipeline: tuple[ProcessorHandle, Sink, str]) -> None:
    import urllib.request

    _processor, sink, _token = pipeline
    with urllib.request.urlopen(f"{sink.url}/", timeout=5) as resp:
        headers = resp.headers
        assert b"Lockgate" in resp.read()
    assert headers["Referrer-Policy"] == "no-referrer"  # ?token= never leaks in a Referer
    assert headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
