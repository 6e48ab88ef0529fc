"""Idempotent batch writer from Kafka records to ClickHouse tables.

Shaped like quix-streams' sink: :meth:`BatchWriter.add` buffers rows per topic-partition,
:meth:`BatchWriter.flush` inserts them and returns the offsets that are now safe to commit.
The caller commits those offsets only after ``flush`` returned them.

Batches are bounded by size and age (default 10,000 rows or 500 ms): a batch that reaches
``max_rows`` is sealed at once; :meth:`BatchWriter.due` tells the caller when the oldest
open batch is older than ``max_age_s``. A batch is inserted column-oriented, as one Arrow
table: several times cheaper than encoding rows in Python.

**Deriving and inserting overlap reading.** :meth:`BatchWriter.add` only checks and keeps
an AuditEvent's ledger columns (``sinks.rows.ledger_row``); the columns decoded from its
payload are derived a sealed batch at a time (``sinks.rows.derive_extracted``), in
``derive_workers`` worker processes when configured (``sinks.derive_workers``: the decode
holds the GIL, so only another process takes it off the consume loop). A sealed batch is
handed to one background insert thread (the engine works outside the GIL), which waits for
its derived columns and inserts, while the caller goes on reading the next records; at
most ``max_in_flight`` batches are handed over at a time. Inserts run in the
order batches were sealed, and ``flush`` returns an offset only once the insert holding
it *and every earlier batch of its partition* have landed: commit-after-insert holds
exactly as with a synchronous insert. ``flush(wait=False)`` (the consume loop's call)
collects what has landed without blocking; ``flush()`` waits for everything buffered.

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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from sinks.clickhouse import ClickHouse, validate_identifier
from sinks.derive_workers import DeriveWorkers
from sinks.errors import InsertFailed, SinkError
from sinks.rows import (
    AUDIT_ARROW_SCHEMA,
    AUDIT_COLUMNS,
    CHECKPOINT_ARROW_SCHEMA,
    CHECKPOINT_COLUMNS,
    audit_table,
    checkpoint_row,
    derive_extracted,
    ledger_row,
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
_KIND_COL, _PAYLOAD_COL = AUDIT_COLUMNS.index("kind"), AUDIT_COLUMNS.index("payload")


def _failed(future: Future[Any]) -> bool:
    return future.cancelled() or (future.done() and future.exception() is not None)


@dataclass(frozen=True)
class WriterConfig:
    """Batch bounds. ``max_rows`` seals a batch; ``max_age_s`` makes it due for flushing;
    ``max_in_flight`` bounds the sealed batches the insert thread holds;
    ``derive_workers`` processes derive the payload columns (0: the insert thread does)."""

    max_rows: int = 10_000
    max_age_s: float = 0.5
    max_in_flight: int = 2  # sealed batches handed to the insert thread at a time
    derive_workers: int = 0

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.max_age_s <= 0 or self.max_in_flight < 1 or self.derive_workers < 0:
            raise SinkError(
                f"writer bounds must be positive, got max_rows={self.max_rows}, "
                f"max_age_s={self.max_age_s}, max_in_flight={self.max_in_flight}, "
                f"derive_workers={self.derive_workers} (0 or more)"
            )


@dataclass
class _Batch:
    kind: str
    first: int
    last: int
    started: float
    rows: list[Sequence[Any]] = field(default_factory=list)  # audit: ledger rows only
    checked: bool = False
    commit_upto: int = -1
    table: Any = None  # the Arrow table, built once (a retry inserts the very same rows)
    derived: Future[Any] | None = None  # audit: the extracted columns being derived


@dataclass
class _InFlight:
    tp: TopicPartition
    batch: _Batch
    future: Future[None]


class BatchWriter:
    """Buffers rows per topic-partition and inserts them idempotently.

    ``routes`` maps each topic to what its records are (``"audit"`` → ``audit_events``,
    ``"checkpoint"`` → ``checkpoints``). Not thread-safe: one consume loop owns it (the
    insert thread it starts only runs inserts of batches handed to it).
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
        self._in_flight: deque[_InFlight] = deque()
        self._inserter: ThreadPoolExecutor | None = None
        self._verify: set[TopicPartition] = set()
        self._known: set[TopicPartition] = set()
        self._committable: dict[TopicPartition, int] = {}
        self._oldest_open = float("inf")  # started time of the oldest open batch
        self._derive = DeriveWorkers(self.config.derive_workers) if self.config.derive_workers else None

    # -- buffering -------------------------------------------------------------------

    def add(self, topic: str, partition: int, offset: int, record: Mapping[str, Any]) -> None:
        """Buffer one decoded record. Raises :class:`~sinks.rows.RowError` for a record that
        is not a valid AuditEvent/Checkpoint (the caller dead-letters it and may still commit
        past it via :meth:`skip`)."""
        kind = self._routes.get(topic)
        if kind is None:
            raise SinkError(f"no route for topic {topic!r}; known: {sorted(self._routes)}")
        source = (topic, partition, offset)
        row = ledger_row(record, source) if kind == "audit" else checkpoint_row(record, source)
        tp = (topic, partition)
        if tp not in self._known:
            self._see(tp)
        batch = self._open.get(tp)
        if batch is None:
            batch = self._open[tp] = _Batch(kind, offset, offset, self._clock())
            self._oldest_open = min(self._oldest_open, batch.started)
        batch.rows.append(row)
        batch.last = batch.commit_upto = offset
        if len(batch.rows) >= self.config.max_rows:
            self._seal(tp)
            self._submit_sealed()

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
        elif any(f.tp == tp for f in self._in_flight):
            last = next(f for f in reversed(self._in_flight) if f.tp == tp)
            last.batch.commit_upto = offset
        else:
            self._committable[tp] = offset + 1

    def forget(self, topic: str, partition: int) -> None:
        """Drop buffered rows of a revoked partition; its next owner re-reads them.

        Waits for inserts in flight first: one landing after the partition's next check
        of stored offsets would be inserted twice.
        """
        self._settle()
        self._forget(topic, partition)

    def _forget(self, topic: str, partition: int) -> None:
        tp = (topic, partition)
        self._open.pop(tp, None)
        self._sealed.pop(tp, None)
        self._committable.pop(tp, None)
        self._verify.discard(tp)
        self._known.discard(tp)
        self._oldest_open = min((b.started for b in self._open.values()), default=float("inf"))

    def forget_all(self) -> None:
        """Drop everything buffered (the consumer is being replaced; it re-reads from the commit)."""
        self._settle()
        for tp in {*self._open, *self._sealed, *self._committable, *self._known}:
            self._forget(*tp)

    def close(self) -> None:
        """Wait for inserts in flight, stop the insert thread and the derive workers (buffered
        rows stay buffered)."""
        self._settle()
        if self._inserter is not None:
            self._inserter.shutdown(wait=True)
            self._inserter = None
        if self._derive is not None:
            self._derive.close()
            self._derive = None

    def _see(self, tp: TopicPartition) -> None:
        if tp not in self._known:
            self._known.add(tp)
            self._verify.add(tp)

    def _seal(self, tp: TopicPartition) -> None:
        batch = self._open.pop(tp, None)
        if batch is not None:
            self._sealed.setdefault(tp, deque()).append(batch)
            if batch.started <= self._oldest_open:
                self._oldest_open = min((b.started for b in self._open.values()), default=float("inf"))

    @property
    def pending_rows(self) -> int:
        """Rows buffered and not yet known to be inserted (in flight included)."""
        return (sum(len(b.rows) for b in self._open.values())
                + sum(len(b.rows) for q in self._sealed.values() for b in q)
                + sum(len(f.batch.rows) for f in self._in_flight))

    def due(self) -> bool:
        """True when :meth:`flush` has work it can do now: an insert has finished (its offsets
        can be collected), a batch is sealed (full or failed) and the insert thread has room
        for it, or the oldest open batch is too old while there is room."""
        if self._in_flight:
            if self._in_flight[0].future.done():
                return True
            if len(self._in_flight) >= self.config.max_in_flight:
                return False  # nothing can start before the oldest insert lands
        if self._sealed:
            return True
        return self._clock() - self._oldest_open >= self.config.max_age_s

    # -- flushing --------------------------------------------------------------------

    def flush(self, wait: bool = True) -> dict[TopicPartition, int]:
        """Insert buffered batches; return ``{(topic, partition): next offset to commit}``.

        ``wait=True`` seals every open batch and returns once every buffered row has been
        inserted. ``wait=False`` seals only batches older than ``max_age_s``, starts their
        inserts and returns the offsets of inserts that have already landed, without
        blocking. Either way an offset is returned only after the insert of its batch and of
        every earlier batch of its partition landed.

        On an insert failure the failed batch and later ones of that partition stay buffered
        (sealed, same token on retry), other partitions still flush, and
        :class:`InsertFailed` is raised after all partitions were tried; offsets already
        safe are returned by the next successful call.
        """
        now = self._clock()
        for tp in [tp for tp, b in self._open.items() if wait or now - b.started >= self.config.max_age_s]:
            self._seal(tp)
        failure: InsertFailed | None = None
        failed: set[TopicPartition] = set()
        while True:
            failure = self._submit_sealed(failed) or failure
            failure = self._reap(wait, failed) or failure
            if not wait or not any(tp not in failed for tp in self._sealed):
                break
        if failure is not None:
            raise failure
        out, self._committable = self._committable, {}
        return out

    def _submit_sealed(self, failed: set[TopicPartition] | None = None) -> InsertFailed | None:
        """Hand sealed batches to the insert thread in order, at most ``max_in_flight`` waiting;
        partitions in ``failed`` (a failure in this flush) wait for the next flush."""
        failure: InsertFailed | None = None
        for tp in list(self._sealed):
            queue = self._sealed[tp]
            while queue and len(self._in_flight) < self.config.max_in_flight and not (failed and tp in failed):
                batch = queue[0]
                try:
                    self._prepare(tp, batch)
                except InsertFailed as exc:
                    failure = failure or exc
                    if failed is not None:
                        failed.add(tp)
                    break
                queue.popleft()
                if not batch.rows:
                    self._committable[tp] = max(batch.last, batch.commit_upto) + 1
                    continue
                if self._inserter is None:
                    self._inserter = ThreadPoolExecutor(1, thread_name_prefix="lockgate-sink-insert")
                self._in_flight.append(_InFlight(tp, batch, self._inserter.submit(self._insert, tp, batch)))
            if not queue:
                del self._sealed[tp]
        return failure

    def _reap(self, block: bool, failed: set[TopicPartition] | None = None) -> InsertFailed | None:
        """Collect finished inserts in order (all of them when ``block``). A failed one and
        the later batches of its partition go back to the front of that partition's sealed
        queue, to be retried unchanged (same rows, same token: what landed is dropped)."""
        failure: InsertFailed | None = None
        back: dict[TopicPartition, list[_Batch]] = {}
        while self._in_flight and (block or self._in_flight[0].future.done()):
            item = self._in_flight.popleft()
            try:
                item.future.result()
            except InsertFailed as exc:
                failure = failure or exc
                back.setdefault(item.tp, [])
            if item.tp in back:
                back[item.tp].append(item.batch)
            else:
                self._committable[item.tp] = max(item.batch.last, item.batch.commit_upto) + 1
        for tp, batches in back.items():
            self._sealed[tp] = deque([*batches, *self._sealed.get(tp, ())])
            if failed is not None:
                failed.add(tp)
        return failure

    def _settle(self) -> None:
        """Wait for every insert in flight; failures stay sealed for the next flush."""
        self._reap(block=True)

    def _prepare(self, tp: TopicPartition, batch: _Batch) -> None:
        if not batch.checked:
            if tp in self._verify:
                self._drop_stored(tp, batch)
            batch.checked = True
        if batch.table is not None or not batch.rows:
            return
        if batch.kind != "audit":
            batch.table = rows_to_arrow(batch.rows, _TABLES[batch.kind][2])
        elif self._derive is not None and (batch.derived is None or _failed(batch.derived)):
            batch.derived = self._derive.submit([r[_KIND_COL] for r in batch.rows],
                                                [r[_PAYLOAD_COL] for r in batch.rows])

    def _insert(self, tp: TopicPartition, batch: _Batch) -> None:
        """Runs in the insert thread: touches nothing but its own batch (whose Arrow table it
        builds, once, from the ledger rows and the derived columns)."""
        if batch.table is None:
            extracted = (DeriveWorkers.result(batch.derived) if batch.derived is not None
                         else derive_extracted([r[_KIND_COL] for r in batch.rows],
                                               [r[_PAYLOAD_COL] for r in batch.rows]))
            batch.table = audit_table(batch.rows, extracted)
        table, columns, _ = _TABLES[batch.kind]
        token = f"lockgate:{table}:{tp[0]}:{tp[1]}:{batch.first}-{batch.last}"
        started = time.perf_counter()
        self._client.insert(
            f"{self._db}.{table}",
            batch.table,
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
