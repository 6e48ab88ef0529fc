"""Idempotent batch writer from Kafka records to ClickHouse tables.

Shaped like quix-streams' sink: :meth:`BatchWriter.add` buffers rows per topic-partition,
:meth:`BatchWriter.flush` inserts them and returns the offsets that are now safe to commit.
The caller commits those offsets only after ``flush`` returned them.

Batches are bounded by size and age (default 10,000 rows or 500 ms): a batch that reaches
``max_rows`` is sealed at once; :meth:`BatchWriter.due` tells the caller when the oldest
open batch is older than ``max_age_s``. A batch is inserted column-oriented, as one Arrow
table (``sinks.rows.rows_to_arrow``): several times cheaper than encoding rows in Python.

No loss, no duplicates (proven in ``tests/integration/sinks/test_sink_writer.py``):

1. **Same batch retried** (insert error, timeout, crash after the insert but before the
   commit and the same records re-batched identically): each batch carries an
   ``insert_deduplication_token`` ``lockgate:<table>:<topic>:<partition>:<first>-<last>``.
   ClickHouse (chDB 26.x verified; the tables set ``non_replicated_deduplication_window``)
   drops a block whose token it has already seen. A failed batch is *sealed*: records that
   arrive meanwhile go to a new batch, so the retry carries exactly the same token and rows.
2. **Redelivery cut differently** (after a restart the consumer re-reads from the last
   commit and the time-based cut falls elsewhere, so tokens differ): each row stores its
   source ``(src_topic, src_partition, src_offset)``. The first batches of a topic-partition
   after the writer first sees it are checked against what is already stored (a projection
   ordered by the source triple makes this a point lookup) and stored offsets are dropped.
   Checking stops once nothing at or after the batch's first offset is stored. The check
   is by *set*, not max, so a partly landed multi-part insert is completed, not skipped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sinks.clickhouse import ClickHouse, validate_identifier
from sinks.errors import InsertFailed, SinkError
from sinks.rows import (
    AUDIT_ARROW_SCHEMA,
    AUDIT_COLUMNS,
    CHECKPOINT_ARROW_SCHEMA,
    CHECKPOINT_COLUMNS,
    audit_event_row,
    checkpoint_row,
    rows_to_arrow,
)

__all__ = ["BatchWriter", "RecordKind", "WriterConfig"]

RecordKind = Literal["audit", "checkpoint"]
TopicPartition = tuple[str, int]

_TABLES: dict[str, tuple[str, tuple[str, ...], Any]] = {
    "audit": ("audit_events", AUDIT_COLUMNS, AUDIT_ARROW_SCHEMA),
    "checkpoint": ("checkpoints", CHECKPOINT_COLUMNS, CHECKPOINT_ARROW_SCHEMA),
}
_OFFSET_COL = {"audit": AUDIT_COLUMNS.index("src_offset"),
               "checkpoint": CHECKPOINT_COLUMNS.index("src_offset")}


@dataclass(frozen=True)
class WriterConfig:
    """Batch bounds. ``max_rows`` seals a batch; ``max_age_s`` makes it due for flushing."""

    max_rows: int = 10_000
    max_age_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.max_age_s <= 0:
            raise SinkError(
                f"writer bounds must be positive, got max_rows={self.max_rows}, "
                f"max_age_s={self.max_age_s}"
            )


@dataclass
class _Batch:
    kind: str
    first: int
    last: int
    started: float
    rows: list[list[Any]] = field(default_factory=list)
    checked: bool = False
    commit_upto: int = -1


class BatchWriter:
    """Buffers rows per topic-partition and inserts them idempotently.

    ``routes`` maps each topic to what its records are (``"audit"`` → ``audit_events``,
    ``"checkpoint"`` → ``checkpoints``). Not thread-safe: one consume loop owns it.
    ``on_batch(table, rows, seconds)`` is called after each successful insert (metrics).
    """

    def __init__(
        self,
        client: ClickHouse,
        routes: Mapping[str, RecordKind],
        config: WriterConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_batch: Callable[[str, int, float], None] | None = None,
    ) -> None:
        self._client = client
        self._db = validate_identifier(client.database)
        self._routes = dict(routes)
        for topic, kind in self._routes.items():
            if kind not in _TABLES:
                raise SinkError(f"topic {topic!r} routed to unknown kind {kind!r}")
        self.config = config or WriterConfig()
        self._clock = clock
        self._on_batch = on_batch
        self._open: dict[TopicPartition, _Batch] = {}
        self._sealed: dict[TopicPartition, deque[_Batch]] = {}
        self._verify: set[TopicPartition] = set()
        self._known: set[TopicPartition] = set()
        self._committable: dict[TopicPartition, int] = {}

    # -- buffering -------------------------------------------------------------------

    def add(self, topic: str, partition: int, offset: int, record: Mapping[str, Any]) -> None:
        """Buffer one decoded record. Raises :class:`~sinks.rows.RowError` for a record that
        is not a valid AuditEvent/Checkpoint (the caller dead-letters it and may still commit
        past it via :meth:`skip`)."""
        kind = self._routes.get(topic)
        if kind is None:
            raise SinkError(f"no route for topic {topic!r}; known: {sorted(self._routes)}")
        source = (topic, partition, offset)
        row = audit_event_row(record, source) if kind == "audit" else checkpoint_row(record, source)
        tp = (topic, partition)
        self._see(tp)
        batch = self._open.get(tp)
        if batch is None:
            batch = self._open[tp] = _Batch(kind, offset, offset, self._clock())
        batch.rows.append(row)
        batch.last = batch.commit_upto = offset
        if len(batch.rows) >= self.config.max_rows:
            self._seal(tp)

    def skip(self, topic: str, partition: int, offset: int) -> None:
        """Mark a record handled without a row (dead-lettered) so its offset can be committed.

        The skip is ordered after everything buffered before it: its offset becomes
        committable once those rows are inserted.
        """
        tp = (topic, partition)
        self._see(tp)
        if tp in self._open:
            self._open[tp].commit_upto = offset
        elif self._sealed.get(tp):
            self._sealed[tp][-1].commit_upto = offset
        else:
            self._committable[tp] = offset + 1

    def forget(self, topic: str, partition: int) -> None:
        """Drop buffered rows of a revoked partition; its next owner re-reads them."""
        tp = (topic, partition)
        self._open.pop(tp, None)
        self._sealed.pop(tp, None)
        self._committable.pop(tp, None)
        self._verify.discard(tp)
        self._known.discard(tp)

    def forget_all(self) -> None:
        """Drop everything buffered (the consumer is being replaced; it re-reads from the commit)."""
        for tp in {*self._open, *self._sealed, *self._committable, *self._known}:
            self.forget(*tp)

    def _see(self, tp: TopicPartition) -> None:
        if tp not in self._known:
            self._known.add(tp)
            self._verify.add(tp)

    def _seal(self, tp: TopicPartition) -> None:
        batch = self._open.pop(tp, None)
        if batch is not None:
            self._sealed.setdefault(tp, deque()).append(batch)

    @property
    def pending_rows(self) -> int:
        """Rows buffered and not yet inserted."""
        return sum(len(b.rows) for b in self._open.values()) + sum(
            len(b.rows) for q in self._sealed.values() for b in q
        )

    def due(self) -> bool:
        """True when a batch is sealed (full or failed) or the oldest open batch is too old."""
        if any(self._sealed.values()):
            return True
        now = self._clock()
        return any(now - b.started >= self.config.max_age_s for b in self._open.values())

    # -- flushing --------------------------------------------------------------------

    def flush(self) -> dict[TopicPartition, int]:
        """Insert every buffered batch; return ``{(topic, partition): next offset to commit}``.

        On an insert failure the failed batch and later ones of that partition stay buffered
        (sealed, same token on retry), other partitions still flush, and
        :class:`InsertFailed` is raised after all partitions were tried; offsets already
        safe are returned by the next successful call.
        """
        for tp in list(self._open):
            self._seal(tp)
        failure: InsertFailed | None = None
        for tp, queue in self._sealed.items():
            while queue:
                batch = queue[0]
                try:
                    self._insert(tp, batch)
                except InsertFailed as exc:
                    failure = failure or exc
                    break
                queue.popleft()
                self._committable[tp] = max(batch.last, batch.commit_upto) + 1
        self._sealed = {tp: q for tp, q in self._sealed.items() if q}
        if failure is not None:
            raise failure
        out, self._committable = self._committable, {}
        return out

    def _insert(self, tp: TopicPartition, batch: _Batch) -> None:
        table, columns, schema = _TABLES[batch.kind]
        if not batch.checked:
            if tp in self._verify:
                self._drop_stored(tp, batch)
            batch.checked = True
        if not batch.rows:
            return
        token = f"lockgate:{table}:{tp[0]}:{tp[1]}:{batch.first}-{batch.last}"
        started = time.perf_counter()
        self._client.insert(
            f"{self._db}.{table}",
            rows_to_arrow(batch.rows, schema),
            column_names=columns,
            settings={
                "insert_deduplicate": 1,
                "insert_deduplication_token": token,
                "deduplicate_blocks_in_dependent_materialized_views": 1,
                # Leave folding rows of one action in action_summary to merges and readers
                # (they GROUP BY anyway): pre-aggregating every block costs ~15% of an insert.
                "optimize_on_insert": 0,
            },
        )
        if self._on_batch is not None:
            self._on_batch(table, len(batch.rows), time.perf_counter() - started)

    def _drop_stored(self, tp: TopicPartition, batch: _Batch) -> None:
        table = _TABLES[batch.kind][0]
        try:
            _, rows = self._client.query(
                f"SELECT src_offset FROM {self._db}.{table} "
                "WHERE src_topic = {t:String} AND src_partition = {p:Int32} "
                "AND src_offset >= {lo:Int64}",
                {"t": tp[0], "p": tp[1], "lo": batch.first},
            )
        except SinkError as exc:
            raise InsertFailed(
                f"could not check stored offsets of {tp[0]}[{tp[1]}] before inserting: {exc}"
            ) from exc
        stored = {int(r[0]) for r in rows}
        if not stored:
            self._verify.discard(tp)
            return
        col = _OFFSET_COL[batch.kind]
        batch.rows = [r for r in batch.rows if r[col] not in stored]
