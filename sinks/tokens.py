"""Bearer tokens for the audit API, stored hashed, each bound to one tenant.

Contract:

* Tokens live in ``<state_dir>/api_tokens.json`` (mode 0600, refused if group/other can
  read it). Only the SHA-256 of a token is stored; the secret is shown once by
  :func:`create_token`.
* Each token names its tenant; ``"*"`` is an all-tenant (operator) token. The API forces
  the token's tenant into every query; a client cannot widen it.
* A token may name a **reviewer** (``lockgate tokens create --reviewer NAME``): it then
  reaches only the review inbox — ``/api/reviews`` and votes *as that reviewer*, signed by
  the sink with the reviewer's key (:mod:`sinks.review_inbox`) — and none of the audit
  routes. A token without a reviewer reads the audit trail and the inbox but cannot vote.
* :class:`TokenStore` re-reads the file when it changes, so tokens created or revoked by
  the CLI apply to a running server without a restart.

Secrets are ``lg_`` + 32 random bytes (urlsafe base64); the id is the first 8 hex digits
of the hash, enough to name a token in ``list``/``revoke`` without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sinks.errors import AuthError, SinkError

__all__ = [
    "ALL_TENANTS",
    "TOKEN_FILE",
    "TokenInfo",
    "TokenStore",
    "create_token",
    "list_tokens",
    "revoke_token",
]

TOKEN_FILE = "api_tokens.json"  # noqa: S105 - a file name, not a secret
ALL_TENANTS = "*"
_REVIEWER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_TENANT = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9_.:-]{0,127})$")


@dataclass(frozen=True)
class TokenInfo:
    """What is known about a token without its secret."""

    token_id: str
    tenant: str
    label: str
    created_at: str
    sha256: str
    reviewer: str = ""  # the reviewer this token votes as; empty: a read token

    @property
    def all_tenants(self) -> bool:
        return self.tenant == ALL_TENANTS


def _path(state_dir: Path) -> Path:
    return Path(state_dir) / TOKEN_FILE


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _load(path: Path) -> list[TokenInfo]:
    if not path.exists():
        return []
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SinkError(
            f"{path} is readable by group/others (mode {mode:o}); run chmod 600 {path}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [TokenInfo(**entry) for entry in data["tokens"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise SinkError(f"{path} is not a valid token file: {exc}; fix or delete it") from exc


def _save(path: Path, tokens: list[TokenInfo]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"tokens": [asdict(t) for t in tokens]}, fh, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def create_token(state_dir: Path, tenant: str, label: str = "", reviewer: str = "") -> tuple[TokenInfo, str]:
    """Create a token for ``tenant`` (``"*"`` = all tenants); return its info and the secret.

    With ``reviewer``, a reviewer token (module docstring); the caller checks that the
    reviewer exists. The secret is not stored; show it to the user once.
    """
    if reviewer and not _REVIEWER.match(reviewer):
        raise SinkError(f"reviewer name {reviewer!r} is invalid")
    if not _TENANT.match(tenant):
        raise SinkError(
            f"tenant {tenant!r} is invalid: use letters, digits, _ . : - (or * for all tenants)"
        )
    secret = "lg_" + secrets.token_urlsafe(32)
    digest = _hash(secret)
    info = TokenInfo(
        token_id=digest[:8],
        tenant=tenant,
        label=label,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        sha256=digest,
        reviewer=reviewer,
    )
    path = _path(state_dir)
    _save(path, [*_load(path), info])
    return info, secret


def list_tokens(state_dir: Path) -> list[TokenInfo]:
    """All tokens (without secrets), oldest first."""
    return _load(_path(state_dir))


def revoke_token(state_dir: Path, token_id: str) -> bool:
    """Remove the token whose id is ``token_id``; return False if there was none."""
    path = _path(state_dir)
    tokens = _load(path)
    kept = [t for t in tokens if t.token_id != token_id]
    if len(kept) == len(tokens):
        return False
    _save(path, kept)
    return True


class TokenStore:
    """Authenticates bearer tokens against the token file (re-read when it changes)."""

    def __init__(self, state_dir: Path) -> None:
        self._path = _path(state_dir)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, TokenInfo] = {}

    def _refresh(self) -> None:
        try:
            st = self._path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp == self._stamp and self._stamp is not None:
                return
            tokens = _load(self._path) if stamp is not None else []
            self._by_hash = {t.sha256: t for t in tokens}
            self._stamp = stamp

    def authenticate(self, authorization: str | None) -> TokenInfo:
        """The token named by an ``Authorization: Bearer <token>`` header value.

        Raises :class:`AuthError` (401) when the header is missing, malformed or unknown.
        """
        if not authorization:
            raise AuthError("missing bearer token: send 'Authorization: Bearer <token>'", 401)
        scheme, _, secret = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthError("malformed Authorization header: expected 'Bearer <token>'", 401)
        self._refresh()
        digest = _hash(secret.strip())
        with self._lock:
            for known, info in self._by_hash.items():
                if hmac.compare_digest(known, digest):
                    return info
        raise AuthError("unknown or revoked token: create one with `lockgate token create`", 401)
