"""Builders for realistic ledgers: the trust tests and ``bench/verify_bench.py`` use them.

Records are real: Avro-encoded ProposedAction / Verdict / ActionOutcome payloads, verdicts
signed with a processor key, chained with :class:`trust.chain.Chain`.
"""

from __future__ import annotations

import uuid
from typing import Any

from schemas.codec import get_codec
from schemas.records import audit_event
from trust.chain import Chain
from trust.keys import SigningKey
from trust.signatures import sign_record

T0 = 1_700_000_000_000_000


def proposed_action(action_id: str, at_us: int, tenant: str = "acme") -> dict[str, Any]:
    return {
        "action_id": action_id,
        "correlation_id": f"c-{action_id}",
        "proposed_at": at_us,
        "tenant": tenant,
        "service": "billing",
        "actor": {"id": "alice", "roles": ["dba"], "attributes": {}},
        "type": "db.query",
        "resource": "db/prod/orders",
        "attributes": {"sql": "UPDATE orders SET status = 'x' WHERE id = 1", "rows": 1},
        "change_json": '{"status":"x"}',
        "reply_topic": "lockgate.verdicts",
        "reply_partition": 0,
        "reply_instance": "guard-1",
        "service_key_id": None,
        "service_signature": None,
    }


def verdict(
    action_id: str, decision: str, decided_at: int, key: SigningKey, tenant: str = "acme"
) -> dict[str, Any]:
    unsigned = {
        "action_id": action_id,
        "correlation_id": f"c-{action_id}",
        "reply_instance": "guard-1",
        "decided_at": decided_at,
        "tenant": tenant,
        "service": "billing",
        "decision": decision,
        "basis": "rule",
        "matched_rules": [{"id": "r1", "effect": decision, "mode": "enforce", "message": "", "error": None}],
        "policy_name": "default",
        "policy_version": 3,
        "reason": f"rule r1 says {decision}",
        "eval_latency_us": 40,
        "processor_id": "proc-1",
        "key_id": "",
        "signature": b"",
    }
    return sign_record(unsigned, "signature", b"", key)


def outcome(
    action_id: str,
    recorded_at: int,
    embedded: bytes | None,
    status: str = "committed",
    tenant: str = "acme",
) -> dict[str, Any]:
    return {
        "outcome_id": str(uuid.uuid4()),
        "action_id": action_id,
        "correlation_id": f"c-{action_id}",
        "recorded_at": recorded_at,
        "tenant": tenant,
        "service": "billing",
        "actor_id": "alice",
        "status": status,
        "error_type": None,
        "error_message": None,
        "before_json": '{"status":"a"}',
        "after_json": '{"status":"x"}',
        "verdict": embedded,
        "service_key_id": None,
        "service_signature": None,
    }


def unchained(
    kind: str, payload: bytes, at_us: int, action_id: str | None, tenant: str = "acme"
) -> dict[str, Any]:
    """An unchained AuditEvent built by the one constructor the processor uses."""
    return audit_event(kind, tenant, action_id, payload, now_us=at_us)


class LedgerBuilder:
    """Appends action/verdict/outcome flows to a chained ledger."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.chain = Chain()
        self.events: list[dict[str, Any]] = []
        self.codec = get_codec()
        self.clock = T0

    def tick(self) -> int:
        self.clock += 1000
        return self.clock

    def append(self, event: dict[str, Any], partition: int = 0) -> dict[str, Any]:
        chained = self.chain.append(event, partition)
        self.events.append(chained)
        return chained

    def flow(
        self,
        partition: int = 0,
        decision: str = "allow",
        *,
        verdict_key: SigningKey | None = None,
        commit: bool = True,
    ) -> str:
        """Action, verdict, and (if ``commit``) a committed outcome embedding the verdict."""
        aid = str(uuid.uuid4())
        act = self.codec.encode("ProposedAction", proposed_action(aid, self.tick()))
        self.append(unchained("action", act, self.clock, aid), partition)
        ver = verdict(aid, decision, self.tick(), verdict_key or self.key)
        ver_bytes = self.codec.encode("Verdict", ver)
        self.append(unchained("verdict", ver_bytes, self.clock, aid), partition)
        if commit:
            out = self.codec.encode("ActionOutcome", outcome(aid, self.tick(), ver_bytes))
            self.append(unchained("outcome", out, self.clock, aid), partition)
        return aid

    def partition(self, partition: int) -> list[dict[str, Any]]:
        return [e for e in self.events if e["ledger_partition"] == partition]
