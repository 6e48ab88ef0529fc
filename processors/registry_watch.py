"""A key registry, kept current while the worker runs — and every refused reload ledgered.

:class:`RegistryWatcher` follows one registry file — ``services.json`` (who may propose)
or ``reviewers.json`` (who may vote) — through :class:`trust.registry_reload.RegistryReloader`,
the core every registry reader shares: a changed file is re-read, and a reload that fails
(unsafe permissions, bad JSON, a malformed entry) is refused and the last good registry stays
in force. What the worker adds: each refusal becomes a ``security`` audit event describing
it, once per refused state of the file, so every attempt is on the ledger. The event id
derives from the file and its state, so a worker that restarts and refuses the same file
again does not ledger the same refusal twice.

:meth:`RegistryWatcher.poll` looks at most once per ``check_every_s`` (the worker's timer,
with or without traffic); :meth:`RegistryWatcher.check` looks now (the review desk, before
each vote, so a reviewer added a moment ago counts).

At start-up there is no last good registry: :class:`trust.registry.ServiceRegistry` and
:class:`trust.reviewers.ReviewerRegistry` raise and the worker refuses to start with that
message (fail-closed, and loud). Deliberately so: this is the decision path. The sink's
review inbox, off it, starts with an empty registry instead
(:meth:`trust.registry_reload.RegistryReloader.load`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from schemas.records import AuditKind, audit_event, event_id_for
from trust.registry_reload import Refusal, RegistryReloader, Reloadable

__all__ = ["RegistryWatcher"]

log = logging.getLogger("lockgate.processor")

R = TypeVar("R", bound=Reloadable)


def _refusal_event(refusal: Refusal) -> dict[str, Any]:
    """The ``security`` audit event of a refused reload: the file's first bytes as evidence,
    an id derived from the file and its refused state."""
    return audit_event(AuditKind.SECURITY, "", None, refusal.evidence, detail=refusal.describe(),
                       event_id=event_id_for(AuditKind.SECURITY, "registry", refusal.path, *(refusal.state or ())))


class RegistryWatcher(Generic[R]):
    """Reloads ``registry`` when its file changes; refuses (and reports) bad reloads.

    ``what`` names the registry in logs and ledger events ("service registry").
    """

    def __init__(self, registry: R, *, what: str = "service registry", check_every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._reloader = RegistryReloader(registry, what=what)
        self.check_every_s = check_every_s
        self._clock = clock
        self._checked = clock()

    @property
    def registry(self) -> R:
        return self._reloader.registry

    @property
    def what(self) -> str:
        return self._reloader.what

    def poll(self) -> dict[str, Any] | None:
        """:meth:`check`, at most once per ``check_every_s``."""
        now = self._clock()
        if now - self._checked < self.check_every_s:
            return None
        return self.check()

    def check(self) -> dict[str, Any] | None:
        """Reload if the file changed; a ``security`` audit event if that reload was refused."""
        self._checked = self._clock()
        reloads = self._reloader.reloads
        refusal = self._reloader.check()
        if refusal is not None:
            log.error("%s", refusal.describe())
            return _refusal_event(refusal)
        if self._reloader.reloads != reloads:
            log.info("%s %s reloaded", self.what, self.registry.path)
        return None
