"""Ed25519 keys, key files and keyrings.

Key files
    The private key is PEM, PKCS#8, unencrypted, mode 0600: it is created under that mode
    (``O_CREAT | O_EXCL``, never a moment world-readable), fsynced, then renamed into
    place, so a crash leaves either no key or a whole one. The public key is PEM
    (SubjectPublicKeyInfo) beside it, ``NAME.pub.pem`` for ``NAME.pem``. Loading a private
    key whose mode grants any group/other access (``mode & 0o077``) is refused with
    :class:`~trust.errors.KeyFileUnsafe` — ssh's rule, for the same reason.

Key id
    ``key_id`` = the first 16 hex characters of SHA-256 over the raw 32-byte public key.
    It names a key in records and keyrings; it is not a secret and not a checksum.

Rotation
    A :class:`Keyring` holds several public keys by key id, each with an optional
    ``not_after_us``. During a rotation the old and new key are both in the ring; the old
    one stops verifying after its ``not_after_us``. Expiry is judged at the ``at_us`` the
    caller passes (for stored records: when they were signed; for live traffic: now).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trust.errors import KeyFileUnsafe, KeyInvalid, KeyMissing, RegistryError

__all__ = [
    "RAW_KEY_LEN",
    "SIGNATURE_LEN",
    "Keyring",
    "PublicKey",
    "SigningKey",
    "clock_us",
    "key_id_of",
    "public_key_path",
    "write_key_file",
]

SIGNATURE_LEN = 64
RAW_KEY_LEN = 32


def key_id_of(raw_public_key: bytes) -> str:
    """First 16 hex characters of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def public_key_path(private_path: Path) -> Path:
    """Where the public key of ``private_path`` lives: ``NAME.pub.pem`` beside ``NAME.pem``."""
    stem = private_path.name[:-4] if private_path.name.endswith(".pem") else private_path.name
    return private_path.with_name(f"{stem}.pub.pem")


def write_key_file(path: Path, data: bytes, mode: int, *, overwrite: bool) -> None:
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
        write_key_file(Path(path), self.to_pem(), 0o644, overwrite=True)

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
        write_key_file(path, self.to_pem(), 0o600, overwrite=overwrite)
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


def clock_us() -> int:
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
            when = clock_us() if at_us is None else at_us
            if when > entry.not_after_us:
                return False
        return entry.key.verify(payload, signature)

