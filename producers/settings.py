"""Settings of a Guard, from arguments or ``LOCKGATE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lockgate.kernel.home import Home, default_home
from lockgate.kernel.local_broker import DEFAULT_KAFKA_PORT, local_bootstrap
from schemas.topics import DEFAULT_PREFIX

__all__ = ["GuardSettings"]


class GuardSettings(BaseSettings):
    """Everything a Guard needs; frozen once built.

    ``service_key`` is the service's private key (signs proposals and outcomes);
    ``verdict_public_key`` the processor's public key (verdicts signed by anything else are
    refused). Both default to the local stack's files under ``LOCKGATE_HOME``.

    ``outcome_timeout_s`` bounds how long a guarded block waits for Kafka to confirm its
    outcome before spooling it (default: ``timeout_s``); ``spool_dir`` is where unconfirmed
    outcomes are kept until redelivered (default ``$LOCKGATE_HOME/spool/outcomes``).

    ``max_in_flight`` bounds the requests one Guard has waiting for verdicts at once (the
    overload bound: a Guard never piles more work on a slow processor). A request over the
    bound waits for a slot when ``when_full`` is ``"wait"`` (at most its own timeout, which
    the wait uses up), or fails at once when ``"fail"``; either way it raises
    :class:`producers.errors.GuardOverloaded` if no slot came, before anything is published.
    Each proposal carries its deadline (sent + its timeout): the processor answers a proposal
    it reads after that with a signed block (basis ``expired``) without evaluating it.
    """

    model_config = SettingsConfigDict(env_prefix="LOCKGATE_", frozen=True, extra="ignore")

    kafka_port: int = Field(default=DEFAULT_KAFKA_PORT, ge=1, le=65535)  # the local stack's, when no bootstrap
    bootstrap_servers: str = Field(default_factory=local_bootstrap)
    tenant: str = "default"
    service: str = "cli"
    service_key: Path | None = None
    verdict_public_key: Path | None = None
    timeout_s: float = Field(default=5.0, gt=0)
    topic_prefix: str = DEFAULT_PREFIX
    reply_partition: int | None = Field(default=None, ge=0)
    home: Path = Field(default_factory=default_home)
    outcome_timeout_s: float | None = Field(default=None, gt=0)
    spool_dir: Path | None = None
    max_in_flight: int = Field(default=256, ge=1)
    when_full: Literal["wait", "fail"] = "wait"

    def resolved_service_key(self) -> Path | None:
        if self.service_key is not None:
            return self.service_key
        candidate = Home(self.home).service_key(self.service)
        return candidate if candidate.exists() else None

    def resolved_verdict_key(self) -> Path:
        return self.verdict_public_key or Home(self.home).processor_public_key

    def resolved_outcome_timeout(self) -> float:
        return self.outcome_timeout_s if self.outcome_timeout_s is not None else self.timeout_s

    def resolved_spool_dir(self) -> Path:
        return self.spool_dir or Home(self.home).outcome_spool
