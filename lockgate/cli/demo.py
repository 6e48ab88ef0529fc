"""The main job on the embedded default: the whole pipeline with simulated services.

``lockgate demo`` brings the stack up, applies the example policy, registers three
simulated services (billing, analytics, deployer) and streams a realistic mix of actions
through real Guards: routine queries and deploys that commit with before/after changes,
dangerous SQL and unauthorised prod deploys that are blocked, reads that only match a
shadow rule. Then a reviewed action: a reviewer identity (``dana``, group ``dba``) is
registered, a production ``DELETE`` with a justification waits for review, dana approves it
with her own key (as ``lockgate reviews approve`` does) and the action runs. Each verdict is
printed as it arrives; at the end, the dashboard address.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.identity import ensure_service
from deploy.settings import StackSettings
from deploy.stack import Stack

if TYPE_CHECKING:
    from producers import Guard

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
    reviewed: int = 0  # actions that waited for a review and ran after the approval
    inbox_url: str | None = None  # the review inbox with a token that votes as the demo reviewer


DEMO_REVIEWER = "dana"
_REVIEW_WAIT_S = 60.0


def _reviewed_action(s: StackSettings, guard: Guard, out: Print) -> bool:
    """A production DELETE waits for review, ``dana`` approves it, it runs (module docstring)."""
    from lockgate.cli.reviews import fold_topic, vote_on_topic
    from lockgate.kernel.home import Home
    from trust.reviewers import ReviewerRegistry

    registry = ReviewerRegistry(Home(s.home).keys)
    if registry.get(DEMO_REVIEWER) is None:
        registry.add_reviewer(DEMO_REVIEWER, ["dba"])
        out(f"added reviewer {DEMO_REVIEWER} (group dba) with her own signing key")
    justification = f"GDPR erasure request {uuid.uuid4().hex[:6]}"
    label = f"{'billing':<9} {'bob':<8} {'db.query':<9} {'db/prod/customers':<20}"
    ran: dict[str, Any] = {}

    def body() -> None:
        try:
            with guard.action(actor="bob", roles=["dev"], type="db.query", resource="db/prod/customers",
                              attributes={"sql": "DELETE FROM customers WHERE id = 7"}, justification=justification,
                              wait_for_review=_REVIEW_WAIT_S) as act:
                act.record_change(before={"id": 7, "email": "erased@example.com"}, after=None)
            ran["verdict"] = act.verdict
        except Exception as exc:  # reported below; the demo goes on
            ran["error"] = exc

    waiting = threading.Thread(target=body, name="demo-reviewed-action", daemon=True)
    waiting.start()
    deadline = time.monotonic() + _REVIEW_WAIT_S
    review = None
    while review is None and time.monotonic() < deadline and waiting.is_alive():
        folded = fold_topic(s.bootstrap, s.topics.reviews, registry, s.home)
        review = next((r for r in folded.reviews if r.proposal.get("justification") == justification), None)
        if review is None:
            time.sleep(0.2)
    if review is None:
        waiting.join(_REVIEW_WAIT_S)
        out(f"REVIEW {label} never held for review: {ran.get('error') or ran.get('verdict')}")
        return False
    out(f"WAIT   {label} held for review {review.review_id}: {review.verdict['reason'][:80]}")
    vote = vote_on_topic(s.bootstrap, s.topics.reviews, s.home, DEMO_REVIEWER, review.review_id, "approve",
                         "checked the erasure ticket")
    out(f"VOTE   {DEMO_REVIEWER} approves {review.review_id}: {vote.outcome} — {vote.detail}")
    waiting.join(_REVIEW_WAIT_S)
    verdict = ran.get("verdict")
    if verdict is None:
        out(f"REVIEW {label} did not run: {ran.get('error', 'no final verdict in time')}")
        return False
    out(f"ALLOW  {label} committed after review ({verdict.basis}): {verdict.reason[:80]}")
    return True


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
    allowed = blocked = reviewed = 0
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
        reviewed = int(_reviewed_action(s, guards["billing"], out))
        allowed += reviewed
    finally:
        for g in guards.values():
            g.close()
    url = inbox = None
    try:
        from sinks.tokens import create_token

        _info, secret = create_token(s.home, "default", label="demo dashboard")
        url = f"http://127.0.0.1:{s.api_port}/?token={secret}"
        _info, secret = create_token(s.home, "default", label="demo review inbox", reviewer=DEMO_REVIEWER)
        inbox = f"http://127.0.0.1:{s.api_port}/reviews?token={secret}"
    except ImportError:
        url = None
    out(f"{allowed} allowed ({reviewed} after a review), {blocked} blocked")
    return DemoReport(allowed, blocked, url, reviewed, inbox)
