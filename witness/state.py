"""The witness's memory: per log origin, the latest checkpoint it cosigned — durable and atomic.

C2SP tlog-witness requires that checking the old size and recording the new checkpoint be
one atomic step per origin, and that the record be persisted before the cosignature is
returned. Here:

* one file per origin, ``<dir>/<sha256(origin) hex>.json`` (origins are not file names);
* :meth:`WitnessState.locked` serialises requests for one origin: a thread lock inside the
  process and ``flock`` on ``<hash>.lock`` across processes sharing the directory;
* :meth:`WitnessState.store` writes a temporary file (0600, ``O_EXCL``), ``fsync``s it,
  renames it over the old one and ``fsync``s the directory: after a crash the file is the
  old record or the new one, never a mix, and a returned cosignature is never forgotten.

File format (JSON)::

    {"format": "lockgate.witness-state", "version": 1, "origin": ..., "size": N,
     "root": "<base64>", "timestamp": <POSIX seconds>, "checkpoint": "<cosigned note>"}

:meth:`WitnessState.load` re-derives origin, size and root from the stored checkpoint and
refuses a file where they disagree (:class:`WitnessStateCorrupt`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from trust.errors import NoteError, TlogFormatError
from trust.note import parse_note
from trust.tlog import parse_checkpoint_body
from trust.tlog_witness import WitnessedCheckpoint
from witness.errors import WitnessStateCorrupt

__all__ = ["STATE_FORMAT", "WitnessState"]

STATE_FORMAT = "lockgate.witness-state"


def _origin_hash(origin: str) -> str:
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


class WitnessState:
    """Per-origin records under one directory (created 0700)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def path(self, origin: str) -> Path:
        return self.directory / f"{_origin_hash(origin)}.json"

    def path_for_hash(self, origin_hash: str) -> Path:
        """The file of the origin whose SHA-256 is ``origin_hash`` (the monitoring URL's form)."""
        return self.directory / f"{origin_hash}.json"

    @contextlib.contextmanager
    def locked(self, origin: str) -> Iterator[None]:
        """Hold the origin's lock: no other request for it runs until this one is answered."""
        with self._guard:
            lock = self._locks.setdefault(origin, threading.Lock())
        with lock:
            fd = os.open(self.directory / f"{_origin_hash(origin)}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def load(self, origin: str) -> WitnessedCheckpoint | None:
        """The latest cosigned checkpoint of ``origin``, or None if it never cosigned one."""
        return self._read(self.path(origin), origin)

    def load_by_hash(self, origin_hash: str) -> WitnessedCheckpoint | None:
        if len(origin_hash) != 64 or any(c not in "0123456789abcdef" for c in origin_hash):
            return None
        return self._read(self.path_for_hash(origin_hash), None)

    def _read(self, path: Path, origin: str | None) -> WitnessedCheckpoint | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise WitnessStateCorrupt(f"cannot read witness state {path}: {exc}") from exc
        try:
            data = json.loads(raw)
            if data.get("format") != STATE_FORMAT or data.get("version") != 1:
                raise ValueError(f"not a {STATE_FORMAT} v1 file")
            state = WitnessedCheckpoint(
                data["origin"], data["size"], base64.b64decode(data["root"], validate=True),
                data["checkpoint"], data["timestamp"],
            )
            body = parse_checkpoint_body(parse_note(state.checkpoint).text)
            if (body.origin, body.size, body.root) != (state.origin, state.size, state.root):
                raise ValueError("the stored checkpoint does not match the recorded origin, size and root")
            if origin is not None and state.origin != origin:
                raise ValueError(f"the file is for origin {state.origin!r}")
            if type(state.size) is not int or type(state.timestamp) is not int:
                raise ValueError("size and timestamp are integers")
        except (ValueError, KeyError, TypeError, AttributeError, NoteError, TlogFormatError) as exc:
            raise WitnessStateCorrupt(
                f"witness state {path} is corrupt ({exc}); the witness refuses to cosign this log "
                "until an operator restores the file from a backup"
            ) from exc
        return state

    def store(self, state: WitnessedCheckpoint) -> None:
        """Replace the origin's record durably (module docstring). Call under :meth:`locked`."""
        data = json.dumps({
            "format": STATE_FORMAT, "version": 1, "origin": state.origin, "size": state.size,
            "root": base64.b64encode(state.root).decode("ascii"), "timestamp": state.timestamp,
            "checkpoint": state.checkpoint,
        }, sort_keys=True).encode("utf-8")
        path = self.path(state.origin)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
