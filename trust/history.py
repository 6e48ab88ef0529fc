"""A resource's history, reconstructed from audit events: who did what to it, and when.

Works on any source of chained AuditEvents — ClickHouse, the sink's API, or the replay
topics themselves (``lockgate history --from-topics``), so the story can be rebuilt even
when the database is gone or in doubt. Pure: the caller brings the events.

Each step is one action on a resource whose name starts with the prefix: the proposal
(who, what, the SQL), the verdict (decision, enforced and shadow rules, reason) and the
outcome (committed or failed, before/after), in proposal order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.codec import get_codec
from schemas.errors import CodecError

__all__ = ["resource_history"]

_SCHEMA = {"action": "ProposedAction", "verdict": "Verdict", "outcome": "ActionOutcome"}


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def resource_history(events: Iterable[Mapping[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """One entry per action on a resource starting with ``prefix``, oldest first."""
    codec = get_codec()
    decoded: dict[str, dict[str, dict[str, Any]]] = {}
    for ev in events:
        schema = _SCHEMA.get(str(ev.get("kind")))
        action_id = ev.get("action_id")
        if schema is None or not action_id:
            continue
        try:
            rec = codec.decode_as(schema, bytes(ev["payload"]))
        except (CodecError, KeyError, TypeError):
            continue
        decoded.setdefault(str(action_id), {})[str(ev["kind"])] = rec
    steps = []
    for action_id, parts in decoded.items():
        action = parts.get("action")
        if action is None or not str(action["resource"]).startswith(prefix):
            continue
        verdict, outcome = parts.get("verdict"), parts.get("outcome")
        steps.append({
            "action_id": action_id,
            "proposed_at_us": action["proposed_at"],
            "actor": action["actor"]["id"],
            "roles": list(action["actor"]["roles"]),
            "service": action["service"],
            "type": action["type"],
            "resource": action["resource"],
            "sql": action["attributes"].get("sql"),
            "decision": verdict["decision"] if verdict else None,
            "rules": [f"{r['id']}({r['mode']})" for r in verdict["matched_rules"]] if verdict else [],
            "reason": verdict["reason"] if verdict else None,
            "outcome": outcome["status"] if outcome else None,
            "before": _json(outcome["before_json"]) if outcome else None,
            "after": _json(outcome["after_json"]) if outcome else None,
        })
    return sorted(steps, key=lambda s: (s["proposed_at_us"], s["action_id"]))
