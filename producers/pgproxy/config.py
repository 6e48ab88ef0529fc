"""Configuration of the PostgreSQL guard proxy: one frozen object, from a YAML/TOML file or arguments.

Example (YAML; the same keys in TOML)::

    listen: 127.0.0.1:6432            # where clients connect
    upstream: 127.0.0.1:5432          # the real PostgreSQL
    resource: db/prod/{database}      # resource of every proposal ({database}, {user})
    action_type: db.query
    service: pgproxy                  # the Guard's service identity (key under LOCKGATE_HOME)
    timeout_s: 5                      # verdict wait; then the statement is refused
    roles:                            # actor roles by PostgreSQL user
      alice: [dba]
    default_roles: []
    tls:                              # answer SSLRequest with 'S' (else 'N')
      cert: /etc/lockgate/proxy.crt
      key: /etc/lockgate/proxy.key
      required: false                 # true: refuse clients that do not ask for TLS
    images:                           # before/after images of UPDATE/DELETE on these tables
      tables: {orders: {key: [id]}}
      max_rows: 20
      max_columns: 32
      max_bytes: 65536
    blast_radius:                     # most rows one statement may change, else undone
      tables: {orders: 100}
      rules: {bulk-update-reviewed: 1000}   # applies when the verdict matched this rule
    connect_timeout_s: 10             # how long to wait for the upstream server

Table names match ``schema.table`` or the bare ``table``, lower case.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from producers.pgproxy.errors import ProxyConfigError
from producers.pgproxy.images import ImageLimits

__all__ = ["BlastRadiusConfig", "ImageTable", "ImagesConfig", "ProxyConfig", "TlsConfig", "load_config",
           "parse_host_port"]


def parse_host_port(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TlsConfig(_Frozen):
    """Server certificate and key the proxy presents to clients that send SSLRequest."""

    cert: Path
    key: Path
    required: bool = False


class ImageTable(_Frozen):
    """Key columns identify a row again after the UPDATE (for its after-image)."""

    key: tuple[str, ...] = ("id",)


class ImagesConfig(_Frozen):
    tables: dict[str, ImageTable] = Field(default_factory=dict)
    max_rows: int = Field(default=20, ge=1, le=10_000)
    max_columns: int = Field(default=32, ge=1, le=1600)
    max_bytes: int = Field(default=65536, ge=256, le=16 * 1024 * 1024)

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(self.max_rows, self.max_columns, self.max_bytes)


class BlastRadiusConfig(_Frozen):
    """Row limits: per table changed, and per policy rule the verdict matched."""

    tables: dict[str, int] = Field(default_factory=dict)
    rules: dict[str, int] = Field(default_factory=dict)

    @field_validator("tables", "rules")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        bad = [k for k, v in value.items() if v < 0]
        if bad:
            raise ValueError(f"row limits must be >= 0 (see {', '.join(bad)})")
        return value


class ProxyConfig(_Frozen):
    """Everything one proxy needs besides the Guard's own settings (``LOCKGATE_*``)."""

    listen: str = "127.0.0.1:6432"
    upstream: str
    resource: str = "db/{database}"
    action_type: str = "db.query"
    service: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    roles: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    default_roles: tuple[str, ...] = ()
    tls: TlsConfig | None = None
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    blast_radius: BlastRadiusConfig = Field(default_factory=BlastRadiusConfig)
    connect_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("listen", "upstream")
    @classmethod
    def _host_port(cls, value: str) -> str:
        parse_host_port(value)
        return value

    @field_validator("resource")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            value.format(database="d", user="u")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"resource template {value!r} may only use {{database}} and {{user}}") from exc
        return value

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_host_port(self.listen)

    @property
    def upstream_address(self) -> tuple[str, int]:
        return parse_host_port(self.upstream)

    def roles_of(self, user: str) -> tuple[str, ...]:
        return self.roles.get(user, self.default_roles)

    def resource_for(self, database: str, user: str) -> str:
        return self.resource.format(database=database, user=user)


def load_config(path: str | Path | None = None, **overrides: Any) -> ProxyConfig:
    """Read ``path`` (``.toml``, else YAML) and apply non-None ``overrides`` on top.

    Raises :class:`ProxyConfigError` naming each invalid field.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise ProxyConfigError(f"cannot read proxy config {p}: {exc.strerror}") from exc
        try:
            loaded = tomllib.loads(raw.decode()) if p.suffix == ".toml" else yaml.safe_load(raw)
        except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ProxyConfigError(f"proxy config {p} is not valid {'TOML' if p.suffix == '.toml' else 'YAML'}: "
                                   f"{exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ProxyConfigError(f"proxy config {p} must be a mapping of settings")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ProxyConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())
        where = f" in {path}" if path is not None else ""
        raise ProxyConfigError(f"invalid proxy configuration{where}: {problems}") from exc
