"""Record builders for sink tests: realistic, encoded AuditEvents chained per partition."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from schemas.codec import get_codec

__all__ = ["Events"]


class Events:
    """Builds realistic, encoded AuditEvents (chained per partition) for tests."""

    def __init__(self) -> None:
        self.codec = get_codec()
        self.seq: dict[int, int] = {}
        self.heads: dict[int, bytes] = {}

    def _now(self) -> int:
        return time.time_ns() // 1000

    def wrap(self, kind: str, tenant: str, payload: bytes, action_id: str | None,
             partition: int = 0, at: int | None = None, detail: str | None = None
             ) -> dict[str, Any]:
        seq = self.seq.get(partition, 0)
        self.seq[partition] = seq + 1
        prev = self.heads.get(partition, b"\x00" * 32)
        ev: dict[str, Any] = {
            "event_id": str(uuid.uuid4()), "kind": kind,
            "recorded_at": at if at is not None else self._now(), "tenant": tenant,
            "action_id": action_id, "payload": payload, "detail": detail,
            "ledger_partition": partition, "sequence": seq, "prev_hash": prev,
            "hash": b"", "canonical_version": 1,
        }
        ev["hash"] = hashlib.sha256(repr(sorted(ev.items())).encode() + prev).digest()
        self.heads[partition] = ev["hash"]
        return ev

    def action(self, tenant: str = "acme", actor: str = "alice", resource: str = "db/prod/orders",
               action_id: str | None = None, type_: str = "db.query", service: str = "billing",
               sql: str = "DELETE FROM orders WHERE id = 1", at: int | None = None,
               partition: int = 0) -> tuple[str, dict[str, Any]]:
        aid = action_id or str(uuid.uuid4())
        at = at if at is not None else self._now()
        rec = {
            "action_id": aid, "correlation_id": aid, "proposed_at": at, "tenant": tenant,
            "service": service, "actor": {"id": actor, "roles": ["dba", "oncall"],
                                          "attributes": {}},
            "type": type_, "resource": resource,
            "attributes": {"sql": sql, "rows": 1, "dry": False, "ratio": 0.5, "none": None},
            "change_json": '{"id":1}', "reply_topic": "r", "reply_partition": 0,
            "reply_instance": "g1", "service_key_id": "k1", "service_signature": b"sig",
        }
        return aid, self.wrap("action", tenant, self.codec.encode("ProposedAction", rec), aid,
                              partition, at)

    def verdict(self, aid: str, tenant: str = "acme", decision: str = "block",
                rule: str = "no-unbounded-delete", reason: str = "unbounded delete",
                at: int | None = None, partition: int = 0) -> dict[str, Any]:
        at = at if at is not None else self._now()
        rec = {
            "action_id": aid, "correlation_id": aid, "reply_instance": "g1", "decided_at": at,
            "tenant": tenant, "service": "billing", "decision": decision, "basis": "rule",
            "matched_rules": [
                {"id": rule, "effect": decision, "mode": "enforce", "message": reason,
                 "error": None},
                {"id": "shadow-rule", "effect": "block", "mode": "shadow", "message": "",
                 "error": None},
            ],
            "policy_name": "prod", "policy_version": 7, "reason": reason,
            "eval_latency_us": 42, "processor_id": "p1", "key_id": "pk1", "signature": b"s",
        }
        return self.wrap("verdict", tenant, self.codec.encode("Verdict", rec), aid, partition, at)

    def outcome(self, aid: str, tenant: str = "acme", actor: str = "alice",
                status: str = "committed", at: int | None = None,
                partition: int = 0) -> dict[str, Any]:
        at = at if at is not None else self._now()
        rec = {
            "outcome_id": str(uuid.uuid4()), "action_id": aid, "correlation_id": aid,
            "recorded_at": at, "tenant": tenant, "service": "billing", "actor_id": actor,
            "status": status, "error_type": None, "error_message": None,
            "before_json": '{"qty":1}', "after_json": '{"qty":2}', "verdict": None,
            "service_key_id": "k1", "service_signature": b"x",
        }
        return self.wrap("outcome", tenant, self.codec.encode("ActionOutcome", rec), aid,
                         partition, at)

    def policy(self, tenant: str = "acme", partition: int = 0) -> dict[str, Any]:
        rec = {
            "name": "prod", "tenant": tenant, "version": 7, "published_at": self._now(),
            "published_by": "root", "source_sha256": "ab" * 32, "default": "allow",
            "on_error": "block",
            "rules": [{"id": "no-unbounded-delete", "description": "", "match": {
                "types": ["db.query"], "resources": [], "services": []},
                "when": "true", "effect": "block", "mode": "enforce", "message": "m"}],
        }
        return self.wrap("policy", tenant, self.codec.encode("PolicySet", rec), None, partition)

    def checkpoint(self, partition: int = 0, last: int = 9) -> dict[str, Any]:
        return {
            "checkpoint_id": str(uuid.uuid4()), "ledger_partition": partition,
            "first_sequence": 0, "last_sequence": last, "head_hash": b"\x01" * 32,
            "merkle_root": b"\x02" * 32, "created_at": self._now(), "processor_id": "p1",
            "key_id": "pk1", "signature": b"\x03" * 64,
        }
