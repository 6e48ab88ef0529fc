"""The long-running sink: Kafka ``audit`` + ``checkpoints`` → ClickHouse, plus its HTTP server.

Loop contract:

* One confluent-kafka consumer in its own group (auto-commit off, ``read_committed``)
  subscribes to ``<prefix>audit`` and ``<prefix>checkpoints``.
* Each record is decoded with the codec; a poison record (undecodable, or not a valid
  AuditEvent/Checkpoint) is produced raw with the error to ``<prefix>deadletter`` as a
  DeadLetter and skipped — the loop never stalls on it.
* Records go to the :class:`~sinks.writer.BatchWriter`; when a batch is due (size or age)
  the writer inserts, and only the offsets it returns are committed, after the dead-letter
  producer has flushed. An insert failure pauses consumption and retries the same batch
  after ``retry_after`` (no loss, no duplicates: see ``sinks.writer``).
* A consumer that can no longer consume — a fatal error such as ``FENCED_INSTANCE_ID`` (a
  static member fenced, e.g. after a broker restart), or nothing read while a partition
  of its own has lag and no commit for ``LOCKGATE_STALL_AFTER_S`` — is closed and
  replaced: its uncommitted rows are dropped from the writer, and the new consumer
  re-joins the group and re-reads from the committed offsets; rows that had already
  landed are recognised by their source offsets and not inserted again (``sinks.writer``).
  Each replacement is logged and counted (``lockgate_sink_consumer_restarts_total``);
  ``/healthz`` says whether the sink is consuming (``state``, ``lockgate.kernel.consumer_health``).
* SIGTERM/SIGINT: stop polling, final flush + commit, close.
* The same process follows the ``reviews`` topic for the dashboard's review inbox
  (:mod:`sinks.review_inbox`) and casts reviewers' votes from it.
* The same process serves the API/dashboard/``/metrics`` (the embedded engine allows one
  owning process per data directory, so the API must live where the writer lives).

Settings (env, read once at start into :class:`SinkSettings`):

=============================  ==================================  ===========================
env                            meaning                             default
=============================  ==================================  ===========================
LOCKGATE_TOPIC_PREFIX          topic name prefix                   ``lockgate.``
LOCKGATE_BOOTSTRAP_SERVERS     Kafka bootstrap servers             ``127.0.0.1:$LOCKGATE_KAFKA_PORT``
LOCKGATE_CLICKHOUSE_DSN        ``chdb:///dir`` or ``http(s)://…``  ``chdb://$HOME/clickhouse``
LOCKGATE_CLICKHOUSE_DATABASE   database name                       ``lockgate``
LOCKGATE_SINK_GROUP_ID         consumer group                      ``lockgate-sink``
LOCKGATE_SINK_BATCH_ROWS       rows per batch                      10000
LOCKGATE_SINK_BATCH_MS         max batch age (ms)                  500
LOCKGATE_SINK_DERIVE_WORKERS   processes decoding payloads (0:     1
                               the insert thread does it)
LOCKGATE_STALL_AFTER_S         lag, no commit: not consuming       30
LOCKGATE_SINK_HTTP_HOST/PORT   API + metrics listen address        ``127.0.0.1:$LOCKGATE_API_PORT``
LOCKGATE_RETENTION_DAYS        TTL in days (unset: keep forever)   unset
LOCKGATE_HOME                  state dir (tokens, chDB dir)        ``~/.lockgate``
=============================  ==================================  ===========================
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lockgate.kernel.consumer_errors import consumer_is_broken
from lockgate.kernel.consumer_health import ConsumerHealth, LagProbe, LagReading, Partition
from lockgate.kernel.fetch_batching import DEFAULT_RECORDING_FETCH_WAIT_MS, batched_fetch
from lockgate.kernel.home import Home, default_home
from lockgate.kernel.local_broker import DEFAULT_KAFKA_PORT, local_bootstrap
from schemas.codec import get_codec
from schemas.errors import CodecError
from schemas.records import dead_letter
from schemas.topics import DEFAULT_PREFIX, TOPIC_MAX_MESSAGE_BYTES, Topics
from sinks.action_record import keyring_from_file
from sinks.api import ApiServer
from sinks.clickhouse import ClickHouse, connect
from sinks.errors import InsertFailed, RowError, SinkError
from sinks.migrations import apply_retention, migrate
from sinks.query import AuditQueries
from sinks.review_inbox import ReviewInbox
from sinks.tokens import TokenStore
from sinks.writer import BatchWriter, RecordKind, WriterConfig

__all__ = ["SinkMetrics", "SinkService", "SinkSettings", "main"]

log = logging.getLogger("lockgate.sink")

_MIN_BACKOFF_S, _MAX_BACKOFF_S = 0.5, 10.0
_LAG_INTERVAL_S = 2.0


class _ConsumerBroken(SinkError):
    """The consumer cannot consume any more (fatal error): close it and make a new one."""


class _ConsumerStalled(_ConsumerBroken):
    """No progress while the group has lag."""


class SinkSettings(BaseSettings):
    """Everything the sink process needs, read once from the environment (``LOCKGATE_*``)."""

    model_config = SettingsConfigDict(env_prefix="LOCKGATE_", frozen=True, extra="ignore")

    topic_prefix: str = DEFAULT_PREFIX
    kafka_port: int = Field(default=DEFAULT_KAFKA_PORT, ge=1, le=65535)  # the local stack's, when no bootstrap
    bootstrap_servers: str = Field(default_factory=local_bootstrap)
    clickhouse_dsn: str = ""
    clickhouse_database: str = "lockgate"
    sink_group_id: str = "lockgate-sink"
    sink_instance_id: str = Field(default_factory=lambda: f"lockgate-sink@{socket.gethostname()}")
    sink_session_timeout_ms: int = Field(default=10_000, ge=1000)
    sink_batch_rows: int = Field(default=10_000, ge=1)
    sink_batch_ms: int = Field(default=500, ge=1)
    sink_derive_workers: int = Field(default=1, ge=0)
    # How long the broker may hold the sink's fetch to fill it (lockgate.kernel.fetch_batching):
    # fewer requests on the broker the processor shares cores with; 0 answers on the first record.
    sink_fetch_wait_ms: int = Field(default=DEFAULT_RECORDING_FETCH_WAIT_MS, ge=0, le=1000)
    stall_after_s: float = Field(default=30.0, gt=0)
    sink_http_host: str = "127.0.0.1"
    api_port: int = Field(default=8740, ge=0, le=65535)  # the local stack's, when no sink_http_port
    sink_http_port: int = Field(default_factory=lambda validated: validated.get("api_port", 8740), ge=0, le=65535)
    retention_days: int | None = Field(default=None, ge=1)
    home: Path | None = None

    @property
    def state_dir(self) -> Path:
        return self.home if self.home is not None else default_home()

    @property
    def dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{(self.state_dir / 'clickhouse').resolve()}"

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def audit_topic(self) -> str:
        return self.topics.audit

    @property
    def checkpoints_topic(self) -> str:
        return self.topics.checkpoints

    @property
    def deadletter_topic(self) -> str:
        return self.topics.deadletter


class SinkMetrics:
    """The sink's Prometheus metrics, in their own registry (served at /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.batch_rows = Histogram(
            "lockgate_sink_batch_rows", "Rows per ClickHouse insert", ["table"],
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10_000, 50_000),
            registry=self.registry,
        )
        self.insert_seconds = Histogram(
            "lockgate_sink_insert_seconds", "Seconds per ClickHouse insert", ["table"],
            registry=self.registry,
        )
        self.rows = Counter("lockgate_sink_rows", "Rows inserted", ["table"],
                            registry=self.registry)
        self.dead_letters = Counter("lockgate_sink_dead_letters", "Poison records dead-lettered",
                                    ["topic"], registry=self.registry)
        self.insert_failures = Counter("lockgate_sink_insert_failures", "Failed inserts",
                                       registry=self.registry)
        self.lag = Gauge("lockgate_sink_lag", "End offset minus the group's committed offset",
                         ["topic", "partition"], registry=self.registry)
        self.consumer_restarts = Counter(
            "lockgate_sink_consumer_restarts", "Consumers closed and re-created (fatal error or stall)",
            ["reason"], registry=self.registry)
        self.last_consumed = Gauge("lockgate_sink_last_consumed_timestamp_seconds",
                                   "Unix time of the last record read (0: none yet)", registry=self.registry)
        self.seconds_since_progress = Gauge(
            "lockgate_sink_seconds_since_progress",
            "Longest time a partition with lag has gone without a commit", registry=self.registry)
        self.stalled = Gauge("lockgate_sink_stalled",
                             "1 while a partition has lag and no commit for the stall window "
                             "(up but not consuming)", registry=self.registry)

    def watch(self, health: ConsumerHealth) -> None:
        """Gauges read from ``health`` at each scrape."""
        self.seconds_since_progress.set_function(health.seconds_since_progress)
        self.stalled.set_function(lambda: 1.0 if health.state() == "stalled" else 0.0)

    def on_lag(self, reading: LagReading) -> None:
        for (topic, partition), lag in reading.lag.items():
            self.lag.labels(topic, str(partition)).set(lag)

    def on_batch(self, table: str, rows: int, seconds: float) -> None:
        self.batch_rows.labels(table).observe(rows)
        self.insert_seconds.labels(table).observe(seconds)
        self.rows.labels(table).inc(rows)


class SinkService:
    """Consume → decode → batch → insert → commit. ``run()`` blocks until ``stop()``."""

    def __init__(
        self,
        settings: SinkSettings,
        *,
        client: ClickHouse | None = None,
        metrics: SinkMetrics | None = None,
        serve_http: bool = True,
    ) -> None:
        self.settings = settings
        self.client = client or connect(settings.dsn, settings.clickhouse_database)
        self.metrics = metrics or SinkMetrics()
        self._stop = threading.Event()
        self._serve_http = serve_http
        self.api: ApiServer | None = None
        self.inbox: ReviewInbox | None = None
        routes: dict[str, RecordKind] = {settings.audit_topic: "audit",
                                         settings.checkpoints_topic: "checkpoint"}
        self._expected = {settings.audit_topic: "AuditEvent",
                          settings.checkpoints_topic: "Checkpoint"}
        self.writer = BatchWriter(
            self.client, routes,
            WriterConfig(settings.sink_batch_rows, settings.sink_batch_ms / 1000,
                         derive_workers=settings.sink_derive_workers),
            on_batch=self.metrics.on_batch,
        )
        self._codec = get_codec()
        self._consumer: Any = None
        self._producer: Any = None
        self._pending_commit: dict[tuple[str, int], int] = {}
        self._paused_until = 0.0
        self.health = ConsumerHealth(settings.stall_after_s)
        self.metrics.watch(self.health)
        self._probe: LagProbe | None = None
        self._assigned: set[Partition] = set()
        self._blocked_by: str | None = None
        self._consumer_error: str | None = None
        self._restarts = 0
        self._last_consumed = 0.0
        self.metrics.last_consumed.set_function(lambda: self._last_consumed)
        self._replacing = False
        self._backoff_s = _MIN_BACKOFF_S
        self._last_replaced = 0.0
        self._last_read = 0.0
        self._last_stall_check = 0.0
        self.ready = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------

    def stop(self, *_: Any) -> None:
        """Ask the loop to finish: final flush + commit, then close. Safe from a signal."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT → :meth:`stop` (call from the main thread)."""
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def prepare(self) -> None:
        """Migrate, apply retention, start the HTTP server (idempotent steps)."""
        migrate(self.client)
        apply_retention(self.client, self.settings.retention_days)
        if self._serve_http and self.api is None:
            self.inbox = ReviewInbox(self.settings.bootstrap_servers, self.settings.topics.reviews,
                                     self.settings.state_dir)  # follows from the first inbox request
            self.api = ApiServer(
                AuditQueries(self.client), TokenStore(self.settings.state_dir),
                self.settings.sink_http_host, self.settings.sink_http_port,
                registry=self.metrics.registry, health=self._health, ping=self._ping,
                keyring=keyring_from_file(Home(self.settings.state_dir).processor_public_key),
                inbox=self.inbox,
            )
            self.api.start()

    def _ping(self) -> bool:
        try:
            self.client.command("SELECT 1")
        except SinkError:
            return False
        return True

    def _health(self) -> dict[str, Any]:
        snap = self.health.snapshot()
        snap["reason"] = None if snap["state"] != "stalled" else (
            self._blocked_by or (f"Kafka unreachable: {snap['lag_error']}" if snap["lag_error"] else None))
        return {"consuming": self.ready.is_set() and not self._stop.is_set(),
                "pending_rows": self.writer.pending_rows, **snap,
                "assigned_partitions": len(self._assigned), "consumer_restarts": self._restarts,
                "last_consumer_error": self._consumer_error, "last_consumed_unix": self._last_consumed or None}

    def run(self) -> None:
        """Run until :meth:`stop`; raises :class:`SinkError` if Kafka cannot be configured."""
        self.prepare()
        s = self.settings
        try:
            self._consumer = self._new_consumer()
            self._producer = self._new_producer()
            self._probe = LagProbe(s.bootstrap_servers, s.sink_group_id,
                                   [s.audit_topic, s.checkpoints_topic], self.health, self.metrics.on_lag,
                                   interval_s=_LAG_INTERVAL_S)
        except KafkaException as exc:
            raise SinkError(f"cannot configure Kafka client for {s.bootstrap_servers}: {exc}") \
                from exc
        self._probe.start()
        self.ready.set()
        try:
            while not self._stop.is_set():
                try:
                    msg = self._consumer.poll(0.05)
                    if msg is not None:
                        self._handle(msg)
                    self._maybe_flush()
                    self._check_stall()
                except _ConsumerBroken as exc:
                    self._replace_consumer(exc)
                except KafkaException as exc:
                    err = exc.args[0] if exc.args else None
                    if not (isinstance(err, KafkaError) and consumer_is_broken(err)):
                        raise
                    self._replace_consumer(_ConsumerBroken(f"fatal Kafka client error: {err.str()}"))
            self._flush_and_commit(final=True)
        finally:
            self._probe.stop()
            self.writer.close()
            self._close_consumer()
            self._producer.flush(5)
            if self.api is not None:
                self.api.stop()
                self.api = None
            if self.inbox is not None:
                self.inbox.stop()
                self.inbox = None

    # -- the consumer, and replacing it ----------------------------------------------------

    def _new_consumer(self) -> Any:
        s = self.settings
        consumer = Consumer({
            "bootstrap.servers": s.bootstrap_servers,
            "group.id": s.sink_group_id,
            # Static membership: a restarted sink (same instance id) takes its partitions
            # back at once instead of waiting out the dead member's session.
            "group.instance.id": s.sink_instance_id,
            "session.timeout.ms": s.sink_session_timeout_ms,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": False,
            **batched_fetch(s.sink_fetch_wait_ms),
        })
        consumer.subscribe([s.audit_topic, s.checkpoints_topic],
                           on_assign=self._on_assign, on_revoke=self._on_revoke)
        self.health.consumer_started()
        return consumer

    def _new_producer(self) -> Any:
        return Producer({"bootstrap.servers": self.settings.bootstrap_servers,
                         "enable.idempotence": True, "acks": "all",
                         "message.max.bytes": TOPIC_MAX_MESSAGE_BYTES})

    def _close_consumer(self) -> None:
        """Close the consumer; a consumer that failed fatally may refuse, which changes nothing."""
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.info("closing the old consumer: %s", exc)

    def _replace_consumer(self, exc: Exception) -> None:
        """Close a consumer that cannot consume any more and re-join with a new one.

        Nothing is lost or duplicated: rows not yet committed are dropped from the writer and
        re-read from the committed offsets; those that had landed already are recognised by
        their source offsets and skipped (``BatchWriter`` re-checks a partition it sees anew).
        The dead-letter producer is renewed too (a fatal error may have been its own); a dead
        letter it could not deliver is produced again when its record is re-read.
        """
        reason = "stalled" if isinstance(exc, _ConsumerStalled) else "fatal"
        self.metrics.consumer_restarts.labels(reason).inc()
        self._restarts += 1
        self._consumer_error = str(exc)
        dropped = self.writer.pending_rows
        log.warning("consumer cannot consume (%s: %s); closing it, dropping %d uncommitted rows and "
                    "re-joining group %s as %s from the committed offsets in %.1fs (restart %d)",
                    reason, exc, dropped, self.settings.sink_group_id, self.settings.sink_instance_id,
                    self._backoff_s, self._restarts)
        self._replacing = True
        try:
            self._close_consumer()
        finally:
            self._replacing = False
        self.writer.forget_all()
        self._pending_commit.clear()
        self._assigned.clear()
        if self._producer.flush(5) > 0:
            log.warning("dead letters not delivered before the restart; they follow when their records are re-read")
        self._producer = self._new_producer()
        self._paused_until = 0.0
        self._blocked_by = None
        self._stop.wait(self._backoff_s)
        self._backoff_s = min(_MAX_BACKOFF_S, self._backoff_s * 2)
        self._consumer = self._new_consumer()
        self._last_replaced = time.monotonic()
        log.info("new consumer subscribed; waiting for partitions")

    def _check_stall(self) -> None:
        """Replace a consumer that reads nothing while its partitions have lag and see no commit.

        Both for the stall window: a consumer that still reads is working through its
        batches (replacing it would throw that work away). A consumer without partitions
        answers for every stalled partition of the group (it may have lost its assignment).
        Not while inserts fail (the loop pauses on purpose then), and only on a fresh lag
        reading: with Kafka unreachable a new consumer would fare no better.
        """
        now = time.monotonic()
        if self._paused_until or now - self._last_stall_check < 1.0:
            return
        self._last_stall_check = now
        h = self.health
        if not h.lag_is_fresh(3 * _LAG_INTERVAL_S) or now - max(self._last_read, self._last_replaced) < h.stall_after_s:
            return
        stalled = h.stalled(self._assigned or None)
        if stalled:
            names = ", ".join(f"{t}[{p}]" for t, p in stalled)
            raise _ConsumerStalled(f"nothing read and no commit for {h.stall_after_s:.0f}s on {names} although "
                                   "records wait there")

    # -- per record ---------------------------------------------------------------------

    def _handle(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if consumer_is_broken(err):
                raise _ConsumerBroken(f"fatal consumer error: {err.str()}")
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
            return
        self._backoff_s = _MIN_BACKOFF_S
        self._last_consumed = time.time()
        self._last_read = time.monotonic()
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        value = msg.value() or b""
        try:
            record = self._codec.decode_as(self._expected.get(topic, "AuditEvent"), value)
            self.writer.add(topic, partition, offset, record)
        except (CodecError, RowError) as exc:
            self._dead_letter(msg, exc)
            self.writer.skip(topic, partition, offset)

    def _dead_letter(self, msg: Message, exc: Exception) -> None:
        dl = dead_letter(msg.value() or b"", exc, topic=msg.topic() or "", partition=msg.partition() or 0,
                         offset=msg.offset() or 0, stage="sink", key=msg.key())
        self._producer.produce(self.settings.deadletter_topic,
                               value=self._codec.encode("DeadLetter", dl), key=msg.key())
        self._producer.poll(0)
        self.metrics.dead_letters.labels(msg.topic()).inc()
        log.warning("dead-lettered %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), exc)

    # -- flushing and committing ----------------------------------------------------------

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if now < self._paused_until:
            return
        if self._paused_until:
            self._paused_until = 0.0
            self._consumer.resume(self._consumer.assignment())
        if self.writer.due() or self._pending_commit:
            self._flush_and_commit()

    def _flush_and_commit(self, final: bool = False) -> None:
        """Commit what has landed. The loop's call does not wait for inserts in flight (they
        overlap reading the next records); ``final`` (revoke, stop) waits for all of them."""
        try:
            safe = self.writer.flush(wait=final)
        except InsertFailed as exc:
            self.metrics.insert_failures.inc()
            log.warning("insert failed, retrying in %.1fs: %s", exc.retry_after, exc)
            if final:
                return
            self._consumer.pause(self._consumer.assignment())
            self._paused_until = time.monotonic() + exc.retry_after
            self._blocked_by = f"ClickHouse insert failing: {exc}"
            return
        self._blocked_by = None
        self._pending_commit.update(safe)
        if not self._pending_commit:
            return
        if self._producer.flush(10) > 0:
            log.warning("dead letters not yet delivered; holding the commit")
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._pending_commit.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not final and isinstance(err, KafkaError) and consumer_is_broken(err):
                raise _ConsumerBroken(f"commit refused: {err.str()}") from exc
            log.warning("commit failed (records will be re-read and deduplicated): %s", exc)
            return
        self._pending_commit.clear()

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", [(p.topic, p.partition) for p in partitions])
        self._assigned = {(p.topic, p.partition) for p in partitions}
        self._last_read = time.monotonic()
        self.health.consumer_started()  # (re-)joined: give it a full window before calling it stalled

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._assigned.clear()
        if self._replacing:  # the old consumer is closing: commit nothing through it
            return
        self._flush_and_commit(final=True)
        for p in partitions:
            self.writer.forget(p.topic, p.partition)
            self._pending_commit.pop((p.topic, p.partition), None)


def main() -> int:
    """Entry point for ``lockgate sink``: run until SIGTERM; return an exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = SinkSettings()
    service = SinkService(settings)
    service.install_signal_handlers()
    service.run()
    return 0
