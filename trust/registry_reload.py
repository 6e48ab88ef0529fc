"""Following a registry file while a process runs — and never losing it to a bad edit.

A registry kept in one file — ``services.json`` (who may propose, :mod:`trust.registry`) or
``reviewers.json`` (who may vote, :mod:`trust.reviewers`) — is re-read by a
:class:`RegistryReloader` when anything about the file changed (content, mode, owner-visible
times: ``chmod`` changes only the ctime). A reload that fails — unsafe permissions (anyone
but the owner may write: whoever can write it can register keys), bad JSON, a malformed
entry — is *refused*: the registry keeps what it had (the last good registry stays in
force) and :meth:`RegistryReloader.check` returns a :class:`Refusal` naming the file and
why, once per refused state of the file. Nothing is retried until the file changes again.

Every reader of a registry file uses this one core: the processor's
:class:`processors.registry_watch.RegistryWatcher` (which ledgers each refusal as a
``security`` event), the review desk, the grant index (:mod:`processors.reviews.grants`)
and the sink's review inbox (:mod:`sinks.review_inbox`), which log it and show it.

At start-up there is no last good registry, and the caller chooses what a bad file means:

- On the decision path the registry is loaded by its constructor, which raises, and the
  process refuses to start (the processor: fail closed, and loud). Its reloader is made
  over the loaded registry: ``RegistryReloader(registry, what=...)``.
- Off it, a reader that must not stop over the file (the sink, whose recording path and
  query API have nothing to do with reviewers) makes the registry empty, without reading
  the file, and loads it through :meth:`RegistryReloader.load`. A file that cannot be
  loaded is then *refused at start*: the registry stays empty — nobody in it, so everything
  it would admit is refused, exactly as for a name it does not hold — the
  :class:`Refusal` says that no registry is in force (``last_good`` false), and the next
  :meth:`~RegistryReloader.check` after the file changes loads it like any reload.

No I/O here but a ``stat``, the registry's own reload and reading the refused file's first
bytes as evidence. Not thread-safe: one thread checks, or callers hold a lock around
:meth:`~RegistryReloader.check` and every use of the registry it reloads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["FileState", "Refusal", "RegistryReloader", "Reloadable"]

EVIDENCE_BYTES = 64 * 1024
FileState = tuple[int, int, int, int, int, int]
"""inode, mode, uid, size, mtime and ctime (ns) of a file: any change means "look again"."""


class Reloadable(Protocol):
    """A registry kept in one file: it re-reads the file, or raises and keeps what it had."""

    @property
    def path(self) -> Path: ...

    def reload(self) -> None: ...


R = TypeVar("R", bound=Reloadable)


@dataclass(frozen=True)
class Refusal:
    """A registry file whose load was refused: the last good registry stays in force, or, if
    none was ever loaded (refused at start, :meth:`RegistryReloader.load`), the empty one."""

    what: str
    """The registry's name in messages ("reviewer registry")."""
    path: Path
    state: FileState | None
    """The refused state of the file (``None``: it could not be ``stat``-ed)."""
    error: str
    """Why, as ``ExceptionType: message``."""
    evidence: bytes = field(default=b"", repr=False)
    """The refused file's first bytes (public keys only), or nothing if it cannot be read."""
    last_good: bool = True
    """Whether a last good registry is in force; ``False``: none was loaded since start, the
    registry is empty and admits nobody until a good file is back."""

    def describe(self) -> str:
        if not self.last_good:
            return (f"{self.what} {self.path} cannot be loaded and no {self.what} is in force (none was "
                    f"loaded since start): it admits nobody until the file is fixed: {self.error}")
        return (f"{self.what} {self.path} was changed and its reload refused; the last good registry "
                f"stays in force: {self.error}")

    def to_json(self) -> dict[str, Any]:
        """What a status page shows: which file, why, and what serves meanwhile (``serving``:
        ``last good``, or ``none`` when no registry was loaded since start)."""
        return {"file": str(self.path), "reason": self.error, "registry": self.what,
                "serving": "last good" if self.last_good else "none"}


def file_state(path: Path) -> FileState | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class RegistryReloader(Generic[R]):
    """Reloads ``registry`` when its file changes; a refused reload keeps the last good one.

    The file's state when the reloader is made counts as read (the registry was just loaded
    by its constructor, which raised if it could not be); :meth:`load` loads it here instead.
    """

    def __init__(self, registry: R, *, what: str) -> None:
        self.registry = registry
        self.what = what
        self.reloads = 0
        """Reloads that took effect since start: a reader that derives state from the registry
        (the inbox's fold) derives it again when this moves."""
        self.refused: Refusal | None = None
        """Why the file now on disk is not in force; ``None`` while it is."""
        self.loaded = True
        """Whether a good file has been in force since start (``False`` only after :meth:`load`
        refused the file and no good one came since)."""
        self._state = file_state(registry.path)

    @classmethod
    def load(cls, registry: R, *, what: str) -> RegistryReloader[R]:
        """Load ``registry`` — made empty, its file not read — now; a file that cannot be loaded
        is refused at start (module docstring) instead of raising.

        For readers off the decision path only (the sink's review inbox): the registry then
        stays empty, and :attr:`refused` says so (``last_good`` false) until a :meth:`check`
        loads a good file. The processor does not use it: a bad registry at start stops the
        worker, which fails closed by design. The caller reports :attr:`refused` if it is set;
        :meth:`check` reports nothing more until the file changes.
        """
        reloader = cls(registry, what=what)
        reloader.loaded = False
        reloader._reload(reloader._state, initial=True)
        return reloader

    def check(self) -> Refusal | None:
        """Reload if the file changed since the last look. The :class:`Refusal` if this look
        refused a new state of the file; ``None`` if nothing changed or the reload took effect."""
        state = file_state(self.registry.path)
        if state == self._state:
            return None
        self._state = state
        return self._reload(state)

    def _reload(self, state: FileState | None, *, initial: bool = False) -> Refusal | None:
        try:
            self.registry.reload()
        except Exception as exc:  # any failure: keep the last good registry (or none, before the first)
            self.refused = Refusal(self.what, self.registry.path, state, f"{type(exc).__name__}: {exc}",
                                   _evidence(self.registry.path), last_good=self.loaded)
            return self.refused
        self.refused = None
        if not initial:  # the first load is no reload: nothing was derived from the empty registry yet
            self.reloads += 1
        self.loaded = True
        return None


def _evidence(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(EVIDENCE_BYTES)
    except OSError:
        return b""
