"""Idempotent batch writer from Kafka records to ClickHouse tables.

Shaped like quix-streams' sink: :meth:`BatchWriter.add` buffers rows,
:meth:`BatchWriter.flush` inserts them and returns the offsets that are now safe to commit.
The caller commits those offsets only after ``flush`` returned them.

**One batch per table, not per partition.** Rows are batched per *table* (``audit_events``,
``checkpoints``) across all the topic-partitions routed to it: every insert pays the
engine a fixed cost (a part, its projections, the ``action_summary`` view, later merges),
so a batch per partition cost the live sink ~10 small inserts a second with ``audit`` at
four partitions (issue 13; 4.8 ms of CPU per guarded action, half of it gone at 2,000 ms
batches). A batch keeps, per partition, the range of offsets it holds, and is bounded by
size and age (default 10,000 rows or 500 ms, whichever partition's rows are oldest): a
batch that reaches ``max_rows`` is sealed at once; :meth:`BatchWriter.due` tells the caller
when the open batch is older than ``max_age_s``. A batch is inserted column-oriented, as
one Arrow table: several times cheaper than encoding rows in Python.

**Deriving and inserting overlap reading.** :meth:`BatchWriter.add` only checks and keeps
an AuditEvent's ledger columns (``sinks.rows.ledger_row``); the columns decoded from its
payload are derived a sealed batch at a time (``sinks.rows.derive_extracted``), in
``derive_workers`` worker processes when configured (``sinks.derive_workers``: the decode
holds the GIL, so only another process takes it off the consume loop). A sealed batch is
handed to one background insert thread (the engine works outside the GIL), which waits for
its derived columns and inserts, while the caller goes on reading the next records; at
most ``max_in_flight`` batches are handed over at a time. Inserts run in the order batches
were sealed, and ``flush`` returns a partition's offset only once the insert holding it
*and every earlier batch of its table* have landed (so every earlier insert holding rows
of that partition): commit-after-insert holds exactly as with a synchronous insert.
``flush(wait=False)`` (the consume loop's call) collects what has landed without blocking;
``flush()`` waits for everything buffered.

No loss, no duplicates (proven in ``tests/integration/sinks/test_sink_writer.py``):

1. **Same batch retried** (insert error, timeout, crash after the insert but before the
   commit and the same records re-batched identically): each batch carries an
   ``insert_deduplication_token`` naming every partition range it holds, sorted by topic
   and partition: ``lockgate:<table>:<topic>:<partition>:<first>-<last>[,...]`` (one range:
   the token of the per-partition writer before it). ClickHouse (chDB 26.x verified; the
   tables set ``non_replicated_deduplication_window``) drops a block whose token it has
   already seen. The engine hashes the token (tokens of 262,000 characters differing in the
   last one are told apart), but chDB inlines settings into the statement (bounded by
   ``max_query_size``, 256 KiB) and an HTTP server takes them in the URL, so a token longer
   than :data:`MAX_TOKEN_CHARS` is sent as ``lockgate:<table>:sha256:<hex of the ranges>``,
   as deterministic. A failed batch is *sealed*: records that arrive meanwhile go to a new
   batch, so the retry carries exactly the same token and rows. The token names only
   ranges, so it must determine the rows: it does, because a range's rows are fixed by the
   Kafka log (a range's dead-lettered records never have rows).
2. **Redelivery cut differently** (after a restart the consumer re-reads from the last
   commit and the time-based cut falls elsewhere, so tokens differ): each row stores its
   source ``(src_topic, src_partition, src_offset)``. The first batches holding a
   topic-partition after the writer first sees it are checked against what is already
   stored, partition by partition (a projection ordered by the source triple makes each a
   point lookup), and stored offsets are dropped from the batch. Checking a partition
   stops once nothing at or after its first offset in a batch is stored. The check is by
   *set*, not max, so a partly landed multi-part insert is completed, not skipped.
3. **Revocation** (:meth:`BatchWriter.forget`): inserts in flight are waited for first (one
   landing after the partition's next owner checked its stored offsets would be inserted
   twice), their offsets of every partition are kept, and only the revoked partition's
   rows are cut out of the batches that hold them; the other partitions' rows stay. A cut
   batch whose insert was already tried (it failed, or landed behind a failed one) may
   have landed under its old token: it gets the token of the ranges left, and the
   partitions left in it are checked against what is stored again (2.), so its rows land
   exactly once whether the old insert landed or not. (Keeping the old token would be
   wrong: it names the revoked partition's range, whose next owner could cut the very
   same batch and have its rows dropped as already seen.)
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
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

__all__ = ["MAX_TOKEN_CHARS", "BatchWriter", "RecordKind", "WriterConfig", "dedup_token"]

RecordKind = Literal["audit", "checkpoint"]
TopicPartition = tuple[str, int]

_TABLES: dict[str, tuple[str, tuple[str, ...], Any]] = {
    "audit": ("audit_events", AUDIT_COLUMNS, AUDIT_ARROW_SCHEMA),
    "checkpoint": ("checkpoints", CHECKPOINT_COLUMNS, CHECKPOINT_ARROW_SCHEMA),
}
_SOURCE_COLS = {kind: tuple(cols.index(c) for c in ("src_topic", "src_partition", "src_offset"))
                for kind, (_, cols, _) in _TABLES.items()}
_KIND_COL, _PAYLOAD_COL = AUDIT_COLUMNS.index("kind"), AUDIT_COLUMNS.index("payload")

#: Longest deduplication token sent as the readable list of ranges (about 25 partitions);
#: a longer one is sent as its SHA-256.
MAX_TOKEN_CHARS = 1024


def _failed(future: Future[Any]) -> bool:
    return future.cancelled() or (future.done() and future.exception() is not None)


def _done() -> Future[None]:
    future: Future[None] = Future()
    future.set_result(None)
    return future


def dedup_token(table: str, ranges: Mapping[TopicPartition, tuple[int, int]]) -> str:
    """The ``insert_deduplication_token`` of a batch of ``table`` holding, per topic-partition,
    the rows of offsets ``first..last``: the same ranges give the same token, in any order."""
    listed = ",".join(f"{t}:{p}:{first}-{last}" for (t, p), (first, last) in sorted(ranges.items()))
    token = f"lockgate:{table}:{listed}"
    if len(token) <= MAX_TOKEN_CHARS:
        return token
    return f"lockgate:{table}:sha256:{hashlib.sha256(listed.encode()).hexdigest()}"


@dataclass(frozen=True)
class WriterConfig:
    """Batch bounds, per table. ``max_rows`` seals a batch; ``max_age_s`` makes it due for
    flushing; ``max_in_flight`` bounds the sealed batches the insert thread holds;
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
class _Range:
    """What a batch holds of one topic-partition: rows of offsets ``first..last`` (some may
    have been dropped as already stored) and the offset up to which it commits (a record
    dead-lettered after ``last`` counts)."""

    first: int
    last: int
    commit_upto: int


@dataclass
class _Batch:
    kind: str
    started: float
    ranges: dict[TopicPartition, _Range] = field(default_factory=dict)
    rows: list[Sequence[Any]] = field(default_factory=list)  # audit: ledger rows only
    checked: bool = False
    token: str | None = None  # set when first handed to the insert thread
    table: Any = None  # the Arrow table, built once (a retry inserts the very same rows)
    derived: Future[Any] | None = None  # audit: the extracted columns being derived


@dataclass
class _InFlight:
    batch: _Batch
    future: Future[None]


class BatchWriter:
    """Buffers rows per table, across topic-partitions, and inserts them idempotently.

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
        self._open: dict[str, _Batch] = {}  # by kind
        self._sealed: dict[str, deque[_Batch]] = {}  # by kind, in insert order
        self._in_flight: deque[_InFlight] = deque()
        self._inserter: ThreadPoolExecutor | None = None
        self._verify: set[TopicPartition] = set()
        self._known: set[TopicPartition] = set()
        self._committable: dict[TopicPartition, int] = {}
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
        batch = self._open.get(kind)
        if batch is None:
            batch = self._open[kind] = _Batch(kind, self._clock())
        held = batch.ranges.get(tp)
        if held is None:
            batch.ranges[tp] = _Range(offset, offset, offset)
        else:
            held.last = held.commit_upto = offset
        batch.rows.append(row)
        if len(batch.rows) >= self.config.max_rows:
            self._seal(kind)
            self._submit_sealed()

    def skip(self, topic: str, partition: int, offset: int) -> None:
        """Mark a record handled without a row (dead-lettered) so its offset can be committed.

        The skip is ordered after everything buffered before it: its offset becomes
        committable once those rows are inserted.
        """
        tp = (topic, partition)
        self._see(tp)
        kind = self._routes.get(topic)
        latest = next((b.ranges[tp] for b in self._newest_first(kind) if tp in b.ranges), None)
        if latest is not None:
            latest.commit_upto = offset
        else:
            self._committable[tp] = offset + 1

    def _newest_first(self, kind: str | None) -> Iterator[_Batch]:
        """The batches of ``kind`` not yet landed, newest first: open, sealed, in flight."""
        if kind in self._open:
            yield self._open[kind]
        if kind is not None:
            yield from reversed(self._sealed.get(kind, ()))
        yield from (f.batch for f in reversed(self._in_flight) if f.batch.kind == kind)

    def forget(self, topic: str, partition: int) -> None:
        """Drop buffered rows of a revoked partition; its next owner re-reads them. Rows of
        the other partitions in the same batches stay buffered.

        Waits for inserts in flight first: one landing after the partition's next check
        of stored offsets would be inserted twice.
        """
        self._settle()
        self._forget({(topic, partition)})

    def _forget(self, gone: set[TopicPartition]) -> None:
        for kind in list(self._open):
            if not self._cut(self._open[kind], gone):
                del self._open[kind]
        for kind in list(self._sealed):
            kept = deque(b for b in self._sealed[kind] if self._cut(b, gone))
            if kept:
                self._sealed[kind] = kept
            else:
                del self._sealed[kind]
        for tp in gone:
            self._committable.pop(tp, None)
            self._verify.discard(tp)
            self._known.discard(tp)

    def _cut(self, batch: _Batch, gone: set[TopicPartition]) -> bool:
        """Cut the rows of partitions in ``gone`` out of a batch not in flight; False when
        nothing of the batch is left. A batch already tried gets a new token and its
        partitions are checked against the store again (see the module docstring)."""
        if gone.isdisjoint(batch.ranges):
            return True
        for tp in gone:
            batch.ranges.pop(tp, None)
        t, p, _ = _SOURCE_COLS[batch.kind]
        batch.rows = [r for r in batch.rows if (r[t], r[p]) not in gone]
        batch.table = batch.derived = None
        if batch.token is not None:
            batch.token = None
            batch.checked = False
            self._verify.update(batch.ranges)
        return bool(batch.ranges)

    def forget_all(self) -> None:
        """Drop everything buffered (the consumer is being replaced; it re-reads from the commit)."""
        self._settle()
        self._open.clear()
        self._sealed.clear()
        self._committable.clear()
        self._verify.clear()
        self._known.clear()

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

    def _seal(self, kind: str) -> None:
        batch = self._open.pop(kind, None)
        if batch is not None:
            self._sealed.setdefault(kind, deque()).append(batch)

    @property
    def pending_rows(self) -> int:
        """Rows buffered and not yet known to be inserted (in flight included)."""
        return (sum(len(b.rows) for b in self._open.values())
                + sum(len(b.rows) for q in self._sealed.values() for b in q)
                + sum(len(f.batch.rows) for f in self._in_flight))

    def due(self) -> bool:
        """True when :meth:`flush` has work it can do now: an insert has finished (its offsets
        can be collected), a batch is sealed (full or failed) and the insert thread has room
        for it, or an open batch is too old while there is room."""
        if self._in_flight:
            if self._in_flight[0].future.done():
                return True
            if len(self._in_flight) >= self.config.max_in_flight:
                return False  # nothing can start before the oldest insert lands
        if self._sealed:
            return True
        now = self._clock()
        return any(now - b.started >= self.config.max_age_s for b in self._open.values())

    # -- flushing --------------------------------------------------------------------

    def flush(self, wait: bool = True) -> dict[TopicPartition, int]:
        """Insert buffered batches; return ``{(topic, partition): next offset to commit}``.

        ``wait=True`` seals every open batch and returns once every buffered row has been
        inserted. ``wait=False`` seals only batches older than ``max_age_s``, starts their
        inserts and returns the offsets of inserts that have already landed, without
        blocking. Either way an offset is returned only after the insert of its batch and of
        every earlier batch of its table landed.

        On an insert failure the failed batch and later ones of that table stay buffered
        (sealed, same token on retry), the other table still flushes, and
        :class:`InsertFailed` is raised after both were tried; offsets already safe are
        returned by the next successful call.
        """
        now = self._clock()
        for kind in [k for k, b in self._open.items() if wait or now - b.started >= self.config.max_age_s]:
            self._seal(kind)
        failure: InsertFailed | None = None
        failed: set[str] = set()
        while True:
            failure = self._submit_sealed(failed) or failure
            failure = self._reap(wait, failed) or failure
            if not wait or not any(kind not in failed for kind in self._sealed):
                break
        if failure is not None:
            raise failure
        out, self._committable = self._committable, {}
        return out

    def _submit_sealed(self, failed: set[str] | None = None) -> InsertFailed | None:
        """Hand sealed batches to the insert thread in order, at most ``max_in_flight`` waiting;
        tables in ``failed`` (a failure in this flush) wait for the next flush. A batch left
        empty by the check of stored offsets is queued as landed, behind the inserts before
        it (its offsets are safe only once theirs are)."""
        failure: InsertFailed | None = None
        for kind in list(self._sealed):
            queue = self._sealed[kind]
            while queue and len(self._in_flight) < self.config.max_in_flight and not (failed and kind in failed):
                batch = queue[0]
                try:
                    self._prepare(batch)
                except InsertFailed as exc:
                    failure = failure or exc
                    if failed is not None:
                        failed.add(kind)
                    break
                queue.popleft()
                if not batch.rows:
                    self._in_flight.append(_InFlight(batch, _done()))
                    continue
                if self._inserter is None:
                    self._inserter = ThreadPoolExecutor(1, thread_name_prefix="lockgate-sink-insert")
                self._in_flight.append(_InFlight(batch, self._inserter.submit(self._insert, batch)))
            if not queue:
                del self._sealed[kind]
        return failure

    def _reap(self, block: bool, failed: set[str] | None = None) -> InsertFailed | None:
        """Collect finished inserts in order (all of them when ``block``). A failed one and
        the later batches of its table go back to the front of that table's sealed queue,
        to be retried unchanged (same rows, same token: what landed is dropped)."""
        failure: InsertFailed | None = None
        back: dict[str, list[_Batch]] = {}
        while self._in_flight and (block or self._in_flight[0].future.done()):
            item = self._in_flight.popleft()
            batch = item.batch
            try:
                item.future.result()
            except InsertFailed as exc:
                failure = failure or exc
                back.setdefault(batch.kind, [])
            if batch.kind in back:
                back[batch.kind].append(batch)
                continue
            for tp, held in batch.ranges.items():
                self._committable[tp] = max(held.last, held.commit_upto) + 1
        for kind, batches in back.items():
            self._sealed[kind] = deque([*batches, *self._sealed.get(kind, ())])
            if failed is not None:
                failed.add(kind)
        return failure

    def _settle(self) -> None:
        """Wait for every insert in flight; failures stay sealed for the next flush."""
        self._reap(block=True)

    def _prepare(self, batch: _Batch) -> None:
        if not batch.checked:
            self._drop_stored(batch)
            batch.checked = True
        if batch.token is None:
            table = _TABLES[batch.kind][0]
            batch.token = dedup_token(table, {tp: (r.first, r.last) for tp, r in batch.ranges.items()})
        if batch.table is not None or not batch.rows:
            return
        if batch.kind != "audit":
            batch.table = rows_to_arrow(batch.rows, _TABLES[batch.kind][2])
        elif self._derive is not None and (batch.derived is None or _failed(batch.derived)):
            batch.derived = self._derive.submit([r[_KIND_COL] for r in batch.rows],
                                                [r[_PAYLOAD_COL] for r in batch.rows])

    def _insert(self, batch: _Batch) -> None:
        """Runs in the insert thread: touches nothing but its own batch (whose Arrow table it
        builds, once, from the ledger rows and the derived columns)."""
        if batch.table is None:
            extracted = (DeriveWorkers.result(batch.derived) if batch.derived is not None
                         else derive_extracted([r[_KIND_COL] for r in batch.rows],
                                               [r[_PAYLOAD_COL] for r in batch.rows]))
            batch.table = audit_table(batch.rows, extracted)
        table, columns, _ = _TABLES[batch.kind]
        started = time.perf_counter()
        self._client.insert(
            f"{self._db}.{table}",
            batch.table,
            column_names=columns,
            settings={
                "insert_deduplicate": 1,
                "insert_deduplication_token": batch.token,
                "deduplicate_blocks_in_dependent_materialized_views": 1,
                # Leave folding rows of one action in action_summary to merges and readers
                # (they GROUP BY anyway): pre-aggregating every block costs ~15% of an insert.
                "optimize_on_insert": 0,
            },
        )
        if self._on_batch is not None:
            self._on_batch(table, len(batch.rows), time.perf_counter() - started)

    def _drop_stored(self, batch: _Batch) -> None:
        """Drop rows already stored, for each partition of the batch still being checked."""
        table = _TABLES[batch.kind][0]
        stored: set[tuple[str, int, int]] = set()
        for tp, held in sorted(batch.ranges.items()):
            if tp not in self._verify:
                continue
            try:
                _, rows = self._client.query(
                    f"SELECT src_offset FROM {self._db}.{table} "
                    "WHERE src_topic = {t:String} AND src_partition = {p:Int32} "
                    "AND src_offset >= {lo:Int64}",
                    {"t": tp[0], "p": tp[1], "lo": held.first},
                )
            except SinkError as exc:
                raise InsertFailed(
                    f"could not check stored offsets of {tp[0]}[{tp[1]}] before inserting: {exc}"
                ) from exc
            if not rows:
                self._verify.discard(tp)
            stored.update((tp[0], tp[1], int(r[0])) for r in rows)
        if stored:
            t, p, o = _SOURCE_COLS[batch.kind]
            batch.rows = [r for r in batch.rows if (r[t], r[p], r[o]) not in stored]
