"""What would a candidate policy have decided? Re-run recorded actions against it.

Input: audit events as stored (kinds ``action`` and ``verdict``, payloads single-object
encoded). Each recorded ProposedAction is evaluated with the candidate
:class:`CompiledPolicy` and compared with the verdict it actually got. Pure: the caller
brings the events (from ClickHouse, the sink's API or the replay topics).

Authentication is taken from history: an action whose recorded verdict had basis
``unauthenticated`` is replayed as unauthenticated (and stays blocked if the processor
still requires service authentication, which is not a policy decision).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.policy.engine import CompiledPolicy
from schemas.codec import get_codec
from schemas.errors import CodecError

__all__ = ["Change", "ReplayReport", "replay"]


@dataclass(frozen=True)
class Change:
    """One action whose decision would differ under the candidate policy."""

    action_id: str
    actor: str
    type: str
    resource: str
    recorded: str
    candidate: str
    candidate_rules: tuple[str, ...]
    candidate_reason: str


@dataclass
class ReplayReport:
    actions: int = 0
    unchanged: int = 0
    skipped: int = 0
    transitions: Counter[str] = field(default_factory=Counter)
    changes: list[Change] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "actions": self.actions, "unchanged": self.unchanged, "skipped": self.skipped,
            "transitions": dict(self.transitions),
            "changes": [c.__dict__ | {"candidate_rules": list(c.candidate_rules)} for c in self.changes],
        }


def replay(events: Iterable[Mapping[str, Any]], policy: CompiledPolicy) -> ReplayReport:
    """Evaluate every recorded action with ``policy``; report the decisions that would change."""
    codec = get_codec()
    actions: dict[str, dict[str, Any]] = {}
    verdicts: dict[str, dict[str, Any]] = {}
    report = ReplayReport()
    for ev in events:
        kind = ev.get("kind")
        if kind not in ("action", "verdict"):
            continue
        try:
            rec = codec.decode_as("ProposedAction" if kind == "action" else "Verdict", bytes(ev["payload"]))
        except (CodecError, KeyError, TypeError):
            report.skipped += 1
            continue
        (actions if kind == "action" else verdicts)[rec["action_id"]] = rec
    for action_id, action in actions.items():
        recorded = verdicts.get(action_id)
        if recorded is None:
            report.skipped += 1
            continue
        report.actions += 1
        if recorded["basis"] in ("unauthenticated", "invalid_request"):
            report.unchanged += 1
            continue
        decision = policy.evaluate(action, authenticated=True, now_us=recorded["decided_at"])
        if decision.decision == recorded["decision"]:
            report.unchanged += 1
            continue
        report.transitions[f"{recorded['decision']}->{decision.decision}"] += 1
        report.changes.append(Change(
            action_id=action_id, actor=action["actor"]["id"], type=action["type"],
            resource=action["resource"], recorded=recorded["decision"], candidate=decision.decision,
            candidate_rules=tuple(m["id"] for m in decision.matched_rules if m["mode"] == "enforce"),
            candidate_reason=decision.reason,
        ))
    return report
