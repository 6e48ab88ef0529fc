"""policy replay: recorded actions re-run against a candidate policy; flips are reported."""

from __future__ import annotations

from typing import Any

from processors.policy.engine import CompiledPolicy
from processors.policy.files import load_policy_text
from processors.policy.replay import replay
from schemas.codec import get_codec

CODEC = get_codec()

CANDIDATE = """
name: candidate
default: allow
rules:
  - id: no-prod-deploys
    match: {types: [deploy], resources: ["env/prod"]}
    effect: block
"""


def events(action_id: str, resource: str, decision: str, basis: str = "default") -> list[dict[str, Any]]:
    action = {"action_id": action_id, "correlation_id": "c", "proposed_at": 1, "tenant": "default",
              "service": "svc", "actor": {"id": "erin", "roles": [], "attributes": {}}, "type": "deploy",
              "resource": resource, "attributes": {}, "change_json": None, "reply_topic": "v",
              "reply_partition": 0, "reply_instance": "i"}
    verdict = {"action_id": action_id, "correlation_id": "c", "reply_instance": "i", "decided_at": 2,
               "tenant": "default", "service": "svc", "decision": decision, "basis": basis,
               "matched_rules": [], "policy_name": "old", "policy_version": 1, "reason": "r",
               "eval_latency_us": 1, "processor_id": "p", "key_id": "k", "signature": b"s"}
    return [{"kind": "action", "payload": CODEC.encode("ProposedAction", action)},
            {"kind": "verdict", "payload": CODEC.encode("Verdict", verdict)}]


def test_flips_are_reported_and_the_rest_unchanged() -> None:
    policy = CompiledPolicy.from_record(load_policy_text(CANDIDATE, source="candidate.yaml"))
    history = [*events("a1", "env/prod", "allow"), *events("a2", "env/staging", "allow"),
               *events("a3", "env/prod", "block", basis="unauthenticated"),
               {"kind": "outcome", "payload": b"ignored"}, {"kind": "action", "payload": b"garbage"}]
    report = replay(history, policy)
    assert report.actions == 3
    assert report.unchanged == 2
    assert report.skipped == 1
    assert dict(report.transitions) == {"allow->block": 1}
    (change,) = report.changes
    assert change.action_id == "a1" and change.candidate_rules == ("no-prod-deploys",)
