"""A key registry, kept current while the worker runs — and never lost to a bad edit.

:class:`RegistryWatcher` watches one registry file — ``services.json`` (who may propose)
or ``reviewers.json`` (who may vote) — and re-reads it when anything about the file
changed (content, mode, owner-visible times: ``chmod`` changes only the ctime). A reload
that fails — unsafe permissions (anyone but the owner may write: whoever can write it can
register keys), bad JSON, a malformed entry — is refused: the last good registry stays in
force, and the watcher returns a ``security`` audit event describing the refusal, once per
refused state of the file, so every attempt is on the ledger. The event id derives from the
file and its state, so a worker that restarts and refuses the same file again does not
ledger the same refusal twice.

:meth:`RegistryWatcher.poll` looks at most once per ``check_every_s`` (the worker's timer,
with or without traffic); :meth:`RegistryWatcher.check` looks now (the review desk, before
each vote, so a reviewer added a moment ago counts).

At start-up there is no last good registry: :class:`trust.registry.ServiceRegistry` and
:class:`trust.reviewers.ReviewerRegistry` raise and the worker refuses to start with that
message (fail-closed, and loud).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from schemas.records import AuditKind, audit_event, event_id_for

__all__ = ["RegistryWatcher", "Reloadable"]

log = logging.getLogger("lockgate.processor")

_EVIDENCE_BYTES = 64 * 1024
FileState = tuple[int, int, int, int, int, int]


class Reloadable(Protocol):
    """A registry kept in one file: it re-reads the file, or raises and keeps what it had."""

    @property
    def path(self) -> Path: ...

    def reload(self) -> None: ...


R = TypeVar("R", bound=Reloadable)


class RegistryWatcher(Generic[R]):
    """Reloads ``registry`` when its file changes; refuses (and reports) bad reloads.

    ``what`` names the registry in logs and ledger events ("service registry").
    """

    def __init__(self, registry: R, *, what: str = "service registry", check_every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.what = what
        self.check_every_s = check_every_s
        self._clock = clock
        self._checked = clock()
        self._state = self._file_state()

    def _file_state(self) -> FileState | None:
        try:
            st = os.stat(self.registry.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def poll(self) -> dict[str, Any] | None:
        """:meth:`check`, at most once per ``check_every_s``."""
        now = self._clock()
        if now - self._checked < self.check_every_s:
            return None
        return self.check()

    def check(self) -> dict[str, Any] | None:
        """Reload if the file changed; a ``security`` audit event if that reload was refused."""
        self._checked = self._clock()
        state = self._file_state()
        if state == self._state:
            return None
        self._state = state
        try:
            self.registry.reload()
        except Exception as exc:  # any failure: keep the last good registry
            path = self.registry.path
            log.error("%s %s not reloaded, the last good one stays in force: %s", self.what, path, exc)
            return audit_event(
                AuditKind.SECURITY, "", None, self._evidence(),
                detail=(f"{self.what} {path} was changed and its reload refused; the last good "
                        f"registry stays in force: {type(exc).__name__}: {exc}"),
                event_id=event_id_for(AuditKind.SECURITY, "registry", path, *(state or ())),
            )
        log.info("%s %s reloaded", self.what, self.registry.path)
        return None

    def _evidence(self) -> bytes:
        """The refused file's first bytes (public keys only), or nothing if it cannot be read."""
        try:
            with open(self.registry.path, "rb") as fh:
                return fh.read(_EVIDENCE_BYTES)
        except OSError:
            return b""
