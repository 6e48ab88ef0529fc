"""A ledger written by the real decide stage: the binding, replay and re-evaluation tests and
``bench/decisions_bench.py`` use it.

Everything is the production code path: the example policy published as a ``policy``
event (its hash is the SHA-256 of those bytes), proposals signed by a registered service
and decided by :class:`processors.decider.Decider` with the real engine, one-decision-per-
action memory and processor key, outcomes built as the Guard builds them (bound to the
verdict's hash), all chained with :class:`trust.chain.Chain`.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from processors.decider import Decider, DecisionResult
from processors.policy.engine import CompiledPolicy
from processors.policy.files import load_policy_file, load_policy_text
from processors.replay import ActionIds, home_partition
from processors.stage import Source
from schemas.codec import get_codec
from schemas.records import AuditKind, audit_event
from trust.bindings import policy_sha256, record_sha256
from trust.chain import Chain
from trust.keys import SigningKey
from trust.registry import ServiceRegistry
from trust.signatures import sign_record

EXAMPLE = Path(__file__).resolve().parents[2] / "processors" / "policies" / "example.yaml"
PARTITIONS = 4


def now_us() -> int:
    return time.time_ns() // 1000


class DecidedLedger:
    """Proposals decided by the real Decider under the example policy, chained."""

    def __init__(self, key: SigningKey, service_dir: Path, tenant: str = "default",
                 policy_yaml: str | None = None) -> None:
        self.key = key
        self.tenant = tenant
        self.codec = get_codec()
        self.registry = ServiceRegistry(service_dir)
        self.service_key, _ = self.registry.add_service("billing")
        published = now_us() - 3_600_000_000
        record = (load_policy_file(EXAMPLE, version=1, published_at_us=published, published_by="root")
                  if policy_yaml is None else
                  load_policy_text(policy_yaml, version=1, published_at_us=published, published_by="root"))
        self.policy_bytes = self.codec.encode("PolicySet", record)
        self.policy = CompiledPolicy.from_record(record, sha256=policy_sha256(self.policy_bytes))
        self.decided = ActionIds(PARTITIONS, 3_600_000_000)
        self.decider = Decider(self.codec, key, "proc-1", lambda _t: self.policy, self.registry,
                               decided=self.decided)
        self.chain = Chain()
        self.events: list[dict[str, Any]] = []
        self._offset = 0
        self.append(audit_event(AuditKind.POLICY, tenant, None, self.policy_bytes,
                                detail="policy example v1 applied"))

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        chained = self.chain.append(event, 0)
        self.events.append(chained)
        return chained

    def proposal(self, sql: str = "UPDATE orders SET status = 'x' WHERE id = 1", **over: Any) -> dict[str, Any]:
        """A signed ProposedAction (schema v2) of the ``billing`` service."""
        rec: dict[str, Any] = {
            "action_id": str(uuid.uuid4()), "correlation_id": uuid.uuid4().hex, "proposed_at": now_us(),
            "tenant": self.tenant, "service": "billing",
            "actor": {"id": "alice", "roles": ["dba"], "attributes": {}},
            "type": "db.query", "resource": "db/prod/orders", "attributes": {"sql": sql},
            "change_json": None, "reply_topic": "lockgate.verdicts", "reply_partition": 0,
            "reply_instance": "guard-1", "service_key_id": None, "service_signature": None,
            "deadline": None, "justification": None, "break_glass": False, "signed_schema": 2,
        }
        rec.update(over)
        return sign_record(rec, "service_signature", None, self.service_key)

    def submit(self, raw: bytes, partition: int | None = None, *, chain: bool = True) -> DecisionResult:
        """Decide ``raw`` (on its home partition unless told) at the next offset; chain its events
        unless ``chain`` is false."""
        if partition is None:
            partition = home_partition(self.codec.decode_as("ProposedAction", raw)["action_id"], PARTITIONS)
        self._offset += 1
        result = self.decider.decide(raw, Source("lockgate.actions", partition, self._offset, None))
        for ev in result.audit if chain else ():
            self.append(ev)
        return result

    def propose(self, sql: str = "UPDATE orders SET status = 'x' WHERE id = 1", **over: Any
                ) -> tuple[bytes, DecisionResult]:
        raw = self.codec.encode("ProposedAction", self.proposal(sql, **over))
        return raw, self.submit(raw)

    def outcome_record(self, result: DecisionResult, status: str = "committed") -> dict[str, Any]:
        """An ActionOutcome as the Guard builds it: embedding the verdict, bound to its hash."""
        assert result.verdict is not None and result.verdict_bytes is not None
        verdict = self.codec.decode_as("Verdict", result.verdict_bytes)
        rec: dict[str, Any] = {
            "outcome_id": str(uuid.uuid4()), "action_id": verdict["action_id"],
            "correlation_id": verdict["correlation_id"], "recorded_at": now_us(), "tenant": self.tenant,
            "service": "billing", "actor_id": "alice", "status": status, "error_type": None,
            "error_message": None, "before_json": None, "after_json": None, "verdict": result.verdict_bytes,
            "service_key_id": None, "service_signature": None, "verdict_sha256": record_sha256(verdict),
            "signed_schema": 2,
        }
        return sign_record(rec, "service_signature", None, self.service_key)

    def record_outcome(self, result: DecisionResult, rec: dict[str, Any] | None = None) -> dict[str, Any]:
        out = rec if rec is not None else self.outcome_record(result)
        return self.append(audit_event(AuditKind.OUTCOME, self.tenant, out["action_id"],
                                       self.codec.encode("ActionOutcome", out)))

    def resign(self, verdict: dict[str, Any], key: SigningKey | None = None, **over: Any) -> dict[str, Any]:
        """``verdict`` changed by ``over`` and signed again with a real processor key (a leaked one)."""
        return sign_record({**verdict, **over}, "signature", b"", key or self.key)

    def record_verdict(self, verdict: dict[str, Any]) -> dict[str, Any]:
        """Chain a verdict made outside the Decider (a forgery, a second allow)."""
        return self.append(audit_event(AuditKind.VERDICT, verdict["tenant"], verdict["action_id"],
                                       self.codec.encode("Verdict", verdict)))
