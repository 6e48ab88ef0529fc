"""Where local state lives.

Everything the local stack writes — broker data, logs, pid files, keys, the embedded
ClickHouse directory — lives under one directory, ``LOCKGATE_HOME`` (default
``~/.lockgate``). Deleting it resets the stack; keeping it keeps topics and data across
``down``/``up``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Home", "default_home"]


def default_home() -> Path:
    """Return ``$LOCKGATE_HOME`` or ``~/.lockgate``; read at call time, never at import."""
    raw = os.environ.get("LOCKGATE_HOME", "").strip()
    return Path(raw).expanduser().resolve() if raw else Path.home() / ".lockgate"


@dataclass(frozen=True)
class Home:
    """Typed paths under the state directory."""

    root: Path

    @classmethod
    def from_env(cls) -> Home:
        return cls(default_home())

    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def processor_key(self) -> Path:
        """The processor's Ed25519 signing key (0600); it signs verdicts and checkpoints."""
        return self.keys / "processor.pem"

    @property
    def processor_public_key(self) -> Path:
        """The processor's public key: what Guards and ``verify`` check signatures with."""
        return self.keys / "processor.pub.pem"

    @property
    def services_dir(self) -> Path:
        """Where each service's private key lives (``NAME.pem``, 0600)."""
        return self.keys / "services"

    def service_key(self, service: str) -> Path:
        """The private key of ``service``; the registry ``keys/services.json`` holds its public key."""
        return self.services_dir / f"{service}.pem"

    @property
    def outcome_spool(self) -> Path:
        """Where Guards spool outcomes Kafka did not confirm in time (0700 dir, 0600 files)."""
        return self.root / "spool" / "outcomes"

    @property
    def witness_dir(self) -> Path:
        """A witness's own state (``lockgate witness serve``): its key and its per-log records."""
        return self.root / "witness"

    @property
    def witness_key(self) -> Path:
        """The witness's Ed25519 cosigning key (0600); ``witness.vkey`` beside it is public."""
        return self.witness_dir / "witness.pem"

    @property
    def witness_vkey(self) -> Path:
        """The witness's verifier key (``name+keyid+base64``): what ``verify --witness-key`` reads."""
        return self.witness_dir / "witness.vkey"

    @property
    def witness_logs(self) -> Path:
        """One file per log origin: the latest checkpoint the witness cosigned for it."""
        return self.witness_dir / "logs"

    @property
    def clickhouse(self) -> Path:
        return self.root / "clickhouse"

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def logfile(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def ensure(self) -> None:
        """Create the directory tree, private to the owner (0700)."""
        for d in (self.root, self.kafka_dir, self.logs, self.run, self.keys):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
