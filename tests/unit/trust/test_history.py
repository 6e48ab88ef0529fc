"""resource_history: one step per action on the resource, oldest first, all four facts."""

from __future__ import annotations

from typing import Any

from schemas.codec import get_codec
from trust.history import resource_history

CODEC = get_codec()


def _events(action_id: str, resource: str, at: int, *, decision: str, committed: bool) -> list[dict[str, Any]]:
    action = {"action_id": action_id, "correlation_id": "c", "proposed_at": at, "tenant": "t",
              "service": "billing", "actor": {"id": "alice", "roles": ["dba"], "attributes": {}},
              "type": "db.query", "resource": resource, "attributes": {"sql": "UPDATE t SET a=1 WHERE id=1"},
              "change_json": None, "reply_topic": "v", "reply_partition": 0, "reply_instance": "i"}
    verdict = {"action_id": action_id, "correlation_id": "c", "reply_instance": "i", "decided_at": at + 1,
               "tenant": "t", "service": "billing", "decision": decision, "basis": "rule",
               "matched_rules": [{"id": "r1", "effect": decision, "mode": "enforce", "message": "", "error": None}],
               "policy_name": "p", "policy_version": 1, "reason": "because", "eval_latency_us": 1,
               "processor_id": "p", "key_id": "k", "signature": b"s"}
    out = [{"kind": "action", "action_id": action_id, "payload": CODEC.encode("ProposedAction", action)},
           {"kind": "verdict", "action_id": action_id, "payload": CODEC.encode("Verdict", verdict)}]
    if committed:
        outcome = {"outcome_id": "o", "action_id": action_id, "correlation_id": "c", "recorded_at": at + 2,
                   "tenant": "t", "service": "billing", "actor_id": "alice", "status": "committed",
                   "error_type": None, "error_message": None, "before_json": '{"a": 0}', "after_json": '{"a": 1}',
                   "verdict": None}
        out.append({"kind": "outcome", "action_id": action_id, "payload": CODEC.encode("ActionOutcome", outcome)})
    return out


def test_history_orders_steps_and_carries_the_four_facts() -> None:
    events = [*_events("b", "db/prod/orders", 20, decision="block", committed=False),
              *_events("a", "db/prod/orders", 10, decision="allow", committed=True),
              *_events("x", "db/staging/orders", 5, decision="allow", committed=True),
              {"kind": "policy", "action_id": None, "payload": b"ignored"},
              {"kind": "action", "action_id": "broken", "payload": b"\x00garbage"}]
    steps = resource_history(events, "db/prod/")
    assert [s["action_id"] for s in steps] == ["a", "b"]
    first, second = steps
    assert first["actor"] == "alice" and first["roles"] == ["dba"]
    assert (first["before"], first["after"]) == ({"a": 0}, {"a": 1})
    assert first["decision"] == "allow" and first["outcome"] == "committed"
    assert second["decision"] == "block" and second["rules"] == ["r1(enforce)"] and second["outcome"] is None
