"""The reviewer registry: who may approve or deny a pending review, and with which key.

:class:`ReviewerRegistry` is ``reviewers.json`` (mode 0600) in the key directory, beside
the service registry (:mod:`trust.registry`), whose key-entry format it reuses::

    {"alice": {"groups": ["dba"], "identities": ["alice@corp.example"],
               "keys": [{"key_id": "3f...", "public_key": "<base64>", "added_at_us": ..., "not_after_us": null}]}}

Each reviewer's private key lives at ``<dir>/reviewers/NAME.pem`` (0600) and signs its
ReviewVote records. ``lockgate keys add-reviewer NAME --groups G... [--identity ID...]``
writes both.

Identity, not name strings
    A reviewer is one person under several strings: the registry name, and the actor ids
    services use for that person (``identities``). :func:`canonical_identity` folds case,
    Unicode compatibility forms and surrounding space, so ``Alice``, ``alice`` and
    the full-width ``alice`` are the same identity. Self-approval is judged on these canonical forms
    (:meth:`Reviewer.is_requester`), and the registry refuses two reviewers sharing one
    canonical identity, so a second registration cannot launder a person's approval.
    Which reviewer voted is decided by the *key* that signed the vote, never by the name
    the vote claims (:meth:`ReviewerRegistry.by_key`).
"""

from __future__ import annotations

import json
import os
import re
import stat
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trust.errors import KeyFileUnsafe, RegistryError
from trust.keys import SigningKey, clock_us, write_key_file
from trust.registry import ServiceKey

__all__ = ["ANY_GROUP", "Reviewer", "ReviewerRegistry", "canonical_identity"]

ANY_GROUP = "*"
"""An approver group that admits every registered reviewer (post-hoc reviews of break-glass
actions under a policy with no review rule use it)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def canonical_identity(text: str) -> str:
    """The form identities are compared in: NFKC, case-folded, stripped."""
    return unicodedata.normalize("NFKC", str(text)).casefold().strip()


@dataclass(frozen=True)
class Reviewer:
    """One registered reviewer."""

    name: str
    groups: tuple[str, ...]
    identities: tuple[str, ...]
    keys: tuple[ServiceKey, ...]

    @property
    def canonical(self) -> frozenset[str]:
        """Every canonical identity this reviewer is known by (its name included)."""
        return frozenset(canonical_identity(i) for i in (self.name, *self.identities))

    def is_requester(self, actor_id: str) -> bool:
        """Whether ``actor_id`` is this reviewer under any of its strings."""
        return canonical_identity(actor_id) in self.canonical

    def eligible(self, approver_groups: Iterable[str]) -> bool:
        """Whether this reviewer belongs to one of ``approver_groups`` (any of them)."""
        wanted = set(approver_groups)
        return ANY_GROUP in wanted or bool(wanted & set(self.groups))

    def key(self, key_id: str) -> ServiceKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def to_json(self) -> dict[str, Any]:
        return {"groups": list(self.groups), "identities": list(self.identities),
                "keys": [k.to_json() for k in self.keys]}


class ReviewerRegistry:
    """Reviewers and their public keys, persisted as ``<directory>/reviewers.json`` (0600).

    Like the service registry: the CLI is the only writer and replaces the file atomically.
    Made with ``load=False`` it starts empty, its file not read: a reader that must not stop
    over a bad file loads it through :meth:`trust.registry_reload.RegistryReloader.load`.
    """

    FILE = "reviewers.json"

    def __init__(self, directory: Path, *, load: bool = True) -> None:
        self.directory = Path(directory)
        self._view: tuple[dict[str, Reviewer], dict[str, Reviewer]] = ({}, {})  # (by name, by key id)
        if load:
            self.reload()

    @property
    def path(self) -> Path:
        return self.directory / self.FILE

    def private_key_path(self, name: str) -> Path:
        _check(name, _NAME, "reviewer name")
        return self.directory / "reviewers" / f"{name}.pem"

    def reload(self) -> None:
        """Re-read ``reviewers.json`` (absent = no reviewers)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            self._set({})
            return
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            if mode & 0o022:
                raise KeyFileUnsafe(self.path, mode)  # a writer could make anyone a reviewer
            with os.fdopen(os.dup(fd), "rb") as fh:
                raw = fh.read()
        finally:
            os.close(fd)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{self.path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RegistryError(f"{self.path} must hold an object of reviewer name -> entry")
        found: dict[str, Reviewer] = {}
        for name, entry in data.items():
            where = f"{self.path}: {name}"
            _check(name, _NAME, "reviewer name")
            if not isinstance(entry, dict) or not isinstance(entry.get("keys"), list):
                raise RegistryError(f"{where}: an entry needs groups, identities and keys")
            groups = entry.get("groups") or []
            identities = entry.get("identities") or []
            if not all(isinstance(g, str) for g in groups) or not all(isinstance(i, str) for i in identities):
                raise RegistryError(f"{where}: groups and identities must be lists of strings")
            keys = tuple(ServiceKey.from_json(k, where) for k in entry["keys"])
            found[name] = Reviewer(name, tuple(groups), tuple(identities), keys)
        self._set(found)

    def _set(self, reviewers: dict[str, Reviewer]) -> None:
        """Swap in a new registry at once: one assignment, so a reader in another thread (the
        inbox's API threads while its follower reloads) sees the old registry or the new one."""
        self._view = (reviewers, {k.key_id: r for r in reviewers.values() for k in r.keys})

    @property
    def _reviewers(self) -> dict[str, Reviewer]:
        return self._view[0]

    def _save(self) -> None:
        data = {name: r.to_json() for name, r in sorted(self._reviewers.items())}
        write_key_file(self.path, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n", 0o600,
                       overwrite=True)

    def reviewers(self) -> list[Reviewer]:
        reviewers = self._reviewers
        return [reviewers[n] for n in sorted(reviewers)]

    def get(self, name: str) -> Reviewer | None:
        return self._reviewers.get(name)

    def by_key(self, key_id: str) -> Reviewer | None:
        """The reviewer a key belongs to: the only way a vote is attributed."""
        return self._view[1].get(key_id)

    def add_reviewer(self, name: str, groups: Iterable[str], identities: Iterable[str] = (), *,
                     now_us: int | None = None) -> tuple[SigningKey, Reviewer]:
        """Create ``name``'s private key (0600) and register it with its groups.

        Raises :class:`RegistryError` for a bad name or group, a reviewer already
        registered, or an identity another reviewer already holds.
        """
        _check(name, _NAME, "reviewer name")
        group_list = tuple(dict.fromkeys(groups))
        if not group_list:
            raise RegistryError(f"reviewer {name!r} needs at least one group (--groups dba ...)")
        for g in group_list:
            if g != ANY_GROUP:
                _check(g, _GROUP, "group")
        if name in self._reviewers:
            raise RegistryError(f"reviewer {name!r} is already registered")
        id_list = tuple(dict.fromkeys(str(i) for i in identities if str(i).strip()))
        new = {canonical_identity(i) for i in (name, *id_list)}
        for other in self._reviewers.values():
            shared = new & other.canonical
            if shared:
                raise RegistryError(
                    f"identity {sorted(shared)[0]!r} already belongs to reviewer {other.name!r}; one "
                    "person is one reviewer (add identities to the existing entry instead)")
        key = SigningKey.generate()
        key.save(self.private_key_path(name))
        entry = ServiceKey(key.key_id, key.public(), clock_us() if now_us is None else now_us, None)
        reviewer = Reviewer(name, group_list, id_list, (entry,))
        self._set({**self._reviewers, name: reviewer})
        self._save()
        return key, reviewer


def _check(value: str, pattern: re.Pattern[str], what: str) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise RegistryError(f"{what} {value!r} is not allowed: use 1-128 letters, digits, . _ - "
                            "(names may also hold @), starting with a letter or digit")
