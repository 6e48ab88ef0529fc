"""Ed25519 keys, key files, keyrings and record signatures.

Who signs what (``docs/CONTRACTS.md``): the processor signs every Verdict and Checkpoint
(``signature`` field, cleared to ``b""`` while signing); each producing service signs its
ProposedAction and ActionOutcome records (``service_signature``, cleared to ``None``). The
signed bytes are always ``schemas.canonical.signing_payload(record, field, cleared)`` —
the record's ``key_id`` / ``service_key_id`` is inside them, so a signature cannot be
re-labelled as another key's.

Key files
    The private key is PEM, PKCS#8, unencrypted, mode 0600: it is created under that mode
    (``O_CREAT | O_EXCL``, never a moment world-readable), fsynced, then renamed into
    place, so a crash leaves either no key or a whole one. The public key is PEM
    (SubjectPublicKeyInfo) beside it, ``NAME.pub.pem`` for ``NAME.pem``. Loading a private
    key whose mode grants any group/other access (``mode & 0o077``) is refused with
    :class:`KeyFileUnsafe` — ssh's rule, for the same reason.

Key id
    ``key_id`` = the first 16 hex characters of SHA-256 over the raw 32-byte public key.
    It names a key in records and keyrings; it is not a secret and not a checksum.

Rotation
    A :class:`Keyring` holds several public keys by key id, each with an optional
    ``not_after_us``. During a rotation the old and new key are both in the ring; the old
    one stops verifying after its ``not_after_us``. Expiry is judged at the ``at_us`` the
    caller passes (for stored records: when they were signed; for live traffic: now).

Service registry
    :class:`ServiceRegistry` is how the processor authenticates producers: a JSON file
    ``services.json`` (mode 0600) in a key directory, mapping a service name to the list
    of its public keys::

        {"billing": [{"key_id": "3f...", "public_key": "<base64 raw 32 bytes>",
                      "added_at_us": 1700000000000000, "not_after_us": null}]}

    Each service's private key lives at ``<dir>/services/NAME.pem`` (0600).

Errors (all :class:`lockgate.errors.ConfigError`, since each is fixed by an operator)::

    ConfigError
    ├── KeyMissing        no key file: run `lockgate keys init`
    ├── KeyFileUnsafe     key file readable by group/other: chmod 600 PATH
    ├── KeyInvalid        the file is not an Ed25519 key Lockgate wrote
    └── RegistryError     services.json unreadable, or a bad service name / duplicate
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lockgate.errors import ConfigError
from schemas.canonical import signing_payload

__all__ = [
    "KeyFileUnsafe",
    "KeyInvalid",
    "KeyMissing",
    "Keyring",
    "PublicKey",
    "RegistryError",
    "ServiceKey",
    "ServiceRegistry",
    "ServiceVerification",
    "SigningKey",
    "key_id_of",
    "public_key_path",
    "sign_record",
    "verify_record",
]

SIGNATURE_LEN = 64
RAW_KEY_LEN = 32
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class KeyMissing(ConfigError):
    """No key file where one is expected."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"no key at {path}; run `lockgate keys init` to create the signing keys")


class KeyFileUnsafe(ConfigError):
    """A private key file is readable or writable by group or others."""

    def __init__(self, path: Path, mode: int) -> None:
        self.path = path
        self.mode = mode
        super().__init__(
            f"private key {path} has mode {mode:04o}, which lets other users read or replace it; "
            f"run `chmod 600 {path}` (and check who could have copied it)"
        )


class KeyInvalid(ConfigError):
    """A key file or key bytes are not an Ed25519 key."""


class RegistryError(ConfigError):
    """The service registry cannot be read or the requested change is not allowed."""


def key_id_of(raw_public_key: bytes) -> str:
    """First 16 hex characters of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def public_key_path(private_path: Path) -> Path:
    """Where the public key of ``private_path`` lives: ``NAME.pub.pem`` beside ``NAME.pem``."""
    stem = private_path.name[:-4] if private_path.name.endswith(".pem") else private_path.name
    return private_path.with_name(f"{stem}.pub.pem")


def _write_atomic(path: Path, data: bytes, mode: int, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` with ``mode`` from the first byte on, then rename it in.

    The temporary file is created with ``O_EXCL`` and ``mode`` (the umask can only remove
    bits), ``fchmod`` sets the exact mode, and the rename (or, without ``overwrite``, a
    hard link, which fails if ``path`` exists) publishes it whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise RegistryError(
                    f"{path} already exists; refusing to overwrite a key (move it away first)"
                ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _read_private_file(path: Path) -> bytes:
    """Read a secret file, refusing one whose mode allows group/other access.

    The mode is taken from the open descriptor (``fstat``), so the checked file is the
    read file even if the path is swapped in between.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyMissing(path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyInvalid(f"{path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileUnsafe(path, mode)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class PublicKey:
    """An Ed25519 public key that verifies signatures. Immutable, hashable by key id."""

    __slots__ = ("_key", "key_id", "raw")

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes) or len(raw) != RAW_KEY_LEN:
            raise KeyInvalid(f"an Ed25519 public key is {RAW_KEY_LEN} raw bytes")
        try:
            self._key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise KeyInvalid(f"not an Ed25519 public key: {exc}") from exc
        self.raw = raw
        self.key_id = key_id_of(raw)

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        return cls(raw)

    @classmethod
    def from_pem(cls, pem: bytes) -> PublicKey:
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise KeyInvalid(f"not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise KeyInvalid(f"expected an Ed25519 public key, got {type(key).__name__}")
        return cls(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    @classmethod
    def load(cls, path: Path) -> PublicKey:
        """Load a PEM public key file (public keys may be world-readable)."""
        try:
            pem = Path(path).read_bytes()
        except FileNotFoundError:
            raise KeyMissing(Path(path)) from None
        try:
            return cls.from_pem(pem)
        except KeyInvalid as exc:
            raise KeyInvalid(f"{path}: {exc}") from exc

    def to_pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def save(self, path: Path) -> None:
        """Write the PEM public key (mode 0644), replacing an existing file atomically."""
        _write_atomic(Path(path), self.to_pem(), 0o644, overwrite=True)

    def verify(self, payload: bytes, signature: bytes | None) -> bool:
        """True iff ``signature`` is a valid Ed25519 signature of ``payload``. Never raises."""
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LEN:
            return False
        try:
            self._key.verify(signature, bytes(payload))
        except (InvalidSignature, TypeError, ValueError):
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id!r})"


class SigningKey:
    """An Ed25519 private key. Its ``repr`` never shows key material."""

    __slots__ = ("_key", "_public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._public = PublicKey(raw)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, *, source: str = "key") -> SigningKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyInvalid(
                f"{source} is not an unencrypted PEM private key ({exc}); "
                "recreate it with `lockgate keys init`"
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyInvalid(f"{source} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Load a private key file.

        Raises :class:`KeyMissing`, :class:`KeyFileUnsafe` or :class:`KeyInvalid`.
        """
        path = Path(path)
        return cls.from_pem(_read_private_file(path), source=str(path))

    def to_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def save(self, path: Path, *, overwrite: bool = False) -> Path:
        """Write the private key (0600, atomically) and its public key beside it.

        Refuses to replace an existing private key unless ``overwrite``. Returns the
        public key's path.
        """
        path = Path(path)
        _write_atomic(path, self.to_pem(), 0o600, overwrite=overwrite)
        pub = public_key_path(path)
        self._public.save(pub)
        return pub

    @property
    def key_id(self) -> str:
        return self._public.key_id

    def public(self) -> PublicKey:
        return self._public

    def sign(self, payload: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``payload``."""
        return self._key.sign(bytes(payload))

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


@dataclass(frozen=True)
class _RingEntry:
    key: PublicKey
    not_after_us: int | None


def _now_us() -> int:
    return time.time_ns() // 1000


class Keyring:
    """Public keys by key id, each optionally valid only up to ``not_after_us`` (inclusive)."""

    def __init__(self, keys: Iterable[PublicKey | tuple[PublicKey, int | None]] = ()) -> None:
        self._entries: dict[str, _RingEntry] = {}
        for item in keys:
            if isinstance(item, PublicKey):
                self.add(item)
            else:
                self.add(item[0], item[1])

    def add(self, key: PublicKey, not_after_us: int | None = None) -> None:
        """Add (or replace the expiry of) ``key``."""
        self._entries[key.key_id] = _RingEntry(key, not_after_us)

    def get(self, key_id: str) -> PublicKey | None:
        entry = self._entries.get(key_id)
        return entry.key if entry else None

    def not_after(self, key_id: str) -> int | None:
        entry = self._entries.get(key_id)
        return entry.not_after_us if entry else None

    def key_ids(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[PublicKey]:
        return (e.key for e in self._entries.values())

    def verify(self, key_id: str, payload: bytes, signature: bytes | None, at_us: int | None = None) -> bool:
        """True iff ``key_id`` is in the ring, not expired at ``at_us`` (default: now) and
        ``signature`` verifies. Never raises."""
        entry = self._entries.get(key_id) if isinstance(key_id, str) else None
        if entry is None:
            return False
        if entry.not_after_us is not None:
            when = _now_us() if at_us is None else at_us
            if when > entry.not_after_us:
                return False
        return entry.key.verify(payload, signature)


def _key_id_field(signature_field: str) -> str:
    # "signature" -> "key_id", "service_signature" -> "service_key_id"
    return signature_field[: -len("signature")] + "key_id"


def sign_record(
    record: Mapping[str, Any],
    field: str,
    cleared: Any,
    key: SigningKey,
    *,
    key_id_field: str | None = None,
) -> dict[str, Any]:
    """Return a copy of ``record`` signed by ``key``.

    Sets the key id field (``key_id`` for ``signature``, ``service_key_id`` for
    ``service_signature``, or ``key_id_field``) to ``key.key_id`` first, so the key id is
    covered by the signature, then sets ``field`` to the signature over
    ``signing_payload(record, field, cleared)``.
    """
    signed = dict(record)
    signed[key_id_field or _key_id_field(field)] = key.key_id
    signed[field] = key.sign(signing_payload(signed, field, cleared))
    return signed


def verify_record(
    record: Mapping[str, Any],
    field: str,
    cleared: Any,
    keys: Keyring | PublicKey,
    *,
    key_id_field: str | None = None,
    at_us: int | None = None,
) -> bool:
    """True iff ``record[field]`` is a valid signature by the key its key id field names.

    With a :class:`PublicKey`, the record's key id must be that key's. With a
    :class:`Keyring`, expiry is judged at ``at_us`` (default: now). Never raises on a
    malformed record; an unsigned record is simply not valid.
    """
    try:
        key_id = record.get(key_id_field or _key_id_field(field))
        signature = record.get(field)
        if not isinstance(key_id, str) or not isinstance(signature, bytes):
            return False
        payload = signing_payload(record, field, cleared)
    except (TypeError, ValueError, AttributeError):
        return False
    if isinstance(keys, PublicKey):
        return key_id == keys.key_id and keys.verify(payload, signature)
    return keys.verify(key_id, payload, signature, at_us)


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
                raise KeyFileUnsafe(self.path, mode)
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
        _write_atomic(self.path, text, 0o600, overwrite=True)

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
        entry = ServiceKey(key.key_id, key.public(), _now_us() if now_us is None else now_us, None)
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
        now = _now_us() if now_us is None else now_us
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
