"""The ledger sources: the store, the sink's API and the replay topics.

Three implementations of :class:`trust.source.LedgerSource` (the shape is documented there).

* :class:`ClickHouseSource` — straight from ClickHouse with parameterized queries. Used
  when no sink process owns the embedded chDB directory, or always for an ``http(s)://``
  DSN (a server takes many clients). Every stored row is returned, duplicates included, so
  an inserted row at an existing sequence is seen; ``_position`` is the row's source
  record on the audit topic (partition, offset). ``events(columns=True)`` adds each row's
  stored derived columns, ``summary_rows()`` the folded ``action_summary`` (the data of
  :mod:`sinks.view_check`).
* :class:`ApiSource` — through the running sink's HTTP API (``/api/events`` paged per
  ledger partition, ``/api/checkpoints``; for the view check ``/api/verify/events`` and
  ``/api/verify/summary``), with an all-tenant bearer token created for the run and
  revoked afterwards. The API returns every stored row, a second row at an existing
  sequence included (``WITH TIES`` paging), so an inserted record is seen this way too; it
  gives no storage position. The API only serves stored data; the comparison runs here, in
  the verifier, against the payloads it chain-checks.
* :func:`load_from_topics` — the replay topics ``<prefix>audit`` and
  ``<prefix>checkpoints`` read from the beginning to the high watermark (confluent-kafka);
  the record's offset is the storage position.

The CLI picks one (``lockgate.cli.sources.open_source``).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sinks.clickhouse import ClickHouse, validate_identifier
from sinks.errors import SinkError
from sinks.ledger_rows import CHECKPOINT_SELECT, EVENT_SELECT, checkpoint_from_row, event_from_row
from sinks.rows import EXTRACTED_COLUMNS
from sinks.view_check import EVENT_COLUMNS_SELECT, SUMMARY_FOLD_SELECT, stored_column_values, stored_columns
from trust.keys import Keyring
from trust.source import Progress, quiet

__all__ = [
    "ApiSource",
    "ClickHouseSource",
    "Replay",
    "committed_offsets",
    "load_from_topics",
    "load_replay",
]

_PAGE = 10_000

ID_BATCH = 1_000
"""How many action ids one ``IN`` query binds (:meth:`ClickHouseSource.verdict_events`)."""


_N_DERIVED = len(EXTRACTED_COLUMNS)


def _stored_event(names: list[str], row: tuple[Any, ...], columns: bool) -> dict[str, Any]:
    if not columns:
        rec = dict(zip(names, row, strict=True))
    else:  # the derived columns are the SELECT's last ones
        rec = dict(zip(names[:-_N_DERIVED], row[:-_N_DERIVED], strict=True))
    event = event_from_row(rec)
    event["_position"] = (int(rec["src_partition"]), int(rec["src_offset"]))
    if columns:
        event["_columns"] = stored_column_values(row[-_N_DERIVED:])
    return event


class ClickHouseSource:
    """Reads the ledger tables directly (see the module docstring)."""

    def __init__(self, client: ClickHouse, progress: Progress = quiet) -> None:
        self._client = client
        self._db = validate_identifier(client.database)
        self._progress = progress
        self.description = f"ClickHouse database {client.database}"

    def _events(self, where: str, params: dict[str, Any], columns: bool = False) -> list[dict[str, Any]]:
        extra = f", {EVENT_COLUMNS_SELECT}" if columns else ""
        names, rows = self._client.query(
            f"SELECT {EVENT_SELECT}, src_partition, src_offset{extra} FROM {self._db}.audit_events "
            f"WHERE {where} ORDER BY ledger_partition, sequence",
            params,
        )
        out = [_stored_event(names, r, columns) for r in rows]
        if len(out) >= 100_000:
            self._progress(f"read {len(out)} audit events")
        return out

    def events(self, since_us: int | None = None, *, columns: bool = False) -> list[dict[str, Any]]:
        """Every stored row; with ``columns``, each carries ``_columns`` (its derived columns
        as stored, :func:`sinks.view_check.stored_columns`) read in the same SELECT."""
        if since_us is None:
            return self._events("1 = 1", {}, columns)
        return self._events(
            "recorded_at >= fromUnixTimestamp64Micro({since:Int64}, 'UTC')", {"since": since_us}, columns
        )

    def events_from(self, anchors: dict[int, int], *, columns: bool = False) -> list[dict[str, Any]]:
        """Events of each partition at or after its anchor sequence (other partitions: all)."""
        out: list[dict[str, Any]] = []
        parts = list(anchors)
        out.extend(self._events("ledger_partition NOT IN {parts:Array(Int32)}", {"parts": parts}, columns))
        for part, first in anchors.items():
            out.extend(
                self._events(
                    "ledger_partition = {p:Int32} AND sequence >= {s:Int64}", {"p": part, "s": first}, columns
                )
            )
        return out

    def verdict_events(self, action_ids: list[str]) -> list[dict[str, Any]]:
        """Every stored verdict row of ``action_ids`` (by the row's ``action_id`` column),
        read :data:`ID_BATCH` ids per query, the ids bound as an array parameter: what
        ``verify --since`` reads for outcomes in its window whose verdict lies before it."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(action_ids), ID_BATCH):
            out.extend(self._events("kind = 'verdict' AND action_id IN {ids:Array(String)}",
                                    {"ids": action_ids[i:i + ID_BATCH]}))
        return out

    def action_views(self, actions: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The stored rows (with derived columns) and summary groups of ``actions``, read now
        (:data:`sinks.view_check.Recheck`)."""
        ids = sorted(actions)
        events = self._events("action_id IN {ids:Array(String)}", {"ids": ids}, columns=True)
        names, rows = self._client.query(
            f"SELECT {SUMMARY_FOLD_SELECT} FROM {self._db}.action_summary "
            "WHERE action_id IN {ids:Array(String)} GROUP BY tenant, day, action_id",
            {"ids": ids},
        )
        return events, [dict(zip(names, r, strict=True)) for r in rows]

    def summary_rows(self) -> list[dict[str, Any]]:
        """Every ``action_summary`` group folded as readers fold it (:data:`SUMMARY_FOLD_SELECT`)."""
        names, rows = self._client.query(
            f"SELECT {SUMMARY_FOLD_SELECT} FROM {self._db}.action_summary "
            "GROUP BY tenant, day, action_id ORDER BY tenant, day, action_id"
        )
        return [dict(zip(names, r, strict=True)) for r in rows]

    def checkpoints(self) -> list[dict[str, Any]]:
        names, rows = self._client.query(
            f"SELECT {CHECKPOINT_SELECT} FROM {self._db}.checkpoints "
            "ORDER BY ledger_partition, last_sequence, checkpoint_id"
        )
        return [checkpoint_from_row(dict(zip(names, r, strict=True))) for r in rows]

    def action_events(self, action_id: str) -> list[dict[str, Any]]:
        return self._events("action_id = {aid:String}", {"aid": action_id})

    def action_record(self, action_id: str, keyring: Keyring | None) -> dict[str, Any] | None:
        """One action rendered from its payloads and checked here, with ``keyring``
        (:func:`sinks.action_record.action_record`, all tenants)."""
        from sinks.action_record import action_record

        record = action_record(self._client, None, action_id, keyring, shared=True)
        if record is not None:
            record["integrity"]["checked_by"] = "this command, reading the store"
        return record

    def actions(self, params: dict[str, str]) -> dict[str, Any]:
        from sinks.query import AuditQueries, parse_action_filter

        page = AuditQueries(self._client).actions(parse_action_filter(params, params.get("tenant")))
        return {"actions": page.rows, "next_cursor": page.next_cursor}

    def interval(self, partition: int, first: int, last: int) -> list[dict[str, Any]]:
        return self._events(
            "ledger_partition = {p:Int32} AND sequence >= {a:Int64} AND sequence <= {b:Int64}",
            {"p": partition, "a": first, "b": last},
        )

    def close(self) -> None:
        self._client.close()


class ApiSource:
    """Reads the ledger through the running sink's HTTP API (see the module docstring)."""

    def __init__(self, base_url: str, state_dir: Path, progress: Progress = quiet,
                 timeout_s: float = 30.0) -> None:
        from sinks.tokens import create_token

        self.base_url = base_url.rstrip("/")
        self.description = f"the sink's API at {self.base_url}"
        self._state_dir = state_dir
        self._progress = progress
        self._timeout = timeout_s
        info, self._secret = create_token(state_dir, "*", label=f"lockgate CLI, temporary {uuid.uuid4().hex[:6]}")
        self._token_id = info.token_id
        self._cps: list[dict[str, Any]] | None = None

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self._secret}"})  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:  # noqa: S310
                body: dict[str, Any] = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()[:1000].decode("utf-8", "replace")
            try:
                detail = str(json.loads(raw).get("error", raw))
            except (ValueError, AttributeError):
                detail = raw
            raise SinkError(f"the sink's API answered {exc.code} to {path}: {detail}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SinkError(f"cannot read {path} from the sink's API at {self.base_url}: {exc}") from exc
        return body

    def _partition_events(self, part: int, columns: bool = False) -> list[dict[str, Any]]:
        path = "/api/verify/events" if columns else "/api/events"
        out: list[dict[str, Any]] = []
        after = -1
        while True:
            page = self._get(path, {"partition": part, "after": after, "limit": _PAGE})
            rows = page["events"]
            for r in rows:
                event = event_from_row(r)
                if columns:
                    event["_columns"] = stored_columns(r)
                out.append(event)
            if len(rows) < _PAGE or page.get("next_after") is None:
                return out
            after = int(page["next_after"])
            self._progress(f"partition {part}: read {len(out)} events")

    def events(self, since_us: int | None = None, *, columns: bool = False) -> list[dict[str, Any]]:
        """Every stored row; with ``columns`` through ``/api/verify/events``, each row with
        its stored derived columns (``_columns``) from the same response."""
        known = {cp["ledger_partition"] for cp in self.checkpoints()}
        out: list[dict[str, Any]] = []
        part = 0
        # The API pages one partition at a time and cannot list them: walk 0, 1, ... up to
        # the first empty partition beyond every checkpointed one.
        while True:
            rows = self._partition_events(part, columns)
            if not rows and part > max(known, default=-1):
                break
            out.extend(rows)
            part += 1
        if since_us is not None:
            out = [e for e in out if e["recorded_at"] >= since_us]
        return out

    def action_views(self, actions: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The stored rows (with derived columns) and summary groups of ``actions``, read now
        through ``/api/verify/events`` and ``/api/verify/summary`` (``actions=[...]``)."""
        ids = sorted(actions)
        events: list[dict[str, Any]] = []
        summary: list[dict[str, Any]] = []
        for i in range(0, len(ids), 100):
            chunk = {"actions": json.dumps(ids[i:i + 100])}
            for r in self._get("/api/verify/events", chunk)["events"]:
                event = event_from_row(r)
                event["_columns"] = stored_columns(r)
                events.append(event)
            summary.extend(self._get("/api/verify/summary", chunk)["summary"])
        return events, summary

    def summary_rows(self) -> list[dict[str, Any]]:
        """Every ``action_summary`` group, folded, paged through ``/api/verify/summary``."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": _PAGE}
        while True:
            rows = self._get("/api/verify/summary", params)["summary"]
            out.extend(rows)
            if len(rows) < _PAGE:
                return out
            last = rows[-1]
            params = {"limit": _PAGE, "after_tenant": last["tenant"], "after_day": last["day_iso"],
                      "after_action": last["action_id"]}

    def actions(self, params: dict[str, str]) -> dict[str, Any]:
        return self._get("/api/actions", dict(params))

    def checkpoints(self) -> list[dict[str, Any]]:
        if self._cps is not None:
            return self._cps
        out: list[dict[str, Any]] = []
        parts: list[int] = []
        first = self._get("/api/checkpoints", {"limit": _PAGE})["checkpoints"]
        parts = sorted({int(c["ledger_partition"]) for c in first})
        for part in parts:
            after = -1
            while True:
                rows = self._get("/api/checkpoints", {"partition": part, "after": after, "limit": _PAGE})
                cps = rows["checkpoints"]
                for c in cps:
                    out.append(checkpoint_from_row(c))
                if len(cps) < _PAGE:
                    break
                after = int(cps[-1]["last_sequence"])
        self._cps = out
        return out

    def action_events(self, action_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["action_id"] == action_id]

    def action_record(self, action_id: str, keyring: Keyring | None) -> dict[str, Any] | None:
        """``/api/actions/{id}``: rendered and checked by the sink, with its processor key
        (``keyring`` is not used; ``lockgate verify`` is the independent check)."""
        try:
            record = self._get(f"/api/actions/{urllib.parse.quote(action_id, safe='')}", {})
        except SinkError as exc:
            if isinstance(exc.__cause__, urllib.error.HTTPError) and exc.__cause__.code == 404:
                return None
            raise
        record.setdefault("integrity", {})["checked_by"] = f"the sink at {self.base_url}"
        return record

    def interval(self, partition: int, first: int, last: int) -> list[dict[str, Any]]:
        return [e for e in self._partition_events(partition) if first <= e["sequence"] <= last]

    def close(self) -> None:
        from sinks.tokens import revoke_token

        revoke_token(self._state_dir, self._token_id)


def _consume_all(bootstrap: str, topic: str, progress: Progress) -> Iterator[tuple[int, int, bytes]]:
    """Every committed record of ``topic``, partition by partition, to the stable end.

    ``read_committed`` alone is not enough on a transactional topic: its last offsets are
    transaction markers no consumer delivers, so the end is found by the kernel reader
    (partition EOF at the last stable offset), never by waiting for offset ``high - 1``.
    """
    from confluent_kafka import KafkaException

    from lockgate.kernel.errors import KafkaReadError
    from lockgate.kernel.partition_reader import committed_reader, read_partition

    consumer = committed_reader(bootstrap, "replay")
    try:
        try:
            meta = consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise SinkError(f"cannot list topic {topic} at {bootstrap}: {exc}") from exc
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None:
            raise SinkError(f"topic {topic} is not available at {bootstrap}")
        n = 0
        for p in sorted(tmeta.partitions):
            try:
                for rec in read_partition(consumer, topic, p):
                    yield p, rec.offset, rec.value or b""
                    n += 1
                    if n % 50_000 == 0:
                        progress(f"{topic}: read {n} records")
            except KafkaReadError as exc:
                raise SinkError(str(exc)) from exc
    finally:
        consumer.close()


@dataclass
class Replay:
    """The replay topics read once: AuditEvents (each with ``_position``), Checkpoints, and
    each checkpoint's (topic partition, offset) by checkpoint id (kept apart: a checkpoint's
    signature covers every key of its dict)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_positions: dict[str, tuple[int, int]] = field(default_factory=dict)


def load_replay(bootstrap: str, prefix: str, progress: Progress = quiet) -> Replay:
    """Read ``<prefix>audit`` and ``<prefix>checkpoints`` from the beginning to the high
    watermark (``read_committed``). Undecodable records are reported on stderr and skipped
    (they are not AuditEvents). Checkpoints are read first: a checkpoint is committed with or
    after the events it covers, so on a live ledger every checkpoint read has its events in
    the audit read that follows (the other order reports the events chained in between as a
    truncated tail)."""
    from schemas.codec import get_codec
    from schemas.errors import CodecError

    codec = get_codec()
    replay = Replay()
    for name, topic in (("Checkpoint", f"{prefix}checkpoints"), ("AuditEvent", f"{prefix}audit")):
        for p, off, raw in _consume_all(bootstrap, topic, progress):
            try:
                rec = dict(codec.decode_as(name, raw))
            except CodecError as exc:
                print(f"lockgate: skipping {topic}[{p}]@{off}: {exc}", file=sys.stderr)
                continue
            if name == "AuditEvent":
                rec["_position"] = (p, off)
                replay.events.append(rec)
            else:
                replay.checkpoints.append(rec)
                replay.checkpoint_positions[str(rec["checkpoint_id"])] = (p, off)
    return replay


def load_from_topics(bootstrap: str, prefix: str, progress: Progress = quiet
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """AuditEvents (each with ``_position`` = (topic partition, offset)) and Checkpoints
    from the replay topics, beginning to high watermark (:func:`load_replay`)."""
    replay = load_replay(bootstrap, prefix, progress)
    return replay.events, replay.checkpoints


def committed_offsets(bootstrap: str, group: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """The offsets consumer group ``group`` has committed on ``topics``: {(topic, partition): offset}.

    The sink commits an offset only after every record below it is in the store, so these
    say which replay records the store must hold (``verify --against-topics``). Partitions
    the group never committed are absent. Read without joining the group.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        wanted: list[Any] = []
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                raise SinkError(f"topic {topic} is not available at {bootstrap}")
            wanted.extend(TopicPartition(topic, p) for p in meta.partitions)
        try:
            got = consumer.committed(wanted, timeout=10)
        except KafkaException as exc:
            raise SinkError(f"cannot read the committed offsets of group {group!r}: {exc}") from exc
        return {(tp.topic, int(tp.partition)): int(tp.offset) for tp in got if tp.offset >= 0}
    finally:
        consumer.close()
