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
* SIGTERM/SIGINT: stop polling, final flush + commit, close.
* The same process serves the API/dashboard/``/metrics`` (the embedded engine allows one
  owning process per data directory, so the API must live where the writer lives).

Settings (env, read once at start into :class:`SinkSettings`):

=============================  ==================================  ===========================
env                            meaning                             default
=============================  ==================================  ===========================
LOCKGATE_TOPIC_PREFIX          topic name prefix                   ``lockgate.``
LOCKGATE_BOOTSTRAP_SERVERS     Kafka bootstrap servers             ``127.0.0.1:9092``
LOCKGATE_CLICKHOUSE_DSN        ``chdb:///dir`` or ``http(s)://…``  ``chdb://$HOME/clickhouse``
LOCKGATE_CLICKHOUSE_DATABASE   database name                       ``lockgate``
LOCKGATE_SINK_GROUP_ID         consumer group                      ``lockgate-sink``
LOCKGATE_SINK_BATCH_ROWS       rows per batch                      10000
LOCKGATE_SINK_BATCH_MS         max batch age (ms)                  500
LOCKGATE_SINK_HTTP_HOST/PORT   API + metrics listen address        ``127.0.0.1:8740``
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

from lockgate.kernel.home import Home, default_home
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
from sinks.tokens import TokenStore
from sinks.writer import BatchWriter, RecordKind, WriterConfig

__all__ = ["SinkMetrics", "SinkService", "SinkSettings", "main"]

log = logging.getLogger("lockgate.sink")


class SinkSettings(BaseSettings):
    """Everything the sink process needs, read once from the environment (``LOCKGATE_*``)."""

    model_config = SettingsConfigDict(env_prefix="LOCKGATE_", frozen=True, extra="ignore")

    topic_prefix: str = DEFAULT_PREFIX
    bootstrap_servers: str = "127.0.0.1:9092"
    clickhouse_dsn: str = ""
    clickhouse_database: str = "lockgate"
    sink_group_id: str = "lockgate-sink"
    sink_instance_id: str = Field(default_factory=lambda: f"lockgate-sink@{socket.gethostname()}")
    sink_session_timeout_ms: int = Field(default=10_000, ge=1000)
    sink_batch_rows: int = Field(default=10_000, ge=1)
    sink_batch_ms: int = Field(default=500, ge=1)
    sink_http_host: str = "127.0.0.1"
    sink_http_port: int = Field(default=8740, ge=0, le=65535)
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
        self.lag = Gauge("lockgate_sink_lag", "High watermark minus committed position",
                         ["topic", "partition"], registry=self.registry)

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
        routes: dict[str, RecordKind] = {settings.audit_topic: "audit",
                                         settings.checkpoints_topic: "checkpoint"}
        self._expected = {settings.audit_topic: "AuditEvent",
                          settings.checkpoints_topic: "Checkpoint"}
        self.writer = BatchWriter(
            self.client, routes,
            WriterConfig(settings.sink_batch_rows, settings.sink_batch_ms / 1000),
            on_batch=self.metrics.on_batch,
        )
        self._codec = get_codec()
        self._consumer: Any = None
        self._producer: Any = None
        self._pending_commit: dict[tuple[str, int], int] = {}
        self._paused_until = 0.0
        self._last_lag = 0.0
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
            self.api = ApiServer(
                AuditQueries(self.client), TokenStore(self.settings.state_dir),
                self.settings.sink_http_host, self.settings.sink_http_port,
                registry=self.metrics.registry, health=self._health, ping=self._ping,
                keyring=keyring_from_file(Home(self.settings.state_dir).processor_public_key),
            )
            self.api.start()

    def _ping(self) -> bool:
        try:
            self.client.command("SELECT 1")
        except SinkError:
            return False
        return True

    def _health(self) -> dict[str, Any]:
        return {"consuming": self.ready.is_set() and not self._stop.is_set(),
                "pending_rows": self.writer.pending_rows}

    def run(self) -> None:
        """Run until :meth:`stop`; raises :class:`SinkError` if Kafka cannot be configured."""
        self.prepare()
        s = self.settings
        try:
            self._consumer = Consumer({
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
            })
            self._producer = Producer({"bootstrap.servers": s.bootstrap_servers,
                                       "enable.idempotence": True, "acks": "all",
                                       "message.max.bytes": TOPIC_MAX_MESSAGE_BYTES})
        except KafkaException as exc:
            raise SinkError(f"cannot configure Kafka client for {s.bootstrap_servers}: {exc}") \
                from exc
        self._consumer.subscribe([s.audit_topic, s.checkpoints_topic],
                                 on_assign=self._on_assign, on_revoke=self._on_revoke)
        self.ready.set()
        try:
            while not self._stop.is_set():
                msg = self._consumer.poll(0.05)
                if msg is not None:
                    self._handle(msg)
                self._maybe_flush()
                self._maybe_lag()
            self._flush_and_commit(final=True)
        finally:
            self._consumer.close()
            self._producer.flush(5)
            if self.api is not None:
                self.api.stop()
                self.api = None

    # -- per record ---------------------------------------------------------------------

    def _handle(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
            return
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
        try:
            safe = self.writer.flush()
        except InsertFailed as exc:
            self.metrics.insert_failures.inc()
            log.warning("insert failed, retrying in %.1fs: %s", exc.retry_after, exc)
            if final:
                return
            self._consumer.pause(self._consumer.assignment())
            self._paused_until = time.monotonic() + exc.retry_after
            return
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
            log.warning("commit failed (records will be re-read and deduplicated): %s", exc)
            return
        self._pending_commit.clear()

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", [(p.topic, p.partition) for p in partitions])

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._flush_and_commit(final=True)
        for p in partitions:
            self.writer.forget(p.topic, p.partition)
            self._pending_commit.pop((p.topic, p.partition), None)

    def _maybe_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < 5:
            return
        self._last_lag = now
        try:
            assigned = self._consumer.assignment()
            for tp in self._consumer.position(assigned):
                _, high = self._consumer.get_watermark_offsets(tp, timeout=1, cached=False)
                pos = tp.offset if tp.offset >= 0 else high
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - pos))
        except KafkaException as exc:
            log.debug("lag probe failed: %s", exc)


def main() -> int:
    """Entry point for ``lockgate sink``: run until SIGTERM; return an exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = SinkSettings()
    service = SinkService(settings)
    service.install_signal_handlers()
    service.run()
    return 0
