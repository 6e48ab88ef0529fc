"""Recovery reads a partition's head only once no transaction on it is undecided.

A commit's offsets can be visible before its markers reach the audit partition; a worker
that keeps a partition across a rebalance re-recovers it right after its own last commit.
Read then, the head lacks that transaction and the next events would fork the chain.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from lockgate.kernel.errors import KafkaReadError
from lockgate.kernel.partition_reader import StoredRecord
from processors import ledger_stage
from processors.ledger_stage import LedgerStage
from processors.ledger_writer import LedgerWriter
from schemas.codec import get_codec
from schemas.records import AuditKind, audit_event, event_id_for
from schemas.topics import Topics
from trust.frontier import CompactRange
from trust.keys import SigningKey
from trust.merkle import merkle_root
from trust.tlog import build_log_checkpoint


def _stage() -> LedgerStage:
    writer = LedgerWriter(SigningKey.generate(), "p-test", checkpoint_every=100, checkpoint_interval_s=5.0,
                          dedup_window=100)
    return LedgerStage(writer, bootstrap="127.0.0.1:9", topics=Topics("t."), app_id="app", processor_id="p-test",
                       recovery_timeout_s=0.5)


def intake(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [audit_event(AuditKind.ACTION, "acme", f"a{i}", b"payload %d" % i, now_us=1_000 + i,
                        event_id=event_id_for(AuditKind.ACTION, "lockgate.actions", 0, i))
            for i in range(start, start + n)]


def _answers(monkeypatch: pytest.MonkeyPatch, stage: LedgerStage, stable: list[int], end: list[int]
             ) -> tuple[Any, list[str]]:
    """The committed reader to pass, and the log of watermark calls (stable ends, then ends, in turn)."""
    committed, uncommitted = object(), object()
    stage._uncommitted = uncommitted  # type: ignore[assignment]
    ends: dict[int, Iterator[int]] = {id(committed): iter(stable), id(uncommitted): iter(end)}
    calls: list[str] = []

    def watermarks(consumer: Any, _tp: Any, _timeout: float) -> tuple[int, int]:
        calls.append("stable" if consumer is committed else "end")
        return 0, next(ends[id(consumer)])

    monkeypatch.setattr(ledger_stage, "watermarks", watermarks)
    return committed, calls


def test_recovery_waits_for_the_commit_markers_of_the_last_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    stage = _stage()
    # The last transaction's 4 records (offsets 5..8) are written; its markers land late.
    committed, calls = _answers(monkeypatch, stage, stable=[5, 5, 10], end=[10, 10, 10])
    stage._await_stable(committed, 0)
    assert calls == ["stable", "end"] * 3  # returned only once stable end == end


def test_a_partition_that_never_settles_is_retried_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    stage = _stage()
    committed, _ = _answers(monkeypatch, stage, stable=[5] * 10_000, end=[9] * 10_000)
    with pytest.raises(KafkaReadError, match=r"undecided transactional records \(stable end 5, end 9\)"):
        stage._await_stable(committed, 0)


# -- resuming from the newest checkpoint's frontier ------------------------------------------


def _chained(stage: LedgerStage, n: int, at: int) -> tuple[list[StoredRecord], dict[str, Any], bytes]:
    """``n`` events of partition 0 as committed audit records (every third offset a
    transaction marker), a checkpoint at size ``at``, and the frontier the stage publishes with it."""
    w = LedgerWriter(stage.writer.key, "p-old", checkpoint_every=10**6, checkpoint_interval_s=5.0, dedup_window=10)
    w.recover(0, [], None)
    events = [w.append(0, ev, 0.0) for ev in intake(at)]
    (cp,) = w.due_checkpoints(100.0, 1)
    raw = w.partition_log(0).frontier().to_bytes()
    events += [w.append(0, ev, 0.0) for ev in intake(n - at, start=at)]
    codec = get_codec()
    records = [StoredRecord(0, i + i // 2, None, codec.encode("AuditEvent", ev)) for i, ev in enumerate(events) if ev]
    return records, cp, raw


def _fake_read_tail(by_topic: dict[str, list[StoredRecord]], reads: list[int], counted: str | None = None) -> Any:
    """``read_tail`` over ``by_topic``'s records (offsets with gaps), same contract: reads
    backwards in doubling chunks until ``enough``; appends each read's size to ``reads`` (of
    topic ``counted`` only, when given)."""

    def read_tail(_c: Any, topic: str, _p: int, enough: Any, *, chunk: int, timeout_s: float) -> list[StoredRecord]:
        records = by_topic[topic]
        hi, size = records[-1].offset + 1, chunk
        got: list[StoredRecord] = []
        while hi > 0:
            lo = max(0, hi - size)
            part = [r for r in records if lo <= r.offset < hi]
            if counted is None or topic == counted:
                reads.append(len(part))
            got = part + got
            if enough(got):
                break
            hi, size = lo, size * 2
        return got

    return read_tail


def _tail_reader(monkeypatch: pytest.MonkeyPatch, records: list[StoredRecord]) -> list[int]:
    """``read_tail`` over ``records`` whatever the topic; returns the reads' sizes."""
    reads: list[int] = []
    monkeypatch.setattr(ledger_stage, "read_tail", _fake_read_tail(defaultdict(lambda: records), reads))
    return reads


def test_a_proven_frontier_resumes_the_log_reading_only_the_suffix_and_the_window(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stage = _stage()  # dedup window 100, checkpoint_every 100
    records, cp, raw = _chained(stage, 5000, 4900)
    reads = _tail_reader(monkeypatch, records)
    frontier = stage._proven_frontier(0, (cp, _checkpoint_record(cp, raw)))
    assert frontier is not None and frontier.size == 4900
    state, read = stage._resume(object(), 0, frontier)  # type: ignore[arg-type]
    assert (state.next_sequence, state.uncovered, state.remembered) == (5000, 100, 100)
    assert read == sum(reads) < 400  # the 100 after the checkpoint and its last event, not 5000
    full = LedgerWriter(stage.writer.key, "p-test", checkpoint_every=100, checkpoint_interval_s=5.0,
                        dedup_window=100)
    codec = get_codec()
    events = [codec.decode_as("AuditEvent", r.value or b"") for r in records]
    full.recover(0, events, 4899, [e["hash"] for e in events])
    assert stage.writer.partition_log(0).root() == full.partition_log(0).root()


def _checkpoint_record(cp: dict[str, Any], frontier: bytes | None, offset: int = 7) -> StoredRecord:
    headers = ((ledger_stage.LOG_FRONTIER_HEADER, frontier),) if frontier is not None else ()
    return StoredRecord(0, offset, b"0", get_codec().encode("Checkpoint", cp), headers)


@pytest.mark.parametrize(("frontier", "why"), [
    (None, "carries no lockgate.log-frontier header"),
    (b"\x00" * 9, "does not decode"),
    ("edited", "has root"),
    ("smaller", "has size 4899, the signed checkpoint 4900"),
])
def test_a_newest_checkpoint_without_a_proven_frontier_means_a_full_rebuild(
        frontier: bytes | str | None, why: str, caplog: pytest.LogCaptureFixture) -> None:
    stage = _stage()
    records, cp, raw = _chained(stage, 4900, 4900)
    if frontier == "edited":
        frontier = raw[:20] + bytes([raw[20] ^ 0x80]) + raw[21:]
    elif frontier == "smaller":
        tree = CompactRange()
        for r in records[:-1]:
            tree.append(get_codec().decode_as("AuditEvent", r.value or b"")["hash"])
        frontier = tree.to_bytes()
    assert not isinstance(frontier, str)
    with caplog.at_level("WARNING", logger="lockgate.ledger"):
        assert stage._proven_frontier(0, (cp, _checkpoint_record(cp, frontier))) is None
    assert why in caplog.text and "rebuilding the log from every event" in caplog.text


def test_a_frontier_under_another_key_or_with_witnesses_is_not_used(caplog: pytest.LogCaptureFixture) -> None:
    stage = _stage()
    _, cp, raw = _chained(_stage(), 10, 10)  # signed by another worker's key
    with caplog.at_level("WARNING", logger="lockgate.ledger"):
        assert stage._proven_frontier(0, (cp, _checkpoint_record(cp, raw))) is None
    assert "is not a trusted processor key" in caplog.text
    witnessed = LedgerWriter(SigningKey.generate(), "p-test", checkpoint_every=100, checkpoint_interval_s=5.0,
                             dedup_window=100, keep_proofs=True)
    stage.writer = witnessed
    _, cp, raw = _chained(stage, 10, 10)
    assert stage._proven_frontier(0, (cp, _checkpoint_record(cp, raw))) is None


def test_no_checkpoint_means_a_full_rebuild(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="lockgate.ledger"):
        assert _stage()._proven_frontier(0, None) is None
    assert "no committed checkpoint that verifies" in caplog.text


def test_events_that_do_not_continue_a_proven_frontier_mean_a_full_rebuild(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    stage = _stage()
    records, cp, raw = _chained(stage, 300, 250)
    # The stored event where the checkpoint ends differs from what the checkpoint's writer
    # chained (the frontier, signed, still proves out): the log must be rebuilt whole.
    codec = get_codec()
    ev = codec.decode_as("AuditEvent", records[249].value or b"")
    records[249] = StoredRecord(0, records[249].offset, None, codec.encode("AuditEvent", dict(ev, hash=b"\x05" * 32)))
    _tail_reader(monkeypatch, records)
    monkeypatch.setattr(ledger_stage, "read_partition", lambda *_a, **_k: iter(records))
    with caplog.at_level("WARNING", logger="lockgate.ledger"):
        _, read, how = stage._recover_log(object(), 0, (cp, _checkpoint_record(cp, raw)))  # type: ignore[arg-type]
    assert "do not continue it" in caplog.text and "stored with another hash" in caplog.text
    # Today's rebuild, as stored (`verify` names event 249); never the frontier's log.
    assert (how, read) == ("every event", 300)
    stored = [codec.decode_as("AuditEvent", r.value or b"")["hash"] for r in records]
    assert stage.writer.partition_log(0).root() == merkle_root(stored)


def test_a_proven_frontier_and_a_full_rebuild_end_in_the_same_log(monkeypatch: pytest.MonkeyPatch) -> None:
    stage = _stage()
    records, cp, raw = _chained(stage, 1000, 930)
    _tail_reader(monkeypatch, records)
    monkeypatch.setattr(ledger_stage, "read_partition", lambda *_a, **_k: iter(records))
    fast, read_fast, how_fast = stage._recover_log(object(), 0, (cp, _checkpoint_record(cp, raw)))  # type: ignore[arg-type]
    log_fast = stage.writer.partition_log(0)
    stage.writer.release(0)
    slow, read_slow, how_slow = stage._recover_log(object(), 0, (cp, _checkpoint_record(cp, None)))  # type: ignore[arg-type]
    log_slow = stage.writer.partition_log(0)
    assert (how_fast, how_slow) == ("the frontier of checkpoint size 930", "every event")
    assert fast == slow and read_fast < read_slow == 1000
    assert (log_fast.size, log_fast.root(), log_fast.head) == (log_slow.size, log_slow.root(), log_slow.head)


# -- the covered sequence comes only from a verified checkpoint --------------------------------


def _forged(partition: int = 0, size: int = 2**40) -> dict[str, Any]:
    """A well-formed whole-log checkpoint claiming ``size`` events, signed by an attacker's key."""
    return build_log_checkpoint(partition=partition, size=size, root=b"\x07" * 32, head_hash=b"\x08" * 32,
                                key=SigningKey.generate(), processor_id="p-test", now_us=1)


def _topics_reader(monkeypatch: pytest.MonkeyPatch, stage: LedgerStage, audit: list[StoredRecord],
                   checkpoints: list[StoredRecord]) -> list[int]:
    """``read_tail`` and ``read_partition`` over the given records of each topic; returns the
    sizes of the checkpoint reads."""
    by_topic = {stage.topics.audit: audit, stage.topics.checkpoints: checkpoints}
    reads: list[int] = []
    monkeypatch.setattr(ledger_stage, "read_tail", _fake_read_tail(by_topic, reads, stage.topics.checkpoints))
    monkeypatch.setattr(ledger_stage, "read_partition", lambda _c, topic, *_a, **_k: iter(by_topic[topic]))
    return reads


def _cp_records(*cps: dict[str, Any] | bytes, frontiers: dict[int, bytes] | None = None) -> list[StoredRecord]:
    codec = get_codec()
    out = []
    for offset, cp in enumerate(cps):
        raw = cp if isinstance(cp, bytes) else codec.encode("Checkpoint", cp)
        frontier = (frontiers or {}).get(offset)
        headers = ((ledger_stage.LOG_FRONTIER_HEADER, frontier),) if frontier is not None else ()
        out.append(StoredRecord(0, offset, b"0", raw, headers))
    return out


def test_a_forged_newer_checkpoint_does_not_cover_the_previous_owners_last_events(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    stage = _stage()
    audit, cp, raw = _chained(stage, 130, 100)  # events 100..129: the previous owner's, uncovered
    forged = _forged()
    forged_frontier = CompactRange(2**40, [b"\x07" * 32]).to_bytes()
    cps = _cp_records(cp, forged, b"\x00garbage", frontiers={0: raw, 1: forged_frontier})
    _topics_reader(monkeypatch, stage, audit, cps)
    with caplog.at_level("WARNING", logger="lockgate.ledger"):
        newest = stage._newest_checkpoint(object(), 0)  # type: ignore[arg-type]
        assert newest is not None and newest[1].offset == 0 and newest[0]["last_sequence"] == 99
        state, _, how = stage._recover_log(object(), 0, newest)  # type: ignore[arg-type]
    assert how == "the frontier of checkpoint size 100"
    assert (state.next_sequence, state.uncovered) == (130, 30)
    assert "checkpoints[0]@1 (last sequence 1099511627775) does not verify" in caplog.text
    assert "is not a trusted processor key" in caplog.text
    assert "checkpoints[0]@2 is not a Checkpoint" in caplog.text
    (due,) = stage.writer.due_checkpoints(0.0, 2)  # at once: the previous owner's events
    assert due["last_sequence"] == 129


def test_the_fallback_rebuild_takes_the_covered_sequence_from_the_verified_checkpoint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stage = _stage()
    audit, cp, _ = _chained(stage, 130, 100)
    # Neither record carries a frontier: the log is rebuilt from every event.
    _topics_reader(monkeypatch, stage, audit, _cp_records(cp, _forged()))
    state, read, how = stage._recover_log(object(), 0, stage._newest_checkpoint(object(), 0))  # type: ignore[arg-type]
    assert (how, read) == ("every event", 130)
    assert (state.next_sequence, state.uncovered) == (130, 30)


def test_with_no_verified_checkpoint_every_event_is_checkpointed_again(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    stage = _stage()
    audit, _, _ = _chained(stage, 130, 100)
    _, other_key_cp, other_raw = _chained(_stage(), 130, 100)  # genuine, but another worker's key
    _topics_reader(monkeypatch, stage, audit, _cp_records(other_key_cp, _forged(), frontiers={0: other_raw}))
    with caplog.at_level("WARNING", logger="lockgate.ledger"):
        newest = stage._newest_checkpoint(object(), 0)  # type: ignore[arg-type]
        assert newest is None
        state, _, how = stage._recover_log(object(), 0, newest)  # type: ignore[arg-type]
    assert how == "every event" and (state.next_sequence, state.uncovered) == (130, 130)
    assert "checkpoints[0]@0 (last sequence 99) does not verify" in caplog.text
    assert "no committed checkpoint that verifies" in caplog.text


def test_recovery_reads_back_past_a_flood_of_forged_checkpoints(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    stage = _stage()
    audit, cp, _ = _chained(stage, 130, 100)
    flood = [_forged(size=2**40 + i) for i in range(600)]
    other_partition = _chained(_stage(), 5, 5)[1] | {"ledger_partition": 1}
    reads = _topics_reader(monkeypatch, stage, audit, _cp_records(cp, *flood, other_partition))
    with caplog.at_level("WARNING", logger="lockgate.ledger"):
        newest = stage._newest_checkpoint(object(), 0)  # type: ignore[arg-type]
    assert newest is not None and newest[1].offset == 0
    assert reads == [256, 346]  # chunks doubling back to the verified record, each checked once
    warned = [r.getMessage() for r in caplog.records if "does not verify" in r.getMessage()]
    assert len(warned) == 10 and "checkpoints[0]@600 " in warned[0]  # the newest first
    assert "590 more checkpoint record(s) that do not verify were skipped" in caplog.text
