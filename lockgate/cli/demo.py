"""The main job on the embedded default: the whole pipeline with simulated services.

``lockgate demo`` brings the stack up, applies the example policy, registers three
simulated services (billing, analytics, deployer) and streams a realistic mix of actions
through real Guards: routine queries and deploys that commit with before/after changes,
dangerous SQL and unauthorised prod deploys that are blocked, reads that only match a
shadow rule. Each verdict is printed as it arrives; at the end, the dashboard address.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from deploy.identity import ensure_service
from deploy.settings import StackSettings
from deploy.stack import Stack

__all__ = ["DemoReport", "run_demo"]

Print = Callable[[str], None]


@dataclass(frozen=True)
class _Scenario:
    service: str
    actor: str
    roles: tuple[str, ...]
    type: str
    resource: str
    attributes: dict[str, Any]
    before: Any = None
    after: Any = None


_SCENARIOS: tuple[_Scenario, ...] = (
    _Scenario("billing", "alice", ("dba",), "db.query", "db/prod/invoices",
              {"sql": "UPDATE invoices SET status = 'paid' WHERE id = 4711"},
              {"id": 4711, "status": "open"}, {"id": 4711, "status": "paid"}),
    _Scenario("billing", "mallory", ("dev",), "db.query", "db/prod/invoices",
              {"sql": "DELETE FROM invoices -- WHERE id = 4711"}),
    _Scenario("billing", "bob", ("dev",), "db.query", "db/prod/customers",
              {"sql": "select * from customers"}),
    _Scenario("analytics", "carol", ("analyst",), "export", "s3/reports/q3", {"rows": 250_000}),
    _Scenario("analytics", "dave", ("data-steward",), "export", "s3/reports/q3", {"rows": 250_000},
              None, {"object": "s3://reports/q3.parquet", "rows": 250_000}),
    _Scenario("analytics", "carol", ("analyst",), "db.query", "db/prod/events",
              {"sql": "SELECT 1; TRUNCATE TABLE events"}),
    _Scenario("deployer", "erin", ("dev",), "deploy", "env/prod", {"version": "2.4.1"}),
    _Scenario("deployer", "frank", ("release-manager",), "deploy", "env/prod", {"version": "2.4.1"},
              {"version": "2.4.0"}, {"version": "2.4.1"}),
    _Scenario("deployer", "erin", ("dev",), "deploy", "env/staging", {"version": "2.5.0-rc1"},
              {"version": "2.4.1"}, {"version": "2.5.0-rc1"}),
)


@dataclass(frozen=True)
class DemoReport:
    allowed: int
    blocked: int
    dashboard_url: str | None


def example_policy_path() -> Path:
    return Path(str(resources.files("processors") / "policies" / "example.yaml"))


def run_demo(count: int = 45, settings: StackSettings | None = None, out: Print = print,
             seed: int | None = None) -> DemoReport:
    from lockgate.cli.probe import await_first_verdict
    from processors.policy.files import load_policy_file
    from processors.policy.store import publish_policy
    from producers import ActionBlocked, Guard, GuardSettings

    s = settings or StackSettings()
    Stack(s, probe=await_first_verdict).up()
    published = publish_policy(load_policy_file(example_policy_path()), s.bootstrap, s.topics,
                               published_by="lockgate-demo")
    out(f"applied policy {published.name} v{published.version} ({published.rules} rules)")
    services = sorted({sc.service for sc in _SCENARIOS})
    for name in services:
        ensure_service(s.home, name)
    guards = {name: Guard(GuardSettings(bootstrap_servers=s.bootstrap, topic_prefix=s.topic_prefix,
                                        home=s.home, service=name, timeout_s=15.0))
              for name in services}
    rng = random.Random(seed)  # noqa: S311 - picks demo scenarios, not secrets
    allowed = blocked = 0
    time.sleep(1.0)  # let running workers load the policy version just applied
    try:
        for i in range(count):
            sc = _SCENARIOS[i % len(_SCENARIOS)] if i < len(_SCENARIOS) else rng.choice(_SCENARIOS)
            guard = guards[sc.service]
            label = f"{sc.service:<9} {sc.actor:<8} {sc.type:<9} {sc.resource:<20}"
            try:
                with guard.action(actor=sc.actor, roles=list(sc.roles), type=sc.type, resource=sc.resource,
                                  attributes=sc.attributes) as act:
                    act.record_change(before=sc.before, after=sc.after)
                allowed += 1
                shadow = ", ".join(r.id for r in act.verdict.shadow_rules)
                out(f"ALLOW  {label} committed{'  (shadow: ' + shadow + ')' if shadow else ''}")
            except ActionBlocked as exc:
                blocked += 1
                rules = ", ".join(r.id for r in exc.verdict.enforced_rules) or exc.verdict.basis
                out(f"BLOCK  {label} {rules}: {exc.verdict.reason[:80]}")
            time.sleep(0.05)
    finally:
        for g in guards.values():
            g.close()
    url = None
    try:
        from sinks.tokens import create_token

        _info, secret = create_token(s.home, "default", label="demo dashboard")
        url = f"http://127.0.0.1:{s.api_port}/?token={secret}"
    except ImportError:
        url = None
    out(f"{allowed} allowed, {blocked} blocked")
    return DemoReport(allowed, blocked, url)
