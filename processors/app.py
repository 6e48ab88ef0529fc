"""The processor worker: Faust agents and the ledger stage, thin shells over pure cores.

Topology (topic names from :class:`schemas.topics.Topics`)::

    actions ──▶ decide ──▶ decisions (verdict + audit events; stored and acknowledged first)
                   └─────▶ verdicts (the requester's reply partition)
    decisions, outcomes, audit-intake ══▶ ledger stage ══▶ audit + checkpoints  (one Kafka transaction per batch)
    policies ──▶ load-policies ──▶ GlobalTable (every worker holds every tenant's policy)
    decide ──▶ reviews (a held action's proposal + pending verdict) ◀── reviewers' votes
    reviews ──▶ review ──▶ reviews (closures) / verdicts (final) / audit-intake  (processors.reviews)
    anything unprocessable ──▶ deadletter (raw bytes + error) and a dead_letter audit event

Cores (no Kafka, unit-tested): :class:`processors.decider.Decider`,
:class:`processors.outcomes.OutcomeRecorder`, :class:`processors.ledger_writer.LedgerWriter`,
:class:`processors.decisions.DecisionMemory`, :class:`processors.registry_watch.RegistryWatcher`.
The shells here only move bytes between them and Kafka.

Guarantees and how they are kept:

* **Exactly-once ledger.** The ledger stage (:mod:`processors.ledger_stage`) chains its
  inputs into ``audit`` in Kafka transactions that also commit the input offsets; its
  head after a restart comes from the committed log only. The decide agent is
  at-least-once, so it derives every event id from the input's coordinates and the
  ledger drops repeats: a crash anywhere yields no duplicated and no lost entry. Neither
  decisions nor outcomes go through ``audit-intake``: a decision's audit events travel in
  the ``decisions`` record it stores anyway (:mod:`processors.decisions`), and the ledger
  stage reads ``decisions`` and ``outcomes`` itself (the outcome core runs inside its
  transactions). ``audit-intake`` carries only what has no record of its own: dead
  letters without a verdict, registry refusals, the review desk's events.
* **One decision per action.** ``decide`` writes each decision, with its audit events, to
  ``decisions`` and waits for the broker's acknowledgement before it sends the verdict; a
  re-delivered input re-sends the stored verdict bytes (:mod:`processors.decisions`).
* **Every event provable.** The ledger stage signs a checkpoint within
  ``LOCKGATE_CHECKPOINT_INTERVAL_S`` of chaining an event, and whoever owns a partition
  next checkpoints what a crashed owner left uncovered.
* **No input drops an action.** Every record on ``actions`` and ``outcomes`` ends in a
  result (a signed verdict; an outcome event) or in a dead letter plus a ``dead_letter``
  ledger event: null values, tombstones and any exception in a core included. Every
  output of the decide agent is acknowledged by the broker before the input counts as processed; if Kafka
  keeps refusing, the worker exits hard (``os._exit``) rather than let Faust commit an
  input whose outputs are missing — a restart re-processes it from committed state.
  Records Faust's consumer drops before handing them (and may commit past) are found and
  decided by the agent itself (:mod:`processors.input_gaps`).
* **The registries are never lost to a bad edit.** A refused reload of ``services.json``
  or ``reviewers.json`` (unsafe permissions, bad JSON) keeps the last good registry and puts
  one ``security`` event on the ledger per refused state of the file
  (:mod:`processors.registry_watch`), checked every half second whether or not actions
  arrive (and ``reviewers.json`` before each reviews record too): votes are still judged.
* **Reviews expire with no traffic.** The review desk rebuilds each ``reviews`` partition
  when the group assigns it, up to the group's position (:mod:`processors.reviews.rebuilds`),
  so after a restart or a rebalance the expiry timer covers it before any record arrives.

Speed: waiting for acknowledgements must not serialise the agents, so each agent is a
:class:`_Pipeline` — records start in input order (decide, enqueue the produces) and
finish concurrently (wait for acks, send what must wait for them), each acked to Faust
only when finished. Outputs go through a librdkafka producer (:class:`_Publisher`),
whose acknowledged round trip is several times shorter than aiokafka's in a busy loop.
Faust's own producer carries only the policies table's changelog. Faust's consumer uses
static membership (the processor id), so a restarted worker resumes at once.

The ``load-policies`` agent copies each version from the compacted policies topic into
the ``policies`` GlobalTable, whose changelog every worker reads, so ``lockgate policy
apply`` takes effect on running workers without restart. (Faust cannot use our own topic
as a GlobalTable changelog: its assignor looks the changelog up by the default name and
the worker never gets partitions.)
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from lockgate.kernel.group_partitions import GroupPartitions
from lockgate.kernel.partition_reader import StoredRecord, committed_reader, read_since, read_tail
from processors.acks import InOrderAcks
from processors.crash import crash_worker
from processors.decider import Decider, DecisionResult, StoredDecision
from processors.decisions import DecisionMemory, decision_record, parse_decision
from processors.input_gaps import InputGaps
from processors.ledger_stage import LedgerStage
from processors.ledger_writer import LedgerWriter
from processors.outcomes import OutcomeRecorder
from processors.policy.engine import CompiledPolicy
from processors.registry_watch import RegistryWatcher
from processors.replay import ActionIds
from processors.reviews.desk import DeskResult, ReviewDesk
from processors.reviews.grants import GrantFeed, GrantIndex
from processors.reviews.rebuilds import DeskRebuilds
from processors.reviews.webhook import Webhooks
from processors.settings import ProcessorSettings
from processors.stage import Source, StageOutput, refuse
from processors.witnesses import Witnesses, parse_witnesses
from schemas.codec import get_codec
from schemas.topics import CATALOGUE, TOPIC_MAX_MESSAGE_BYTES, Topics
from trust.bindings import policy_sha256
from trust.grants import GRANT_USED, GrantTerms
from trust.keys import Keyring, SigningKey
from trust.registry import ServiceRegistry
from trust.reviewers import ReviewerRegistry

__all__ = ["build_app", "faust_instance_id"]

log = logging.getLogger("lockgate.processor")

VERDICT_LATENCY = Histogram("lockgate_verdict_latency_seconds", "Policy evaluation latency per action",
                            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25))
DECISIONS = Counter("lockgate_decisions_total", "Verdicts by decision and basis", ["decision", "basis"])
REPLAYED = Counter("lockgate_decisions_replayed_total",
                   "Re-delivered proposals answered with their stored verdict instead of a new decision")
RULE_MATCHES = Counter("lockgate_rule_matches_total", "Matched rules by id, effect and mode",
                       ["rule", "effect", "mode"])
DEAD_LETTERS = Counter("lockgate_dead_letters_total", "Records sent to the dead-letter topic", ["stage"])
UNHANDED = Counter("lockgate_actions_never_handed_total",
                   "Actions records the consumer never handed the decide agent, decided by the agent itself")
REVIEWS = Counter("lockgate_reviews_total", "Review events: requested, approved, denied, expired, break_glass, "
                  "vote_accepted, vote_refused, granted (allowed by a time-boxed grant)", ["event"])

_SEND_ATTEMPTS = 6  # with doubling backoff from 0.25 s: about 8 s of broker trouble before a hard exit
_SUBSCRIPTION = "s2"  # the Faust group's topics: actions, policies, reviews (s1 also read outcomes)
# Long enough to ride out a cluster's leader failover: a dead node is fenced after
# broker.session.timeout.ms (later if it was the active controller, which must be replaced
# first), then leaders move and the producer refreshes metadata — 6 to over 10 s on the
# loaded 2-core box. A decisions record that times out stops the worker (it is never
# retried out of order), so a shorter timeout turned every node death into a restart.
_DELIVERY_TIMEOUT_MS = 30_000
_IN_FLIGHT = 256  # records an agent finishes concurrently (each waits for broker acknowledgements)


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
            raw = base64.b64decode(stored)
            record = get_codec().decode_as("PolicySet", raw)
            compiled: CompiledPolicy | None = CompiledPolicy.from_record(record, sha256=policy_sha256(raw))
        except Exception as exc:
            log.error("policy for tenant %s does not compile; blocking its actions: %s", tenant, exc)
            compiled = None
        self._cache[tenant] = (stored, compiled)
        return compiled


@dataclass(frozen=True)
class _Out:
    """One record to publish."""

    topic: str
    value: bytes
    key: bytes | None = None
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] | None = None


class _Publisher:
    """Publishes the agents' records and waits until the broker acknowledged each.

    A librdkafka producer (idempotent, ``acks=all``, no linger) rather than Faust's: the
    decide path waits for an acknowledgement before every verdict, and librdkafka's round
    trip is a fraction of aiokafka's inside a busy event loop. Delivery reports arrive on
    a poll thread and settle asyncio futures. Keys are partitioned with ``murmur2`` (what
    the Java client and aiokafka use), so a re-processed input lands where it landed before.
    """

    def __init__(self, bootstrap: str, topics: Topics, linger_ms: float = 0.0) -> None:
        self.topics = topics
        self.codec = get_codec()
        self._producer = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
            "partitioner": "murmur2_random",
            "message.max.bytes": TOPIC_MAX_MESSAGE_BYTES,
            "message.timeout.ms": _DELIVERY_TIMEOUT_MS,  # surface broker trouble to the retry loop below
        })
        self._running = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="lockgate-publisher", daemon=True)

    def start(self) -> None:
        self._running.set()
        self._poller.start()

    def stop(self) -> None:
        """Deliver what is queued, stop the poll thread."""
        self._producer.flush(10)
        self._running.clear()
        if self._poller.is_alive():
            self._poller.join(5)

    def _poll(self) -> None:
        while self._running.is_set():
            self._producer.poll(0.05)

    def enqueue(self, records: list[_Out]) -> asyncio.Future[list[BaseException | None]]:
        """Produce ``records`` now, in order; the future settles when every one is acknowledged."""
        return asyncio.gather(*[self._produce(r) for r in records], return_exceptions=True)

    async def deliver(self, records: list[_Out], pending: asyncio.Future[list[BaseException | None]] | None = None,
                      *, retry: bool = True) -> None:
        """Wait until the broker acknowledged ``records`` (enqueued as ``pending``, else now).

        A failure is retried with backoff when ``retry`` (repeats are harmless: ids are
        deterministic); else, or when it persists, the worker exits hard: an input must
        never count as processed while one of its outputs is missing.
        """
        if not records:
            return
        delay = 0.25
        attempt = 1
        outcome = pending if pending is not None else self.enqueue(records)
        while True:
            failures = [r for r in await outcome if r is not None]
            if not failures:
                return
            if not retry or attempt >= _SEND_ATTEMPTS:
                crash_worker(f"Kafka refused {len(failures)} of {len(records)} record(s) after {attempt} attempt(s): "
                       f"{failures[0]}")
            log.warning("publishing %d record(s) failed (attempt %d of %d): %s", len(failures), attempt,
                        _SEND_ATTEMPTS, failures[0])
            await asyncio.sleep(delay)
            delay *= 2
            attempt += 1
            outcome = self.enqueue(records)

    async def send(self, records: list[_Out]) -> None:
        """Publish ``records`` and wait for them (see :meth:`deliver`)."""
        await self.deliver(records)

    def _produce(self, record: _Out) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(_settle, done, err)

        kwargs: dict[str, Any] = {"key": record.key, "on_delivery": delivered}
        if record.partition is not None:
            kwargs["partition"] = record.partition
        if record.headers:
            kwargs["headers"] = list(record.headers)
        for _ in range(100):  # a full local queue drains as deliveries are reported
            try:
                self._producer.produce(record.topic, record.value, **kwargs)
                return done
            except BufferError:
                self._producer.poll(0.05)
        self._producer.produce(record.topic, record.value, **kwargs)  # still full: raise
        return done

    def output(self, out: StageOutput, stage: str, *, audit: bool = True) -> list[_Out]:
        """The records of a core's output: its audit events on ``audit-intake`` (unless
        ``audit`` is false: they travel in a record of their own), its dead letter."""
        records = [_Out(self.topics.audit_intake, self.codec.encode("AuditEvent", ev),
                        key=(ev["action_id"] or ev["event_id"]).encode()) for ev in out.audit] if audit else []
        if out.dead_letter is not None:
            DEAD_LETTERS.labels(stage).inc()
            records.append(_Out(self.topics.deadletter, self.codec.encode("DeadLetter", out.dead_letter)))
        return records

    async def refuse(self, event: Any, exc: BaseException, stage: str) -> None:
        """The last resort of every agent: account for the record whatever went wrong."""
        msg = event.message
        await self.refuse_record(event.value, Source(msg.topic, msg.partition, msg.offset, msg.key), exc, stage)

    async def refuse_record(self, raw: bytes | None, source: Source, exc: BaseException, stage: str) -> None:
        """:meth:`refuse` for a record read from its topic rather than handed by Faust."""
        log.error("%s: %s[%d]@%d could not be processed: %s", stage, source.topic, source.partition, source.offset,
                  exc, exc_info=exc)
        await self.send(self.output(refuse(raw, exc, source, stage, StageOutput()), stage))


def _settle(done: asyncio.Future[None], err: KafkaError | None) -> None:
    if done.done():
        return
    if err is None:
        done.set_result(None)
    else:
        done.set_exception(KafkaException(err))


class _Pipeline:
    """An agent's loop: start each record in order, finish concurrently, ack in input order.

    ``start(event)`` runs in input order (deciding, reading stored decisions, enqueueing the
    produces — so records of one partition reach Kafka in input order) and returns the
    awaitable that finishes the record (waiting for acknowledgements, sending what must
    wait for them). Records finish concurrently, but each is acked to Faust only when it
    and every earlier record of its partition have finished (:class:`processors.acks.InOrderAcks`:
    Faust's own commit logic can skip an unfinished offset when acks arrive out of order),
    so a crash re-delivers every record whose outputs were not all acknowledged. At most
    ``limit`` records are started and not yet acked. Any exception ends in
    :meth:`_Publisher.refuse`: the record is accounted for, never dropped.
    """

    def __init__(self, publisher: _Publisher, stage: str, limit: int = _IN_FLIGHT) -> None:
        self.publisher = publisher
        self.stage = stage
        self.limit = limit
        self._tasks: set[asyncio.Future[None]] = set()
        self._order: InOrderAcks[Any] = InOrderAcks()

    async def run(self, stream: Any, start: Callable[[Any], Awaitable[Awaitable[None]]]) -> None:
        events = stream.noack()
        slots = asyncio.Semaphore(self.limit)
        async for event in events.events():
            await slots.acquire()
            self._order.started(event.message.tp, event)
            try:
                finish = await start(event)
            except Exception as exc:
                finish = self.publisher.refuse(event, exc, self.stage)
            task = asyncio.ensure_future(self._finish(events, event, finish, slots))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _finish(self, events: Any, event: Any, finish: Awaitable[None], slots: asyncio.Semaphore) -> None:
        await _settled(finish, lambda exc: self.publisher.refuse(event, exc, self.stage), self.stage)
        for ready in self._order.finished(event):
            await events.ack(ready)
            slots.release()


async def _settled(finish: Awaitable[None], refuse_it: Callable[[BaseException], Awaitable[None]],
                   stage: str) -> None:
    """Await a record's finish; if it fails, account for the record with ``refuse_it``. Never raises."""
    try:
        await finish
    except Exception as exc:
        try:
            await refuse_it(exc)
        except Exception as refused:  # cannot even account for it: restart rather than drop it
            crash_worker(f"{stage}: could not dead-letter a record after {exc!r}: {refused!r}")


async def _after(earlier: list[Awaitable[None]], finish: Awaitable[None]) -> None:
    """Finish a record once the records decided before it (never handed) have finished."""
    await asyncio.gather(*earlier)
    await finish


def faust_instance_id(processor_id: str) -> str:
    """The Faust group's static member id of worker ``processor_id`` (it names the subscription)."""
    return f"{processor_id}-{_SUBSCRIPTION}"


async def _handled() -> None:
    """A record's finish when it has nothing left to do (it was handled before it was handed)."""


def _app_id(prefix: str) -> str:
    return "lockgate-processor-" + (re.sub(r"[^A-Za-z0-9_-]", "-", prefix).strip("-") or "default")


def build_app(settings: ProcessorSettings | None = None) -> faust.App:
    """Build the processor app; nothing connects until the worker starts.

    Raises :class:`lockgate.kernel.errors.LockgateError` subclasses for a missing or unsafe
    processor key or service registry (the worker refuses to start).
    """
    s = settings or ProcessorSettings()
    topics = Topics(s.topic_prefix)
    codec = get_codec()
    key = SigningKey.load(s.processor_key)
    registry = ServiceRegistry(s.service_dir)
    watcher = RegistryWatcher(registry)
    partitions = {spec.name: spec.partitions for spec in CATALOGUE}
    app_id = _app_id(s.topic_prefix)
    datadir = s.home / "processor" / app_id
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level

    app = faust.App(
        app_id,
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
        producer_linger=0.002,  # Faust's own producer only carries the policies table's changelog
        producer_acks=-1,
        producer_max_request_size=TOPIC_MAX_MESSAGE_BYTES,
        consumer_auto_offset_reset="earliest",
        # Static membership: a restarted worker takes its partitions back at once instead of
        # after the dead member's session timeout. The group hands a static member its old
        # assignment, and Faust asserts that assignment names this worker's canonical URL, so
        # the URL must not change with the web port: it names the processor id instead (Faust
        # routes nothing through it here).
        # The group also hands back the old assignment when the subscription changed, which
        # aiokafka refuses; so the instance id names the subscription's generation too
        # (_SUBSCRIPTION): after an upgrade that changes it, the old member's partitions come
        # free after its session timeout, once.
        consumer_group_instance_id=faust_instance_id(s.processor_id),
        # Faust's default (60 s) would leave a dead worker's partitions undecided for a minute.
        broker_session_timeout=s.processor_session_timeout_s,
        broker_heartbeat_interval=s.processor_session_timeout_s / 4,
        canonical_url=f"http://{re.sub(r'[^A-Za-z0-9-]', '-', s.processor_id)}.processor.invalid",
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
    policies_t = raw_topic(topics.policies, partitions["policies"])

    policy_table = app.GlobalTable("policies", key_type=str, value_type=str,
                                   partitions=partitions["policies"])
    decided = ActionIds(partitions["actions"], int(s.replay_window_s * 1e6))
    reviewers = ReviewerRegistry(s.service_dir)
    grants = GrantIndex(Keyring([key.public()]), ReviewerRegistry(s.service_dir))  # its own: the feed's thread
    grant_feed = GrantFeed(s.bootstrap_servers, topics.reviews, grants)
    policies = _Policies(policy_table)
    decider = Decider(get_codec(s.max_record_bytes), key, s.processor_id, policies, registry,
                      require_service_auth=s.require_service_auth, decided=decided, grants=grants)
    recorder = OutcomeRecorder(codec, registry)
    memory = DecisionMemory()
    verdict_key = key.public()  # a stored decision counts only if this key signed it (parse_decision)
    publisher = _Publisher(s.bootstrap_servers, topics, s.publish_linger_ms)
    witnesses = Witnesses(parse_witnesses(s.witnesses))
    ledger = LedgerStage(
        LedgerWriter(key, s.processor_id, checkpoint_every=s.checkpoint_every,
                     checkpoint_interval_s=s.checkpoint_interval_s, dedup_window=s.ledger_dedup_window,
                     log_name=s.log_name, keep_proofs=bool(witnesses)),
        bootstrap=s.bootstrap_servers, topics=topics, app_id=app_id, processor_id=s.processor_id,
        witnesses=witnesses or None, outcomes=recorder, outcomes_legacy_group=app_id, decisions=True,
        kafka_debug=s.ledger_kafka_debug, fetch_wait_ms=s.ledger_fetch_wait_ms)
    decisions_reader = committed_reader(s.bootstrap_servers, "decisions")
    reviews_t = raw_topic(topics.reviews, partitions["reviews"])
    desk = ReviewDesk(key, s.processor_id, reviewers)
    webhooks = Webhooks.from_setting(s.review_webhooks, s.review_webhook_secret)
    reviews_log = GroupPartitions(s.bootstrap_servers, app_id, topics.reviews)

    async def publish_closures(closures: list[tuple[str, bytes]]) -> None:
        await publisher.send([_Out(topics.reviews, value, key=rid.encode()) for rid, value in closures])

    async def replay_review(record: StoredRecord) -> None:
        """Handle a reviews record the consumer skipped, like the agent, and wait for its outputs."""
        source = Source(topics.reviews, record.partition, record.offset, record.key)
        await handle_review(record.value, source, record.timestamp_ms * 1000)

    rebuilds = DeskRebuilds(desk, reviews_log.resume_at, reviews_log.records, replay_review, publish_closures,
                            crash_worker, end=reviews_log.end)

    def review_records(result: DecisionResult) -> list[_Out]:
        """A held (or break-glass) action's proposal and verdict, to open its review."""
        v, encoded = result.verdict, result.verdict_bytes
        if (v is None or encoded is None or result.proposal_raw is None or v.get("review") is None
                or (v["decision"] != "review" and v["basis"] != "break_glass")):
            return []  # an allow by a time-boxed grant opens no review
        if v["basis"] == "break_glass":
            REVIEWS.labels("break_glass").inc()
        key = str(v["review"]["review_id"]).encode()
        return [_Out(topics.reviews, result.proposal_raw, key=key), _Out(topics.reviews, encoded, key=key)]

    def desk_records(out: DeskResult) -> list[_Out]:
        records = [_Out(topics.reviews, value, key=rid.encode()) for rid, value in out.closures]
        if out.reply is not None:
            topic, part, action_id, value = out.reply
            if topic == topics.verdicts and 0 <= part < partitions["verdicts"]:
                records.append(_Out(topics.verdicts, value, key=action_id.encode(), partition=part))
        if out.notify is not None:
            webhooks.send(out.notify)
        if out.metric is not None:
            REVIEWS.labels(out.metric).inc()
        return records + publisher.output(out, "reviews")

    async def start_review(event: Any) -> Awaitable[None]:
        msg = event.message
        if not await rebuilds.ready(msg.partition, msg.offset):  # normally rebuilt at assignment already
            return _handled()  # handled here before the consumer handed it (a stalled partition)
        at_us = int((msg.timestamp or 0) * 1_000_000)
        return handle_review(event.value, Source(msg.topic, msg.partition, msg.offset, msg.key), at_us)

    def handle_review(raw: bytes | None, source: Source, at_us: int) -> Awaitable[None]:
        """Judge one reviews record, enqueue its outputs; the awaitable waits for their acks."""
        out = desk.handle(raw, source, at_us)
        if out.closed is not None:
            grants.add(out.closed)  # before the requester is answered, so its next action finds it here
        records = desk_records(out)
        return publisher.deliver(records, publisher.enqueue(records))

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def expire_reviews() -> None:
        """Close reviews past their expiry (the closure is answered when the agent reads it)."""
        closures = desk.expire()
        if closures:
            await publish_closures(closures)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def catch_up_stalled_reviews() -> None:
        """Handle reviews records the consumer never handed (:mod:`processors.reviews.rebuilds`)."""
        await rebuilds.check_stalls()

    def reviews_of(tps: set[TP]) -> list[int]:
        return [tp.partition for tp in tps if tp.topic == topics.reviews]

    @app.on_partitions_assigned.connect
    def rebuild_assigned_reviews(_app: Any, /, *args: Any, **_kwargs: Any) -> None:
        """Rebuild each assigned reviews partition now, not when its next record comes (if ever)."""
        rebuilds.assigned(reviews_of(args[0]))

    @app.on_partitions_revoked.connect
    def suspend_revoked_reviews(_app: Any, /, *args: Any, **_kwargs: Any) -> None:
        rebuilds.revoked(reviews_of(args[0]))

    @app.agent(reviews_t, name="review")
    async def review(stream: Any) -> Any:
        await _Pipeline(publisher, "reviews").run(stream, start_review)

    def read_decisions(partition: int, from_offset: int) -> list[tuple[int, StoredDecision]]:
        """Blocking (run in an executor, one call at a time): the stored decisions of inputs at
        or after ``from_offset`` of ``actions[partition]`` (and older ones read on the way);
        remembers the partition's recently decided action ids (replay refusal)."""
        found: list[tuple[int, StoredDecision]] = []

        def enough(records: Any) -> bool:
            found[:] = [d for d in (parse_decision(r.value, r.headers, signer=verdict_key, key=r.key) for r in records)
                         if d is not None]
            return DecisionMemory.recovery_complete(from_offset, (o for o, _ in found))

        read_tail(decisions_reader, topics.decisions, partition, enough, chunk=512)
        now_us = time.time_ns() // 1000
        ids = read_since(decisions_reader, topics.decisions, partition, decided.load_since_us(now_us) // 1000)
        remembered = decided.loaded(partition, (r.key.decode() for r in ids if r.key), now_us)
        log.info("actions[%d]: %d decided action id(s) remembered from %s", partition, remembered, topics.decisions)
        return found

    actions_log = GroupPartitions(s.bootstrap_servers, app_id, topics.actions)

    def decide_unhanded(record: StoredRecord) -> Awaitable[None]:
        """Decide an actions record the consumer never handed, as the agent would; its finish runs now."""
        UNHANDED.inc()
        source = Source(topics.actions, record.partition, record.offset, record.key)

        def refuse_it(exc: BaseException) -> Awaitable[None]:
            return publisher.refuse_record(record.value, source, exc, "processor")

        try:
            finish = decide_input(record.value, source)
        except Exception as exc:
            finish = refuse_it(exc)
        return asyncio.ensure_future(_settled(finish, refuse_it, "processor"))

    gaps = InputGaps(memory, actions_log.resume_at, actions_log.records, actions_log.end, read_decisions,
                     decide_unhanded, crash_worker, ready=lambda: not (app.rebalancing or app.in_recovery),
                     forget=decided.forget)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def catch_up_stalled_actions() -> None:
        """Decide actions records the consumer never handed (:mod:`processors.input_gaps`)."""
        await gaps.check_stalls()

    @app.on_partitions_assigned.connect
    def watch_assigned_actions(_app: Any, /, *args: Any, **_kwargs: Any) -> None:
        gaps.assigned(tp.partition for tp in args[0] if tp.topic == topics.actions)

    @app.on_partitions_revoked.connect
    def forget_revoked_actions(_app: Any, /, *args: Any, **_kwargs: Any) -> None:
        gaps.revoked(tp.partition for tp in args[0] if tp.topic == topics.actions)

    @app.timer(interval=watcher.check_every_s / 2)  # type: ignore[untyped-decorator]
    async def watch_registry() -> None:
        """Reload ``services.json`` and ``reviewers.json`` on change, with or without traffic;
        ledger a refused reload (the review desk also checks its registry before each record)."""
        refusal = watcher.poll()
        desk.refresh_registry()
        refusals = ([refusal] if refusal is not None else []) + desk.refusals()
        if refusals:
            await publisher.send(publisher.output(StageOutput(refusals), "registry"))

    def verdict_records(result: DecisionResult) -> list[_Out]:
        v, encoded = result.verdict, result.verdict_bytes
        if v is None or encoded is None:
            return []
        if not result.replayed:
            VERDICT_LATENCY.observe(v["eval_latency_us"] / 1e6)
            DECISIONS.labels(v["decision"], v["basis"]).inc()
            for rule in v["matched_rules"]:
                RULE_MATCHES.labels(rule["id"], rule["effect"], rule["mode"]).inc()
            if (v.get("review") or {}).get("grant") == GRANT_USED:
                REVIEWS.labels("granted").inc()
        part = result.reply_partition
        # Replies go only to our own verdicts topic, never to a topic the requester names.
        if result.reply_topic == topics.verdicts and part is not None and 0 <= part < partitions["verdicts"]:
            return [_Out(topics.verdicts, encoded, key=v["action_id"].encode(), partition=part)]
        log.warning("action %s names reply %s/%s, not ours; no reply sent", v["action_id"], result.reply_topic, part)
        return []

    async def start_decision(event: Any) -> Awaitable[None]:
        msg = event.message
        earlier = await gaps.handed(msg.partition, msg.offset)  # reads stored decisions back when needed
        if earlier is None:
            return _handled()  # decided as a record never handed, before the consumer handed it
        try:
            finish = decide_input(event.value, Source(msg.topic, msg.partition, msg.offset, msg.key))
        except Exception as exc:
            finish = publisher.refuse(event, exc, "processor")
        return _after(earlier, finish) if earlier else finish

    def decide_input(raw: bytes | None, source: Source) -> Awaitable[None]:
        """Decide the input at ``source`` and enqueue its outputs (synchronously: nothing else
        runs on the loop meanwhile); the awaitable waits for their acknowledgements."""
        stored = memory.take(source.partition, source.offset)
        result = decider.decide(raw, source, stored)
        if result.replayed:
            REPLAYED.inc()
        decision = result.stored
        kept = [] if decision is None or result.verdict is None else [
            _Out(topics.decisions, decision_record(codec, source.offset, decision, result.audit),
                 key=str(result.verdict["action_id"]).encode(), partition=source.partition)]
        # The ledger chains the events from the stored record: this one, or the one re-sent
        # (records from before events travelled in them still need the events sent).
        in_record = bool(kept) or (stored is not None and stored.carries_events)
        return finish_decision(result, kept, publisher.enqueue(kept), in_record)

    async def finish_decision(result: DecisionResult, kept: list[_Out],
                              pending: asyncio.Future[list[BaseException | None]], in_record: bool) -> None:
        # Never retried out of order: the read-back relies on decisions being in input order.
        await publisher.deliver(kept, pending, retry=False)
        await publisher.send(review_records(result) + verdict_records(result)
                             + publisher.output(result, "processor", audit=not in_record))

    @app.agent(actions_t, name="decide")
    async def decide(stream: Any) -> Any:
        await _Pipeline(publisher, "processor").run(stream, start_decision)

    @app.agent(policies_t, name="load-policies")
    async def load_policies(stream: Any) -> Any:
        """Copy each policy version from the compacted topic into the GlobalTable."""
        async for event in stream.events():
            raw: bytes | None = event.value
            if raw is None:
                continue  # compaction tombstone: nothing to load
            try:
                rec = codec.decode_as("PolicySet", raw)
                policy_table[rec["tenant"]] = base64.b64encode(raw).decode("ascii")
                log.info("policy %s v%s active for tenant %s", rec["name"], rec["version"], rec["tenant"])
            except Exception as exc:
                await publisher.refuse(event, exc, "policies")

    @app.task  # type: ignore[untyped-decorator]
    async def start_threads() -> None:
        publisher.start()
        ledger.start()
        webhooks.start()
        grant_feed.start()

    @app.on_before_shutdown.connect
    async def stop_threads(*_args: Any, **_kwargs: Any) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, publisher.stop)
        await loop.run_in_executor(None, ledger.stop)
        await loop.run_in_executor(None, webhooks.stop)
        await loop.run_in_executor(None, grant_feed.stop)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok" if ledger.healthy else "ledger stage down",
                         "processor_id": s.processor_id, "ledger": ledger.healthy,
                         "policies": len(list(policy_table.keys()))},
                        status=200 if ledger.healthy else 503)

    @app.page("/grants")
    async def grants_page(web: Any, request: Any) -> Any:
        """This worker's view of the time-boxed review grants, with today's policy's terms."""
        rows = []
        for grant in grants.grants():
            policy = policies(grant.tenant)
            terms = GrantTerms.of_rule(grant.rule_id, policy.review_rule(grant.rule_id)) if policy else None
            rows.append({**grant.summary(terms), "grants_now": terms is not None})
        return web.json({**grants.status(), "processor_id": s.processor_id, "items": rows})

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    _ = (decide, load_policies, watch_registry, start_threads, stop_threads, healthz, metrics, review,
         expire_reviews, catch_up_stalled_reviews, grants_page, rebuild_assigned_reviews, suspend_revoked_reviews,
         catch_up_stalled_actions, watch_assigned_actions, forget_revoked_actions)
    return app
