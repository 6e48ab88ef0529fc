"""Settings of a witness, read once from ``LOCKGATE_*`` into a frozen object; its key.

The witness has its own Ed25519 key, never the processor's: a witness that shares the
log's key vouches for nothing. It is created on first start, 0600, beside its verifier
key file (``witness.vkey``, public: hand it to whoever runs ``verify --witness-key``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lockgate.kernel.home import Home, default_home
from trust.cosignature import CosignatureV1Signer
from trust.errors import KeyMissing
from trust.keys import SigningKey
from trust.note import valid_key_name
from trust.tlog import DEFAULT_LOG_NAME
from witness.errors import WitnessConfigError

__all__ = ["DEFAULT_WITNESS_NAME", "WitnessSettings", "load_or_create_signer"]

DEFAULT_WITNESS_NAME = "lockgate.example/witness"


class WitnessSettings(BaseSettings):
    """Where the witness listens, what it is called, which Lockgate log it trusts.

    ``LOCKGATE_HOME``, ``LOCKGATE_WITNESS_HOST``, ``LOCKGATE_WITNESS_PORT``,
    ``LOCKGATE_WITNESS_NAME``, ``LOCKGATE_LOG_NAME``, ``LOCKGATE_WITNESS_LOG_KEY`` (the
    processor's public key PEM; default ``$LOCKGATE_HOME/keys/processor.pub.pem``).
    """

    model_config = SettingsConfigDict(env_prefix="LOCKGATE_", frozen=True, extra="ignore")

    home: Path = Field(default_factory=default_home)
    witness_host: str = "127.0.0.1"
    witness_port: int = Field(default=8742, ge=0, le=65535)
    witness_name: str = DEFAULT_WITNESS_NAME
    log_name: str = DEFAULT_LOG_NAME
    witness_log_key: Path | None = None

    @property
    def paths(self) -> Home:
        return Home(self.home)

    @property
    def log_key_path(self) -> Path:
        return self.witness_log_key or self.paths.processor_public_key


def load_or_create_signer(home: Home, name: str) -> tuple[CosignatureV1Signer, bool]:
    """The witness's signer (its key, created 0600 on first use) and whether it was created.

    Also (re)writes ``witness.vkey`` for the name in use. Refuses a key readable by others.
    """
    if not valid_key_name(name):
        raise WitnessConfigError(f"witness name {name!r} must be non-empty, with no spaces and no '+'")
    created = False
    try:
        key = SigningKey.load(home.witness_key)
    except KeyMissing:
        home.witness_dir.mkdir(parents=True, exist_ok=True)
        home.witness_dir.chmod(0o700)
        key = SigningKey.generate()
        key.save(home.witness_key)
        created = True
    signer = CosignatureV1Signer(name, key)
    home.witness_vkey.write_text(signer.verifier.vkey + "\n", encoding="utf-8")
    return signer, created
