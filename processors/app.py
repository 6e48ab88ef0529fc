"""The Faust application: verdict agent, outcome agent, ledger agent, policy GlobalTable.

Topology (topic names from :class:`schemas.topics.Topics`)::

    actions ──▶ decide ──▶ verdicts (reply partition)      policies ══▶ GlobalTable
                   └─────▶ audit-intake ◀── record_outcome ◀── outcomes
    audit-intake ──▶ chain ──▶ audit  (+ checkpoints every N events / T seconds)
    anything undecodable ──▶ deadletter (raw bytes + error) and a dead_letter audit event

The ``load-policies`` agent copies each version from the compacted policies topic into
the ``policies`` GlobalTable, whose changelog every worker reads, so all workers hold all
policies and ``lockgate policy apply`` takes effect on running workers without restart.
(Faust cannot use our own topic as a GlobalTable changelog: its assignor looks the
changelog up by the default name and the worker never gets partitions.)

Ledger state (next sequence and head hash per partition) lives in a changelog-backed
table, so a restarted worker continues the chain instead of forking it at sequence 0.
Processing is at-least-once: a crash between publishing a chained event and committing
its input offset re-chains that input once more under a new sequence number; ``verify``
reports such duplicates by event id, nothing is lost, and the chain itself stays valid.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from processors.decider import Decider
from processors.policy.engine import CompiledPolicy
from processors.settings import ProcessorSettings
from schemas.codec import get_codec
from schemas.errors import CodecError
from schemas.records import AuditKind, audit_event, dead_letter
from schemas.topics import CATALOGUE, TOPIC_MAX_MESSAGE_BYTES, Topics
from trust.canonical import signing_payload
from trust.chain import GENESIS, Chain
from trust.checkpoints import build_checkpoint
from trust.keys import SigningKey
from trust.registry import ServiceRegistry, ServiceVerification

__all__ = ["build_app"]

log = logging.getLogger("lockgate.processor")

VERDICT_LATENCY = Histogram("lockgate_verdict_latency_seconds", "Policy evaluation latency per action",
                            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25))
DECISIONS = Counter("lockgate_decisions_total", "Verdicts by decision and basis", ["decision", "basis"])
RULE_MATCHES = Counter("lockgate_rule_matches_total", "Matched rules by id, effect and mode",
                       ["rule", "effect", "mode"])
DEAD_LETTERS = Counter("lockgate_dead_letters_total", "Records sent to the dead-letter topic", ["stage"])
LEDGER_EVENTS = Counter("lockgate_ledger_events_total", "Audit events chained into the ledger")
CHECKPOINTS = Counter("lockgate_checkpoints_total", "Signed checkpoints published")


class _Policies:
    """Compiled policies by tenant, recompiled only when the table's value changes.

    The check is on the hot path (once per action): the table hands back the same stored
    string until a new version lands, so comparing it with the cached one is usually an
    identity check, and nothing is decoded or hashed per action.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self._cache: dict[str, tuple[str, CompiledPolicy | None]] = {}

    def __call__(self, tenant: str) -> CompiledPolicy | None:
        stored = self.table.get(tenant)
        if stored is None:
            return None
        cached = self._cache.get(tenant)
        if cached is not None and (cached[0] is stored or cached[0] == stored):
            return cached[1]
        try:
            record = get_codec().decode_as("PolicySet", base64.b64decode(stored))
            compiled: CompiledPolicy | None = CompiledPolicy.from_record(record)
        except Exception as exc:
            log.error("policy for tenant %s does not compile; blocking its actions: %s", tenant, exc)
            compiled = None
        self._cache[tenant] = (stored, compiled)
        return compiled


class _Registry:
    """The service registry, reloaded when ``services.json`` changes (checked at most 1/s)."""

    def __init__(self, directory: Any) -> None:
        self.registry = ServiceRegistry(directory)
        self._checked = 0.0
        self._mtime = self._stat()

    def _stat(self) -> float:
        try:
            return float(self.registry.path.stat().st_mtime_ns)
        except OSError:
            return 0.0

    def get(self) -> ServiceRegistry:
        now = time.monotonic()
        if now - self._checked > 1.0:
            self._checked = now
            mtime = self._stat()
            if mtime != self._mtime:
                self._mtime = mtime
                self.registry.reload()
        return self.registry


def _app_id(prefix: str) -> str:
    return "lockgate-processor-" + (re.sub(r"[^A-Za-z0-9_-]", "-", prefix).strip("-") or "default")


def build_app(settings: ProcessorSettings | None = None) -> faust.App:
    """Build the processor app; nothing connects until the worker starts."""
    s = settings or ProcessorSettings()
    topics = Topics(s.topic_prefix)
    codec = get_codec()
    proposal_codec = get_codec(s.max_record_bytes)
    key = SigningKey.load(s.processor_key)
    registry = _Registry(s.service_dir)
    partitions = {spec.name: spec.partitions for spec in CATALOGUE}
    datadir = s.home / "processor" / _app_id(s.topic_prefix)
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level

    app = faust.App(
        _app_id(s.topic_prefix),
        broker=f"kafka://{s.bootstrap_servers}",
        store="memory://",
        topic_replication_factor=1,
        topic_partitions=partitions["audit-intake"],
        topic_allow_declare=True,
        web_enabled=True,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",  # Faust binds 0.0.0.0 unless told; health and metrics stay on loopback
        web_port=s.processor_port,
        web_in_thread=False,
        producer_linger=0.002,
        producer_acks=-1,
        producer_max_request_size=TOPIC_MAX_MESSAGE_BYTES,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=100,
        broker_commit_interval=0.5,
        stream_buffer_maxsize=1000,
        table_cleanup_interval=3600.0,
        logging_config=None,
        datadir=str(datadir),
    )

    def raw_topic(name: str, n: int) -> Any:
        return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=n,
                         internal=False)

    actions_t = raw_topic(topics.actions, partitions["actions"])
    outcomes_t = raw_topic(topics.outcomes, partitions["outcomes"])
    intake_t = raw_topic(topics.audit_intake, partitions["audit-intake"])
    audit_t = raw_topic(topics.audit, partitions["audit"])
    checkpoints_t = raw_topic(topics.checkpoints, partitions["checkpoints"])
    deadletter_t = raw_topic(topics.deadletter, partitions["deadletter"])
    policies_t = raw_topic(topics.policies, partitions["policies"])

    policy_table = app.GlobalTable("policies", key_type=str, value_type=str,
                                   partitions=partitions["policies"])
    ledger_heads = app.Table("ledger-heads", key_type=str, value_type=str,
                             partitions=partitions["audit-intake"])
    policies = _Policies(policy_table)
    decider = Decider(proposal_codec, key, s.processor_id, policies, registry.registry,
                      require_service_auth=s.require_service_auth)
    verdict_partitions = partitions["verdicts"]

    async def reject(event: Any, exc: Exception, stage: str, *, audit: bool = True) -> None:
        """Dead-letter a record we cannot read; with ``audit``, also put the refusal on the ledger."""
        msg, raw = event.message, event.value or b""
        await send_dead_letter(dead_letter(raw, exc, topic=msg.topic, partition=msg.partition,
                                           offset=msg.offset, stage=stage, key=msg.key), stage)
        if audit:
            ev = audit_event(AuditKind.DEAD_LETTER, "", None, raw[: 64 * 1024], detail=f"{type(exc).__name__}: {exc}")
            await intake_t.send(key=ev["event_id"].encode(), value=codec.encode("AuditEvent", ev))

    async def send_dead_letter(rec: dict[str, Any], stage: str) -> None:
        DEAD_LETTERS.labels(stage).inc()
        try:
            await deadletter_t.send(value=codec.encode("DeadLetter", rec))
        except Exception:
            # Never let a dead letter stop the decision path; the audit-intake copy remains.
            log.exception("could not write dead letter from %s (offset %s)", rec["source_topic"],
                          rec["source_offset"])

    @app.agent(actions_t, name="decide")
    async def decide(stream: Any) -> Any:
        async for event in stream.events():
            msg = event.message
            decider.registry = registry.get()
            result = decider.decide(event.value, topic=msg.topic, partition=msg.partition,
                                    offset=msg.offset, key=msg.key)
            if result.verdict is not None:
                v = result.verdict
                VERDICT_LATENCY.observe(v["eval_latency_us"] / 1e6)
                DECISIONS.labels(v["decision"], v["basis"]).inc()
                for rule in v["matched_rules"]:
                    RULE_MATCHES.labels(rule["id"], rule["effect"], rule["mode"]).inc()
                part = result.reply_partition
                # Replies go only to our own verdicts topic, never to a topic the requester names.
                if result.reply_topic == topics.verdicts and part is not None and 0 <= part < verdict_partitions:
                    await app.producer.send(topics.verdicts, key=v["action_id"].encode(),
                                            value=codec.encode("Verdict", v), partition=part,
                                            timestamp=None, headers=None)
                else:
                    log.warning("action %s names reply %s/%s, not ours; no reply sent",
                                v["action_id"], result.reply_topic, part)
            for ev in result.audit:
                await intake_t.send(key=(ev["action_id"] or ev["event_id"]).encode(),
                                    value=codec.encode("AuditEvent", ev))
            if result.dead_letter is not None:
                await send_dead_letter(result.dead_letter, "processor")

    @app.agent(policies_t, name="load-policies")
    async def load_policies(stream: Any) -> Any:
        """Copy each policy version from the compacted topic into the GlobalTable."""
        async for event in stream.events():
            raw: bytes | None = event.value
            if raw is None:
                continue
            try:
                rec = codec.decode_as("PolicySet", raw)
            except CodecError as exc:
                await reject(event, exc, "policies")
                continue
            policy_table[rec["tenant"]] = base64.b64encode(raw).decode("ascii")
            log.info("policy %s v%s active for tenant %s", rec["name"], rec["version"], rec["tenant"])

    @app.agent(outcomes_t, name="record-outcome")
    async def record_outcome(stream: Any) -> Any:
        async for event in stream.events():
            raw: bytes = event.value
            try:
                rec = codec.decode_as("ActionOutcome", raw)
            except CodecError as exc:
                await reject(event, exc, "outcomes")
                continue
            events = [audit_event(AuditKind.OUTCOME, rec["tenant"], rec["action_id"], raw)]
            reg = registry.get()
            auth = reg.verify(rec["service"], rec.get("service_key_id"),
                              signing_payload(rec, "service_signature", None),
                              rec.get("service_signature"), time.time_ns() // 1000)
            if auth is not ServiceVerification.OK:
                events.append(audit_event(AuditKind.SECURITY, rec["tenant"], rec["action_id"], raw,
                                          detail=f"outcome from unauthenticated service "
                                                 f"{rec['service']!r}: {auth.value}"))
            for ev in events:
                await intake_t.send(key=rec["action_id"].encode(), value=codec.encode("AuditEvent", ev))

    chain = Chain()
    pending: dict[int, list[dict[str, Any]]] = {}
    last_checkpoint: dict[int, float] = {}

    async def checkpoint(partition: int) -> None:
        events = pending.pop(partition, [])
        last_checkpoint[partition] = time.monotonic()
        if not events:
            return
        cp = build_checkpoint(events, key, s.processor_id, time.time_ns() // 1000)
        await checkpoints_t.send(key=str(partition).encode(), value=codec.encode("Checkpoint", cp))
        CHECKPOINTS.inc()

    @app.agent(intake_t, name="chain")
    async def chain_events(stream: Any) -> Any:
        async for event in stream.events():
            partition = event.message.partition
            raw: bytes = event.value
            try:
                unchained = codec.decode_as("AuditEvent", raw)
            except CodecError as exc:
                # Not re-audited: an unreadable intake record must not feed itself back in.
                await reject(event, exc, "ledger", audit=False)
                continue
            state_key = str(partition)
            stored = ledger_heads.get(state_key)
            if stored is not None:
                head = json.loads(stored)
                current = chain.head(partition)
                if current.next_sequence < head["next"]:
                    chain.resume(partition, head["next"], bytes.fromhex(head["head"]))
            chained = chain.append(unchained, partition)
            await audit_t.send(key=event.key, value=codec.encode("AuditEvent", chained), partition=partition)
            state = chain.head(partition)
            ledger_heads[state_key] = json.dumps({"next": state.next_sequence, "head": state.head.hex()})
            LEDGER_EVENTS.inc()
            pending.setdefault(partition, []).append(chained)
            if (len(pending[partition]) >= s.checkpoint_every
                    or time.monotonic() - last_checkpoint.get(partition, 0.0) >= s.checkpoint_interval_s):
                await checkpoint(partition)

    @app.timer(interval=max(0.5, s.checkpoint_interval_s / 2))  # type: ignore[untyped-decorator]
    async def idle_checkpoints() -> None:
        now = time.monotonic()
        for partition in list(pending):
            if now - last_checkpoint.get(partition, 0.0) >= s.checkpoint_interval_s:
                await checkpoint(partition)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "processor_id": s.processor_id,
                         "policies": len(list(policy_table.keys()))})

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    _ = (GENESIS, load_policies, decide, record_outcome, chain_events, idle_checkpoints, healthz, metrics)
    return app
