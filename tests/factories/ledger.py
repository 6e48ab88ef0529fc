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
from trust.checkpoints import build_checkpoint
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


MIDNIGHT = 1_700_006_400_000_000
"""2023-11-15 00:00:00 UTC: the reader scenario straddles it."""


def policy_set(tenant: str = "acme") -> dict[str, Any]:
    return {
        "name": "prod", "tenant": tenant, "version": 3, "published_at": MIDNIGHT - 7_200_000_000,
        "published_by": "root", "source_sha256": "ab" * 32, "default": "allow", "on_error": "block",
        "rules": [{"id": "r1", "description": "", "match": {"types": ["db.query"], "resources": [],
                                                            "services": []},
                   "when": "true", "effect": "block", "mode": "enforce", "message": "m"}],
    }


def reader_scenario(key: SigningKey) -> tuple[LedgerBuilder, list[dict[str, Any]], dict[str, str]]:
    """A signed ledger holding every shape of record a reader of the store meets.

    Partition 0: an allowed and committed action whose verdict payload was chained twice
    under two event ids (what the at-least-once ledger before the exactly-once stage did;
    the same event id twice would be a ``duplicate_event``), a blocked action (no outcome)
    with a security event about it, a dead letter, a policy change, a proposal whose payload
    does not decode, an action whose outcome lands after midnight UTC (two summary days),
    then — after the last checkpoint — an allowed action whose outcome failed. Partition 1:
    two actions of tenant ``globex``,
    the second after the partition's checkpoint. Every verdict is signed by ``key``.

    Returns the builder (its ``events`` in chain order), the signed checkpoints and the
    action ids by role: allowed, blocked, midnight, failed, undecodable, globex, globex_tail.
    """
    lb = LedgerBuilder(key)
    lb.clock = MIDNIGHT - 3_600_000_000
    ids: dict[str, str] = {}

    ids["allowed"] = lb.flow(partition=0)
    first_verdict = lb.events[-2]
    lb.append({f: first_verdict[f] for f in ("kind", "recorded_at", "tenant", "action_id", "payload", "detail")}
              | {"event_id": str(uuid.uuid4())}, 0)
    ids["blocked"] = lb.flow(partition=0, decision="block", commit=False)
    blocked_proposal = lb.events[-2]["payload"]
    lb.append(unchained("security", blocked_proposal, lb.tick(), ids["blocked"]) | {
        "detail": "replayed proposal refused: action id already decided"}, 0)
    lb.append(unchained("dead_letter", b"\x00not a record", lb.tick(), None, tenant="") | {
        "detail": "MalformedRecord: not a single-object-encoded Avro record"}, 0)
    lb.append(unchained("policy", lb.codec.encode("PolicySet", policy_set()), lb.tick(), None), 0)
    ids["undecodable"] = str(uuid.uuid4())
    lb.append(unchained("action", b"\xc3\x01garbage", lb.tick(), ids["undecodable"]), 0)
    lb.clock = MIDNIGHT - 2_500  # proposal and verdict before midnight, the outcome after it
    ids["midnight"] = lb.flow(partition=0)
    p0_checkpointed = len(lb.partition(0))

    aid = ids["failed"] = str(uuid.uuid4())
    act = proposed_action(aid, lb.tick())
    act["attributes"] = {"sql": "DELETE FROM orders WHERE id = 7", "rows": 1, "dry": False}
    lb.append(unchained("action", lb.codec.encode("ProposedAction", act), lb.clock, aid), 0)
    ver = lb.codec.encode("Verdict", verdict(aid, "allow", lb.tick(), key))
    lb.append(unchained("verdict", ver, lb.clock, aid), 0)
    out = outcome(aid, lb.tick(), ver, status="failed") | {
        "error_type": "TimeoutError", "error_message": "statement timed out"}
    lb.append(unchained("outcome", lb.codec.encode("ActionOutcome", out), lb.clock, aid), 0)

    lb.clock = MIDNIGHT + 60_000_000
    ids["globex"] = _globex_flow(lb, key)
    p1_checkpointed = len(lb.partition(1))
    ids["globex_tail"] = _globex_flow(lb, key)

    p0, p1 = lb.partition(0), lb.partition(1)
    half = p0_checkpointed // 2
    checkpoints = [
        build_checkpoint(p0[:half], key, "proc-1", MIDNIGHT),
        build_checkpoint(p0[half:p0_checkpointed], key, "proc-1", MIDNIGHT + 1,
                         prev_head=p0[half - 1]["hash"]),
        build_checkpoint(p1[:p1_checkpointed], key, "proc-1", MIDNIGHT + 2),
    ]
    return lb, checkpoints, ids


def _globex_flow(lb: LedgerBuilder, key: SigningKey) -> str:
    aid = str(uuid.uuid4())
    act = proposed_action(aid, lb.tick(), tenant="globex")
    lb.append(unchained("action", lb.codec.encode("ProposedAction", act), lb.clock, aid, "globex"), 1)
    ver = lb.codec.encode("Verdict", verdict(aid, "allow", lb.tick(), key, tenant="globex"))
    lb.append(unchained("verdict", ver, lb.clock, aid, "globex"), 1)
    out = outcome(aid, lb.tick(), ver, tenant="globex")
    lb.append(unchained("outcome", lb.codec.encode("ActionOutcome", out), lb.clock, aid, "globex"), 1)
    return aid
