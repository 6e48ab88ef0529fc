"""The outcome spool: outcomes Kafka has not confirmed, kept on local disk until it has.

One file per outcome, ``<outcome_id>.outcome``, in one directory (``GuardSettings.spool_dir``,
``LOCKGATE_SPOOL_DIR``, default ``$LOCKGATE_HOME/spool/outcomes``; the directory is 0700,
each file 0600). A file holds a small JSON envelope: the topic, the record key, the exact
value bytes that were (or were to be) produced, the Kafka timestamp of the first attempt,
when and why it was spooled, and the SHA-256 of the value. Redelivery re-sends exactly
these bytes with that timestamp, so a consumer sees the same outcome id and the same bytes
however often it is delivered.

Durability: an entry is written to a hidden temporary file, fsync'd, renamed into place
and the directory fsync'd, so after :meth:`OutcomeSpool.write` returns the entry survives
a crash or power loss, and a reader never sees a half-written entry.

Ownership: an entry is *claimed* by holding an exclusive ``flock`` on its file (a
:class:`SpoolClaim`). A Guard holds the claim while the outcome is still in flight in its
producer, and a redelivery holds it while it re-sends; every other process (other Guards
sharing the directory, ``lockgate spool flush``) skips claimed entries, so two of them never
re-send the same entry at once. A process that dies releases its claims with it.

A file that cannot be read back as a valid entry (truncated, not JSON, a digest or name
that does not match) is moved to ``quarantine/`` under the spool directory with an error
log line naming both paths; it is never deleted and never stops a Guard.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "OutcomeSpool", "SpoolClaim", "SpoolCorrupt", "SpoolEntry", "SpoolStatus"]

log = logging.getLogger("lockgate.spool")

FORMAT = "lockgate-outcome-spool/1"
SUFFIX = ".outcome"
QUARANTINE = "quarantine"
#: A temporary file this old belongs to no live writer (a write takes milliseconds).
STALE_TMP_S = 3600.0
#: Largest valid entry: an 8 MiB record, base64-encoded, with its envelope. Bigger is corrupt.
MAX_ENTRY_BYTES = 16 * 1024 * 1024


class SpoolCorrupt(ValueError):
    """The bytes of a spool file are not a valid entry."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class SpoolEntry:
    """One outcome waiting for Kafka: where it goes and the exact bytes to send."""

    outcome_id: str
    action_id: str
    topic: str
    key: bytes
    value: bytes
    timestamp_ms: int
    spooled_at_ms: int = 0
    reason: str = ""

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "outcome_id": self.outcome_id,
            "action_id": self.action_id,
            "topic": self.topic,
            "key": _b64(self.key),
            "value": _b64(self.value),
            "value_sha256": hashlib.sha256(self.value).hexdigest(),
            "timestamp_ms": self.timestamp_ms,
            "spooled_at_ms": self.spooled_at_ms,
            "reason": self.reason,
        }
        return (json.dumps(doc, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, expected_id: str | None = None) -> SpoolEntry:
        """Parse and check an entry; :class:`SpoolCorrupt` says what is wrong."""
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SpoolCorrupt(f"not a JSON document ({exc}); truncated or overwritten?") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise SpoolCorrupt(f"not a {FORMAT} entry")
        try:
            value = base64.b64decode(_text(doc, "value"), validate=True)
            key = base64.b64decode(_text(doc, "key"), validate=True)
            entry = cls(_text(doc, "outcome_id"), _text(doc, "action_id"), _text(doc, "topic"), key, value,
                        _int(doc, "timestamp_ms"), _int(doc, "spooled_at_ms"), str(doc.get("reason", "")))
        except (ValueError, TypeError) as exc:
            raise SpoolCorrupt(str(exc)) from None
        if hashlib.sha256(value).hexdigest() != doc.get("value_sha256"):
            raise SpoolCorrupt("the value does not match its SHA-256; the file was altered or damaged")
        if expected_id is not None and entry.outcome_id != expected_id:
            raise SpoolCorrupt(f"file is named for outcome {expected_id} but holds outcome {entry.outcome_id}")
        return entry


def _text(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or (not value and name != "key"):
        raise ValueError(f"field {name!r} is missing or not text")
    return value


def _int(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"field {name!r} is missing or not an integer")
    return value


class SpoolClaim:
    """An exclusive hold on one spool file; :meth:`remove` once delivered, else :meth:`release`."""

    def __init__(self, spool: OutcomeSpool, path: Path, fd: int) -> None:
        self.spool = spool
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def remove(self) -> None:
        """Delete the entry (its outcome is confirmed on Kafka) and let go of it."""
        fd = self._fd
        if fd is None:
            return
        try:
            if _same_file(self.path, fd):
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            self._close()

    def release(self) -> None:
        """Let go of the entry, leaving it in the spool for a later redelivery."""
        self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _same_file(path: Path, fd: int) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


@dataclass(frozen=True)
class SpoolStatus:
    """One entry as ``lockgate spool list`` shows it."""

    entry: SpoolEntry
    path: Path
    held: bool
    size: int


class OutcomeSpool:
    """A directory of spooled outcomes (see the module docstring for the guarantees)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def quarantine_dir(self) -> Path:
        return self.directory / QUARANTINE

    def ensure(self) -> None:
        """Create the directory (and missing parents) private to the owner (0700)."""
        missing = [p for p in (self.directory, *self.directory.parents) if not p.exists()]
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for p in {self.directory, *missing}:
            p.chmod(0o700)

    def path_of(self, outcome_id: str) -> Path:
        if not outcome_id or "/" in outcome_id or outcome_id.startswith("."):
            raise ValueError(f"outcome id {outcome_id!r} cannot name a spool file")
        return self.directory / f"{outcome_id}{SUFFIX}"

    # -- writing -------------------------------------------------------------------------

    def write(self, entry: SpoolEntry, *, hold: bool = False) -> SpoolClaim | None:
        """Durably store ``entry``; with ``hold``, return it claimed by the caller.

        Atomic and durable: temporary file (0600), fsync, rename, fsync of the directory.
        Writing the same outcome again replaces the entry with the same content.
        """
        final = self.path_of(entry.outcome_id)
        tmp = self.directory / f".{entry.outcome_id}.{uuid.uuid4().hex[:8]}.tmp"
        data = entry.to_bytes()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            if hold:
                fcntl.flock(fd, fcntl.LOCK_EX)  # a fresh inode: nobody else can hold it yet
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            os.replace(tmp, final)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        try:
            self._sync_dir()
        except BaseException:
            os.close(fd)
            raise
        if hold:
            return SpoolClaim(self, final, fd)
        os.close(fd)
        return None

    def _sync_dir(self) -> None:
        dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # -- reading -------------------------------------------------------------------------

    def paths(self) -> list[Path]:
        """Entry files, oldest first (by modification time, then name)."""
        try:
            names = [p for p in self.directory.iterdir()
                     if p.name.endswith(SUFFIX) and not p.name.startswith(".") and p.is_file()]
        except FileNotFoundError:
            return []

        def age(p: Path) -> tuple[float, str]:
            try:
                return (p.stat().st_mtime, p.name)
            except FileNotFoundError:
                return (0.0, p.name)

        return sorted(names, key=age)

    def count(self) -> int:
        return len(self.paths())

    def quarantined(self) -> list[Path]:
        try:
            return sorted(p for p in self.quarantine_dir.iterdir() if p.is_file())
        except FileNotFoundError:
            return []

    def claim(self, path: Path) -> tuple[SpoolEntry, SpoolClaim] | None:
        """Claim and read one entry; ``None`` if another holder has it, it is gone, or it was
        corrupt (then it is quarantined)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        claim = SpoolClaim(self, path, fd)
        if not _same_file(path, fd):  # removed or replaced between open and lock
            claim.release()
            return None
        try:
            entry = SpoolEntry.from_bytes(_read_all(fd), path.name.removesuffix(SUFFIX))
        except SpoolCorrupt as exc:
            self._quarantine(path, str(exc))
            claim.release()
            return None
        return entry, claim

    def claim_all(self, topic: str | None = None, limit: int = 1000,
                  skip: frozenset[str] = frozenset()) -> list[tuple[SpoolEntry, SpoolClaim]]:
        """Claim up to ``limit`` unclaimed entries (of ``topic``, if given), oldest first.

        Corrupt files met on the way are quarantined; stale temporary files too.
        """
        self._sweep_stale_tmp()
        out: list[tuple[SpoolEntry, SpoolClaim]] = []
        for path in self.paths():
            if len(out) >= limit:
                break
            if path.name.removesuffix(SUFFIX) in skip:
                continue
            got = self.claim(path)
            if got is None:
                continue
            if topic is not None and got[0].topic != topic:
                got[1].release()
                continue
            out.append(got)
        return out

    def status(self) -> Iterator[SpoolStatus]:
        """Every readable entry, with whether a running process holds it. Reads never quarantine
        a file another process may be writing; they skip what they cannot parse."""
        for path in self.paths():
            try:
                data = _read_path(path)
                entry = SpoolEntry.from_bytes(data, path.name.removesuffix(SUFFIX))
            except (FileNotFoundError, SpoolCorrupt):
                continue
            yield SpoolStatus(entry, path, self._held(path), len(data))

    def unreadable(self) -> list[Path]:
        """Entry files that do not parse (they are quarantined on the next redelivery)."""
        bad: list[Path] = []
        for path in self.paths():
            try:
                SpoolEntry.from_bytes(_read_path(path), path.name.removesuffix(SUFFIX))
            except SpoolCorrupt:
                bad.append(path)
            except FileNotFoundError:
                continue
        return bad

    def _held(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    # -- quarantine ----------------------------------------------------------------------

    def _quarantine(self, path: Path, why: str) -> None:
        self.quarantine_dir.mkdir(mode=0o700, exist_ok=True)
        target = self.quarantine_dir / f"{path.name}.{int(time.time())}.{uuid.uuid4().hex[:6]}"
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return
        log.error("spool file %s is not a valid outcome entry (%s); moved it to %s. The outcome it "
                  "held (if any) will not be redelivered: inspect the file", path, why, target)

    def _sweep_stale_tmp(self) -> None:
        try:
            tmps = [p for p in self.directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
        except FileNotFoundError:
            return
        now = time.time()
        for p in tmps:
            try:
                if now - p.stat().st_mtime > STALE_TMP_S:
                    self._quarantine(p, "an unfinished write left by a process that died while spooling")
            except FileNotFoundError:
                continue


def _read_all(fd: int) -> bytes:
    """The file's bytes; :class:`SpoolCorrupt` past :data:`MAX_ENTRY_BYTES` (never read whole)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_ENTRY_BYTES:
            raise SpoolCorrupt(f"larger than {MAX_ENTRY_BYTES} bytes, more than any outcome entry")
        chunks.append(chunk)


def _read_path(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _read_all(fd)
    finally:
        os.close(fd)
