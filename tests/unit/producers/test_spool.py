"""The outcome spool on its own: atomic and private writes, claims, quarantine, replay bytes."""

from __future__ import annotations

import logging
import os
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from producers.spool import STALE_TMP_S, OutcomeSpool, SpoolCorrupt, SpoolEntry


def entry(topic: str = "t.outcomes", value: bytes | None = None) -> SpoolEntry:
    oid = str(uuid.uuid4())
    return SpoolEntry(oid, f"action-{oid[:8]}", topic, f"action-{oid[:8]}".encode(),
                      value if value is not None else os.urandom(64) + b"\x00\xc3\x01",
                      1_700_000_000_123, 1_700_000_001_000, "not confirmed by Kafka within 5s")


@pytest.fixture
def spool(tmp_path: Path) -> OutcomeSpool:
    s = OutcomeSpool(tmp_path / "home" / "spool" / "outcomes")
    s.ensure()
    return s


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_creates_private_directories(tmp_path: Path) -> None:
    s = OutcomeSpool(tmp_path / "a" / "b" / "outcomes")
    tmp_path.chmod(0o755)
    old = os.umask(0o022)
    try:
        s.ensure()
    finally:
        os.umask(old)
    assert mode(s.directory) == 0o700
    assert mode(tmp_path / "a" / "b") == 0o700
    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path) == 0o755  # an existing parent is left alone


def test_write_is_private_durable_and_leaves_no_temporary_file(spool: OutcomeSpool) -> None:
    e = entry()
    old = os.umask(0)  # even a permissive umask must not widen the file's mode
    try:
        assert spool.write(e) is None
    finally:
        os.umask(old)
    path = spool.path_of(e.outcome_id)
    assert mode(path) == 0o600
    assert [p.name for p in spool.directory.iterdir()] == [path.name]
    assert SpoolEntry.from_bytes(path.read_bytes(), e.outcome_id) == e


def test_write_syncs_the_file_before_the_rename_and_the_directory_after(spool: OutcomeSpool,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    spool.write(entry())
    assert calls == ["fsync-file", "rename", "fsync-dir"]


def test_a_failed_write_leaves_the_previous_entry_intact_and_no_debris(spool: OutcomeSpool,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    e = entry()
    spool.write(e)
    before = spool.path_of(e.outcome_id).read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    changed = SpoolEntry(e.outcome_id, e.action_id, e.topic, e.key, b"other bytes", e.timestamp_ms)
    with pytest.raises(OSError, match="No space"):
        spool.write(changed)
    assert spool.path_of(e.outcome_id).read_bytes() == before
    assert [p.name for p in spool.directory.iterdir()] == [f"{e.outcome_id}.outcome"]


def test_an_unfinished_write_is_never_an_entry(spool: OutcomeSpool) -> None:
    e = entry()
    tmp = spool.directory / f".{e.outcome_id}.abcd1234.tmp"
    tmp.write_bytes(e.to_bytes()[:40])  # a writer died mid-write
    assert spool.paths() == []
    assert spool.claim_all() == []
    assert tmp.exists()  # young: may belong to a live writer
    old = time.time() - STALE_TMP_S - 10
    os.utime(tmp, (old, old))
    assert spool.claim_all() == []
    assert not tmp.exists()
    assert len(spool.quarantined()) == 1


def test_writing_the_same_outcome_twice_keeps_one_entry_with_the_same_bytes(spool: OutcomeSpool) -> None:
    e = entry()
    spool.write(e)
    first = spool.path_of(e.outcome_id).read_bytes()
    spool.write(e)
    assert spool.count() == 1
    assert spool.path_of(e.outcome_id).read_bytes() == first


def test_replay_hands_back_exactly_the_spooled_key_value_and_timestamp(spool: OutcomeSpool) -> None:
    value = bytes(range(256)) * 4  # every byte value, as an Avro body may hold
    e = entry(value=value)
    spool.write(e)
    [(got, claim)] = spool.claim_all()
    assert (got.key, got.value, got.timestamp_ms, got.topic) == (e.key, value, e.timestamp_ms, e.topic)
    claim.release()
    [(again, claim)] = spool.claim_all()  # a second replay: same bytes again
    assert again == got
    claim.release()


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda b: b[: len(b) // 2],
    "empty": lambda b: b"",
    "not json": lambda b: b"\x00\xff garbage",
    "not an object": lambda b: b"[1, 2, 3]",
    "value altered": lambda b: b.replace(b'"value": "', b'"value": "AAAA', 1),
    "digest altered": lambda b: b.replace(b'"value_sha256": "', b'"value_sha256": "00', 1),
    "field missing": lambda b: b.replace(b'"topic"', b'"topix"', 1),
    "wrong format": lambda b: b.replace(b"lockgate-outcome-spool/1", b"lockgate-outcome-spool/9", 1),
}


@pytest.mark.parametrize("damage", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_corrupt_entry_is_quarantined_with_a_log_line_and_others_still_replay(
        spool: OutcomeSpool, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    good, bad = entry(), entry()
    spool.write(good)
    spool.write(bad)
    path = spool.path_of(bad.outcome_id)
    path.write_bytes(CORRUPTIONS[damage](path.read_bytes()))
    with caplog.at_level(logging.ERROR, logger="lockgate.spool"):
        claimed = spool.claim_all()
    assert [e.outcome_id for e, _ in claimed] == [good.outcome_id]
    assert not path.exists()
    [moved] = spool.quarantined()
    assert moved.name.startswith(path.name)
    assert str(path) in caplog.text and str(moved) in caplog.text and "not a valid outcome entry" in caplog.text
    for _, claim in claimed:
        claim.release()


def test_an_oversized_file_is_quarantined_without_being_read_whole(spool: OutcomeSpool,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from producers import spool as spool_mod

    monkeypatch.setattr(spool_mod, "MAX_ENTRY_BYTES", 1000)
    big = entry(value=b"x" * 2000)
    spool.write(big)
    assert spool.claim_all() == []
    assert spool.count() == 0 and len(spool.quarantined()) == 1


def test_entry_named_for_another_outcome_is_corrupt(spool: OutcomeSpool) -> None:
    a, b = entry(), entry()
    with pytest.raises(SpoolCorrupt, match="named for outcome"):
        SpoolEntry.from_bytes(a.to_bytes(), b.outcome_id)


def test_a_claimed_entry_is_skipped_by_every_other_claimer_until_released(spool: OutcomeSpool) -> None:
    e = entry()
    spool.write(e)
    [(_, claim)] = spool.claim_all()
    other = OutcomeSpool(spool.directory)  # another Guard, or `lockgate spool flush`
    assert other.claim_all() == []
    assert [s.held for s in other.status()] == [True]
    claim.release()
    assert [s.held for s in other.status()] == [False]
    [(_, claim2)] = other.claim_all()
    claim2.remove()
    assert spool.count() == 0


def test_write_with_hold_returns_a_claim_nobody_else_can_take(spool: OutcomeSpool) -> None:
    e = entry()
    claim = spool.write(e, hold=True)
    assert claim is not None
    held = [claim.held]
    assert spool.claim_all() == []
    claim.remove()
    held.append(claim.held)
    assert held == [True, False]
    assert spool.count() == 0


def test_removing_a_claim_never_deletes_a_newer_file_under_the_same_name(spool: OutcomeSpool) -> None:
    e = entry()
    claim = spool.write(e, hold=True)
    assert claim is not None
    spool.write(e)  # re-spooled meanwhile: a new file replaced the claimed one
    claim.remove()
    assert spool.count() == 1


def test_claims_filter_by_topic_and_skip(spool: OutcomeSpool) -> None:
    mine, theirs, skipped = entry("a.outcomes"), entry("b.outcomes"), entry("a.outcomes")
    for e in (mine, theirs, skipped):
        spool.write(e)
    claimed = spool.claim_all("a.outcomes", skip=frozenset({skipped.outcome_id}))
    assert [e.outcome_id for e, _ in claimed] == [mine.outcome_id]
    for _, claim in claimed:
        claim.release()
    assert spool.count() == 3


def test_status_lists_readable_entries_and_unreadable_reports_the_rest(spool: OutcomeSpool) -> None:
    good = entry()
    spool.write(good)
    (spool.directory / "broken.outcome").write_bytes(b"{")
    assert [s.entry.outcome_id for s in spool.status()] == [good.outcome_id]
    assert [p.name for p in spool.unreadable()] == ["broken.outcome"]
    assert spool.count() == 2  # listing never moves files; a redelivery pass does


def test_an_outcome_id_cannot_escape_the_directory(spool: OutcomeSpool) -> None:
    with pytest.raises(ValueError, match="cannot name a spool file"):
        spool.path_of("../../etc/passwd")
