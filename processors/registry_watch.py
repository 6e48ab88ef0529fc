"""The service registry, kept current while the worker runs — and never lost to a bad edit.

:class:`RegistryWatcher` looks at ``services.json`` at most once per ``check_every_s`` and
re-reads it when anything about the file changed (content, mode, owner-visible times:
``chmod`` changes only the ctime). A reload that fails — unsafe permissions (anyone but
the owner may write: whoever can write it can register keys), bad JSON, a malformed
entry — is refused: the last good registry stays in force, and :meth:`poll` returns a
``security`` audit event describing the refusal, once per refused state of the file, so
every attempt is on the ledger. The event id derives from the file's state, so a worker
that restarts and refuses the same file again does not ledger the same refusal twice.

At start-up there is no last good registry: :class:`trust.registry.ServiceRegistry`
raises and the worker refuses to start with that message (fail-closed, and loud).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from schemas.records import AuditKind, audit_event, event_id_for
from trust.registry import ServiceRegistry

__all__ = ["RegistryWatcher"]

log = logging.getLogger("lockgate.processor")

_EVIDENCE_BYTES = 64 * 1024
FileState = tuple[int, int, int, int, int, int]


class RegistryWatcher:
    """Reloads ``registry`` when its file changes; refuses (and reports) bad reloads."""

    def __init__(self, registry: ServiceRegistry, *, check_every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
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
        """Reload if the file changed; a ``security`` audit event if that reload was refused."""
        now = self._clock()
        if now - self._checked < self.check_every_s:
            return None
        self._checked = now
        state = self._file_state()
        if state == self._state:
            return None
        self._state = state
        try:
            self.registry.reload()
        except Exception as exc:  # any failure: keep the last good registry
            path = self.registry.path
            log.error("service registry %s not reloaded, the last good one stays in force: %s", path, exc)
            return audit_event(
                AuditKind.SECURITY, "", None, self._evidence(),
                detail=(f"service registry {path} was changed and its reload refused; the last good "
                        f"registry stays in force: {type(exc).__name__}: {exc}"),
                event_id=event_id_for(AuditKind.SECURITY, "registry", path, *(state or ())),
            )
        log.info("service registry reloaded: %d service(s)", len(self.registry.services()))
        return None

    def _evidence(self) -> bytes:
        """The refused file's first bytes (public keys only), or nothing if it cannot be read."""
        try:
            with open(self.registry.path, "rb") as fh:
                return fh.read(_EVIDENCE_BYTES)
        except OSError:
            return b""
