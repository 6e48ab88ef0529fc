"""The service registry: how the processor authenticates producers.

:class:`ServiceRegistry` is a JSON file ``services.json`` (mode 0600) in a key directory,
mapping a service name to the list of its public keys::

    {"billing": [{"key_id": "3f...", "public_key": "<base64 raw 32 bytes>",
                  "added_at_us": 1700000000000000, "not_after_us": null}]}

Each service's private key lives at ``<dir>/services/NAME.pem`` (0600).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trust.errors import KeyFileUnsafe, KeyInvalid, RegistryError
from trust.keys import Keyring, PublicKey, SigningKey, clock_us, write_key_file

__all__ = ["ServiceKey", "ServiceRegistry", "ServiceVerification"]

_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ServiceVerification(enum.StrEnum):
    """Outcome of authenticating a producer's record against the registry."""

    OK = "ok"
    UNKNOWN_SERVICE = "unknown_service"
    UNKNOWN_KEY = "unknown_key"
    EXPIRED_KEY = "expired_key"
    BAD_SIGNATURE = "bad_signature"
    UNSIGNED = "unsigned"


@dataclass(frozen=True)
class ServiceKey:
    """One registered public key of a service (an entry of ``services.json``)."""

    key_id: str
    public_key: PublicKey
    added_at_us: int
    not_after_us: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "public_key": base64.b64encode(self.public_key.raw).decode("ascii"),
            "added_at_us": self.added_at_us,
            "not_after_us": self.not_after_us,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> ServiceKey:
        if not isinstance(data, dict):
            raise RegistryError(f"{where}: a key entry must be an object")
        try:
            raw = base64.b64decode(data["public_key"], validate=True)
            key = PublicKey(raw)
            key_id = data["key_id"]
            added = data["added_at_us"]
            not_after = data.get("not_after_us")
        except (KeyError, TypeError, binascii.Error, KeyInvalid) as exc:
            raise RegistryError(f"{where}: malformed key entry ({exc!r})") from exc
        if key_id != key.key_id:
            raise RegistryError(
                f"{where}: key_id {key_id!r} does not match its public key ({key.key_id}); "
                "the registry was edited by hand — re-register the service"
            )
        if type(added) is not int or (not_after is not None and type(not_after) is not int):
            raise RegistryError(f"{where}: added_at_us / not_after_us must be integers (µs)")
        return cls(key_id, key, added, not_after)


class ServiceRegistry:
    """Per-service public keys, persisted as ``<directory>/services.json`` (0600).

    Not safe for concurrent writers: ``lockgate keys`` commands are the only writers,
    and each write replaces the file atomically, so readers see the old or new whole file.
    """

    FILE = "services.json"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._services: dict[str, list[ServiceKey]] = {}
        self.reload()

    @property
    def path(self) -> Path:
        return self.directory / self.FILE

    def private_key_path(self, name: str) -> Path:
        self._check_name(name)
        return self.directory / "services" / f"{name}.pem"

    @staticmethod
    def _check_name(name: str) -> None:
        if not isinstance(name, str) or not _SERVICE_NAME.match(name):
            raise RegistryError(
                f"service name {name!r} is not allowed: use 1-128 characters from "
                "A-Z a-z 0-9 . _ - starting with a letter or digit"
            )

    def reload(self) -> None:
        """Re-read ``services.json`` (absent = no services)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            self._services = {}
            return
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            if mode & 0o022:
                # Whoever can write this file can register keys for any service.
                raise KeyFileUnsafe(self.path, mode, "service registry")
            with os.fdopen(os.dup(fd), "rb") as fh:
                raw = fh.read()
        finally:
            os.close(fd)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{self.path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RegistryError(f"{self.path} must hold an object of service name -> keys")
        services: dict[str, list[ServiceKey]] = {}
        for name, entries in data.items():
            self._check_name(name)
            if not isinstance(entries, list):
                raise RegistryError(f"{self.path}: {name} must map to a list of keys")
            services[name] = [ServiceKey.from_json(e, f"{self.path}: {name}") for e in entries]
        self._services = services

    def _save(self) -> None:
        data = {name: [k.to_json() for k in keys] for name, keys in sorted(self._services.items())}
        text = json.dumps(data, indent=2, sort_keys=True).encode("utf-8") + b"\n"
        write_key_file(self.path, text, 0o600, overwrite=True)

    def services(self) -> list[str]:
        return sorted(self._services)

    def keys(self, name: str) -> list[ServiceKey]:
        return list(self._services.get(name, []))

    def add_service(self, name: str, *, now_us: int | None = None) -> tuple[SigningKey, ServiceKey]:
        """Create ``name``'s private key file (0600) and register its public key.

        Raises :class:`RegistryError` if the service is already registered (use
        :meth:`rotate`) or its key file already exists.
        """
        self._check_name(name)
        if name in self._services:
            raise RegistryError(f"service {name!r} is already registered; use rotate to replace its key")
        key = SigningKey.generate()
        key.save(self.private_key_path(name))
        entry = ServiceKey(key.key_id, key.public(), clock_us() if now_us is None else now_us, None)
        self._services[name] = [entry]
        self._save()
        return key, entry

    def rotate(
        self, name: str, overlap_us: int, *, now_us: int | None = None
    ) -> tuple[SigningKey, ServiceKey]:
        """Give ``name`` a new key; its current keys stay valid for ``overlap_us`` more.

        The new private key replaces ``services/NAME.pem`` atomically; running producers
        keep signing with the old key (still accepted) until they reload.
        """
        self._check_name(name)
        if name not in self._services:
            raise RegistryError(f"service {name!r} is not registered; add it first")
        if overlap_us < 0:
            raise RegistryError("overlap_us must be >= 0")
        now = clock_us() if now_us is None else now_us
        deadline = now + overlap_us
        kept = [
            ServiceKey(k.key_id, k.public_key, k.added_at_us, deadline)
            if k.not_after_us is None or k.not_after_us > deadline
            else k
            for k in self._services[name]
        ]
        key = SigningKey.generate()
        key.save(self.private_key_path(name), overwrite=True)
        entry = ServiceKey(key.key_id, key.public(), now, None)
        self._services[name] = [*kept, entry]
        self._save()
        return key, entry

    def verify(
        self,
        service: str,
        key_id: str | None,
        payload: bytes,
        signature: bytes | None,
        at_us: int,
    ) -> ServiceVerification:
        """Authenticate ``payload`` as ``service``'s.

        ``at_us`` should be the time of receipt, not a time the record claims (a thief of
        an expired key could claim any time). Order of checks: unsigned, unknown service,
        unknown key, expired key, bad signature.
        """
        if not key_id or not signature:
            return ServiceVerification.UNSIGNED
        keys = self._services.get(service)
        if keys is None:
            return ServiceVerification.UNKNOWN_SERVICE
        for k in keys:
            if k.key_id == key_id:
                if k.not_after_us is not None and at_us > k.not_after_us:
                    return ServiceVerification.EXPIRED_KEY
                if k.public_key.verify(payload, signature):
                    return ServiceVerification.OK
                return ServiceVerification.BAD_SIGNATURE
        return ServiceVerification.UNKNOWN_KEY

    def keyring(self, name: str) -> Keyring:
        """The service's keys as a :class:`Keyring` (with their expiry)."""
        return Keyring((k.public_key, k.not_after_us) for k in self._services.get(name, []))

