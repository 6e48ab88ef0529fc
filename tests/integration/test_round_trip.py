"""The guardrail end to end: real broker, real Faust worker, signed verdicts, fail-closed SDK."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from processors.policy.files import load_policy_text
from processors.policy.store import publish_policy
from producers import (
    Action,
    ActionBlocked,
    Actor,
    AsyncGuard,
    Guard,
    GuardSettings,
    GuardUnavailable,
    VerdictRejected,
    VerdictTimeout,
)
from schemas.codec import get_codec
from schemas.topics import DEAD_LETTER_MAX_BYTES
from tests.integration.conftest import ProcessorHandle
from trust.keys import SigningKey

pytestmark = pytest.mark.integration

CODEC = get_codec()
READER = get_codec(DEAD_LETTER_MAX_BYTES)  # dead letters may carry a whole oversized record


def read_topic(bootstrap: str, topic: str, predicate: Callable[[dict[str, Any]], bool], schema: str,
               timeout_s: float = 20.0) -> dict[str, Any]:
    """Read ``topic`` from the start until a record satisfies ``predicate``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            rec = READER.decode_as(schema, msg.value() or b"")
            if predicate(rec):
                return rec
    finally:
        consumer.close()
    raise AssertionError(f"no matching {schema} on {topic} within {timeout_s}s")


def test_allowed_action_runs_body_and_records_outcome(processor: ProcessorHandle) -> None:
    ran = []
    with processor.guard() as guard, guard.action(
        actor="alice", roles=["dba"], type="db.query", resource="db/prod/orders",
        attributes={"sql": "UPDATE orders SET status = 'paid' WHERE id = 7"},
        change={"status": "paid"},
    ) as act:
        ran.append(act.verdict.decision)
        act.record_change(before={"id": 7, "status": "open"}, after={"id": 7, "status": "paid"})
    assert ran == ["allow"]
    outcome = read_topic(processor.bootstrap, processor.topics.outcomes,
                         lambda r: r["action_id"] == act.action_id, "ActionOutcome")
    assert outcome["status"] == "committed"
    assert json.loads(outcome["after_json"]) == {"id": 7, "status": "paid"}
    assert json.loads(outcome["before_json"]) == {"id": 7, "status": "open"}
    assert outcome["service_signature"] is not None
    embedded = CODEC.decode_as("Verdict", outcome["verdict"])
    assert embedded["action_id"] == act.action_id and embedded["decision"] == "allow"


@pytest.mark.parametrize("sql", [
    "DELETE FROM orders -- WHERE id = 1",
    "delete from orders",
    "SELECT 1; TRUNCATE TABLE orders",
    "UPDATE orders SET a = 1 /* WHERE id = 1 */",
])
def test_dangerous_sql_is_blocked_before_the_body(processor: ProcessorHandle, sql: str) -> None:
    ran = []
    with processor.guard() as guard:
        with pytest.raises(ActionBlocked) as info:
            with guard.action(actor="mallory", type="db.query", resource="db/prod/orders",
                              attributes={"sql": sql}):
                ran.append(True)
    assert ran == []
    verdict = info.value.verdict
    assert verdict.decision == "block"
    assert verdict.basis == "rule"
    assert {r.id for r in verdict.enforced_rules} & {"prod-delete-update-without-where", "drop-or-truncate"}
    assert verdict.reason


def test_failed_body_records_failed_outcome_and_reraises(processor: ProcessorHandle) -> None:
    with processor.guard() as guard:
        with pytest.raises(ZeroDivisionError):
            with guard.action(actor="alice", type="deploy", resource="svc/staging/api") as act:
                _ = 1 / 0
    outcome = read_topic(processor.bootstrap, processor.topics.outcomes,
                         lambda r: r["action_id"] == act.action_id, "ActionOutcome")
    assert outcome["status"] == "failed"
    assert outcome["error_type"] == "ZeroDivisionError"


def test_shadow_match_is_reported_but_does_not_block(processor: ProcessorHandle) -> None:
    with processor.guard() as guard:
        verdict = guard.check(Action(Actor("alice"), "db.query", "db/prod/orders",
                                     {"sql": "SELECT * FROM orders"}))
    assert verdict.allowed
    assert [r.id for r in verdict.shadow_rules] == ["prod-select-without-limit"]
    assert verdict.enforced_rules == ()


def test_policy_apply_takes_effect_without_restart(processor: ProcessorHandle) -> None:
    text = EXAMPLE_WITH_FREEZE
    publish_policy(load_policy_text(text, source="freeze.yaml"), processor.bootstrap, processor.topics,
                   published_by="tests")
    applied = time.monotonic()
    with processor.guard() as guard:
        while True:
            verdict = guard.check(Action(Actor("alice"), "deploy", "svc/staging/api"))
            if not verdict.allowed:
                break
            assert time.monotonic() - applied < 15, "policy change not picked up"
    assert [r.id for r in verdict.enforced_rules] == ["change-freeze"]
    # restore the example policy for the other tests in this module
    from tests.integration.conftest import EXAMPLE_POLICY

    publish_policy(load_policy_text(EXAMPLE_POLICY.read_bytes(), source=str(EXAMPLE_POLICY)),
                   processor.bootstrap, processor.topics, published_by="tests")
    with processor.guard() as guard:
        deadline = time.monotonic() + 15
        while not guard.check(Action(Actor("alice"), "deploy", "svc/staging/api")).allowed:
            assert time.monotonic() < deadline


EXAMPLE_WITH_FREEZE = """
name: freeze
default: allow
on_error: block
rules:
  - id: change-freeze
    match: {types: [deploy]}
    when: "true"
    effect: block
    message: change freeze in effect
"""


def test_forged_verdict_is_rejected(processor: ProcessorHandle, tmp_path: Path) -> None:
    impostor = SigningKey.generate()
    pub = impostor.save(tmp_path / "impostor.pem")
    ran = []
    with processor.guard(verdict_public_key=pub) as guard:
        with pytest.raises(VerdictRejected, match="does not verify"):
            with guard.action(actor="alice", type="deploy", resource="svc/staging/api"):
                ran.append(True)
    assert ran == []


def test_timeout_is_fail_closed(processor: ProcessorHandle, kafka_bootstrap: str) -> None:
    from lockgate.kernel.topic_admin import ensure_topics
    from schemas.topics import Topics

    idle = Topics("noprocessor-" + processor.topics.prefix)
    ensure_topics(kafka_bootstrap, idle)
    ran = []
    with processor.guard(topic_prefix=idle.prefix, timeout_s=1.0) as guard:
        with pytest.raises(VerdictTimeout, match="did not run"):
            with guard.action(actor="alice", type="deploy", resource="svc/staging/api"):
                ran.append(True)
    assert ran == []


def test_broker_unavailable_is_fail_closed(processor: ProcessorHandle) -> None:
    from tests.conftest import free_port

    with pytest.raises(GuardUnavailable, match="cannot reach Kafka"):
        processor.guard(bootstrap_servers=f"127.0.0.1:{free_port()}", timeout_s=1.0)


def test_unauthenticated_service_is_blocked(processor: ProcessorHandle, tmp_path: Path) -> None:
    rogue = SigningKey.generate()
    rogue.save(tmp_path / "rogue.pem")
    with processor.guard(service="rogue", service_key=tmp_path / "rogue.pem") as guard:
        verdict = guard.check(Action(Actor("alice"), "deploy", "svc/staging/api"))
    assert verdict.decision == "block"
    assert verdict.basis == "unauthenticated"
    assert "rogue" in verdict.reason


def test_unsigned_proposal_from_known_service_is_blocked(processor: ProcessorHandle, tmp_path: Path) -> None:
    import shutil

    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    shutil.copy(processor.home / "keys" / "processor.pub.pem", home / "keys" / "processor.pub.pem")
    with processor.guard(home=home, service="cli") as guard:
        verdict = guard.check(Action(Actor("alice"), "deploy", "svc/staging/api"))
    assert verdict.decision == "block"
    assert verdict.basis == "unauthenticated"
    assert "unsigned" in verdict.reason


def test_malformed_bytes_go_to_dead_letter_and_processor_keeps_serving(processor: ProcessorHandle) -> None:
    marker = os.urandom(8).hex().encode()
    producer = Producer({"bootstrap.servers": processor.bootstrap})
    producer.produce(processor.topics.actions, b"\x00not avro " + marker, key=b"junk")
    producer.flush(10)
    dl = read_topic(processor.bootstrap, processor.topics.deadletter, lambda r: marker in r["raw"], "DeadLetter")
    assert dl["stage"] == "processor"
    assert dl["error_type"] == "MalformedRecord"
    assert dl["raw"] == b"\x00not avro " + marker
    with processor.guard() as guard:
        assert guard.check(Action(Actor("alice"), "deploy", "svc/staging/api")).allowed


def test_concurrent_requests_are_matched_by_correlation(processor: ProcessorHandle) -> None:
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    with processor.guard() as guard:
        def worker(i: int) -> None:
            try:
                rows = 20_000 if i % 2 else 10
                v = guard.check(Action(Actor(f"user{i}"), "export", f"s3/reports/{i}", {"rows": rows}))
                results[i] = v.decision
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert guard.stats.foreign_verdicts >= 0
    assert results == {i: ("block" if i % 2 else "allow") for i in range(40)}


def test_late_verdict_is_dropped_and_counted(processor: ProcessorHandle) -> None:
    with processor.guard() as guard:
        with pytest.raises(VerdictTimeout):
            guard.check(Action(Actor("alice"), "deploy", "svc/staging/api"), timeout_s=0.0005)
        deadline = time.monotonic() + 15
        while guard.stats.late_verdicts < 1:
            assert time.monotonic() < deadline, "late verdict never arrived"
            time.sleep(0.05)
        assert guard.stats.delivered == 0


def test_async_guard_allows_and_blocks(processor: ProcessorHandle) -> None:
    async def scenario() -> tuple[str, str]:
        async with AsyncGuard(processor.guard_settings()) as guard:
            async with guard.action(actor="alice", type="deploy", resource="svc/staging/api") as act:
                allowed = act.verdict.decision
            try:
                async with guard.action(actor="eve", type="db.query", resource="db/prod/users",
                                        attributes={"sql": "DROP TABLE users"}):
                    raise AssertionError("body must not run")
            except ActionBlocked as exc:
                blocked = exc.verdict.decision
        return allowed, blocked

    assert asyncio.run(scenario()) == ("allow", "block")


def test_submit_cli_exit_codes_and_json(processor: ProcessorHandle) -> None:
    blocked = processor.cli("submit", "--actor", "bob", "--role", "dev", "--type", "deploy",
                            "--resource", "env/prod", "--json")
    assert blocked.returncode == 1, blocked.stderr
    out = json.loads(blocked.stdout)
    assert out["decision"] == "block"
    assert out["policy_name"] == "example" and out["policy_version"] >= 1
    assert {"id": "prod-deploy-role", "effect": "block", "mode": "enforce"}.items() <= out["matched_rules"][0].items()
    allowed = processor.cli("submit", "--actor", "bob", "--role", "release-manager", "--type", "deploy",
                            "--resource", "env/prod")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("ALLOW")


def test_submit_cli_reports_errors_with_exit_2(processor: ProcessorHandle) -> None:
    from tests.conftest import free_port

    env_port = f"127.0.0.1:{free_port()}"
    env = dict(os.environ)
    env.update({"LOCKGATE_HOME": str(processor.home), "LOCKGATE_BOOTSTRAP_SERVERS": env_port})
    res = subprocess.run([sys.executable, "-m", "lockgate.cli", "submit", "--actor", "a", "--type", "t",
                          "--resource", "r", "--timeout", "1"], capture_output=True, text=True, env=env,
                         timeout=60, check=False)
    assert res.returncode == 2
    assert "cannot reach Kafka" in res.stderr


def test_guard_refuses_to_start_without_processor_key(tmp_path: Path) -> None:
    from lockgate.kernel.errors import ConfigError

    with pytest.raises(ConfigError, match="fail-closed"):
        Guard(GuardSettings(home=tmp_path, bootstrap_servers="127.0.0.1:1"))


def test_service_key_rotation_keeps_both_keys_valid_then_only_the_new(processor: ProcessorHandle,
                                                                        tmp_path: Path) -> None:
    import shutil

    from trust.registry import ServiceRegistry

    registry = ServiceRegistry(processor.home / "keys")
    name = f"rot{uuid.uuid4().hex[:6]}"
    registry.add_service(name)
    old = tmp_path / "old.pem"
    shutil.copy(registry.private_key_path(name), old)
    old.chmod(0o600)

    def decide(key: Path) -> str:
        with processor.guard(service=name, service_key=key) as guard:
            return guard.check(Action(Actor("alice"), "deploy", "svc/staging/api")).basis

    deadline = time.monotonic() + 15
    while decide(old) == "unauthenticated":  # the worker reloads the registry within ~1 s
        assert time.monotonic() < deadline
    registry.rotate(name, overlap_us=3600 * 10**6)
    new = registry.private_key_path(name)
    deadline = time.monotonic() + 15
    while decide(new) == "unauthenticated":
        assert time.monotonic() < deadline
    assert decide(old) != "unauthenticated"  # still inside the overlap window
    registry.rotate(name, overlap_us=0)  # end the window for every older key
    newest = registry.private_key_path(name)
    deadline = time.monotonic() + 15
    while decide(old) != "unauthenticated":
        assert time.monotonic() < deadline
    assert decide(newest) != "unauthenticated"


def test_oversized_action_is_answered_with_a_signed_block(processor: ProcessorHandle) -> None:
    """The processor refuses a 1.5 MiB proposal (limit 1 MiB) yet still answers the waiting caller."""
    from producers.verdicts import accept_verdict
    from schemas.codec import Codec

    big = Codec(max_record_bytes=8 * 1024 * 1024)
    with processor.guard() as guard:
        core = guard._core
        rec = core.build(Action(Actor("alice"), "export", "s3/reports", {"blob": "x" * (1536 * 1024)}))
        future = core.router.expect(rec["correlation_id"], rec["action_id"])
        producer = Producer({"bootstrap.servers": processor.bootstrap, "message.max.bytes": 4_000_000})
        producer.produce(processor.topics.actions, big.encode("ProposedAction", rec), key=b"big")
        assert producer.flush(10) == 0
        verdict = accept_verdict(future.result(timeout=20), rec["action_id"], core.verdict_key)
    assert verdict.decision == "block"
    assert verdict.basis == "invalid_request"
    assert "OversizedRecord" in verdict.reason
    dl = read_topic(processor.bootstrap, processor.topics.deadletter,
                    lambda r: r["error_type"] == "OversizedRecord" and rec["action_id"].encode() in r["raw"],
                    "DeadLetter")
    assert len(dl["raw"]) > 1024 * 1024
