"""Settings of the processor worker, read once from ``LOCKGATE_*`` into a frozen object."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lockgate.kernel.fetch_batching import DEFAULT_RECORDING_FETCH_WAIT_MS
from lockgate.kernel.home import Home, default_home
from lockgate.kernel.local_broker import DEFAULT_KAFKA_PORT, local_bootstrap
from processors.replay import FUTURE_SKEW_US
from schemas.topics import DEFAULT_PREFIX
from trust.tlog import DEFAULT_LOG_NAME, check_log_name

__all__ = ["DEFAULT_CHECKPOINT_INTERVAL_S", "DEFAULT_REPLAY_WINDOW_S", "MAX_PROPOSAL_BYTES", "MAX_REPLAY_WINDOW_S",
           "ProcessorSettings"]

MAX_PROPOSAL_BYTES = 3 * 1024 * 1024
"""The ceiling of ``LOCKGATE_MAX_RECORD_BYTES`` (see the field)."""

DEFAULT_CHECKPOINT_INTERVAL_S = 5.0
"""Default longest wait between chaining an event and signing a checkpoint over it."""

DEFAULT_REPLAY_WINDOW_S = 3600.0
"""Default age (by ``proposed_at``) past which a proposal is refused as a possible replay."""

MAX_REPLAY_WINDOW_S = (7 * 24 * 3600 * 1_000_000 - FUTURE_SKEW_US) / 1e6
"""Seven days less the skew: the replay memory is rebuilt from ``decisions`` at every partition
start by reading ``window + skew`` of it, and holds one entry per action id decided in that
span, so the window bounds both the restart's read and the memory."""


class ProcessorSettings(BaseSettings):
    """The verdict agent's knobs. ``require_service_auth`` off is for migrations only."""

    model_config = SettingsConfigDict(env_prefix="LOCKGATE_", frozen=True, extra="ignore")

    home: Path = Field(default_factory=default_home)
    kafka_port: int = Field(default=DEFAULT_KAFKA_PORT, ge=1, le=65535)  # the local stack's, when no bootstrap
    bootstrap_servers: str = Field(default_factory=local_bootstrap)
    topic_prefix: str = DEFAULT_PREFIX
    processor_port: int = Field(default=8741, ge=0, le=65535)
    processor_id: str = "processor-1"
    # Largest proposed action accepted. At most 3 MiB: a decision's stored record carries the
    # proposal up to twice (its action and security events) under the 8 MiB wire ceiling.
    max_record_bytes: int = Field(default=1024 * 1024, gt=0, le=MAX_PROPOSAL_BYTES)
    require_service_auth: bool = True
    checkpoint_every: int = Field(default=1000, gt=0)  # pending events that make a checkpoint due
    # The log whole-log checkpoints name in their origin (``<log_name>/p<partition>``).
    log_name: str = DEFAULT_LOG_NAME
    # tlog witnesses to cosign checkpoints: ``URL=VKEY-FILE`` entries, comma-separated; none by default.
    witnesses: str = ""
    checkpoint_interval_s: float = Field(default=DEFAULT_CHECKPOINT_INTERVAL_S, gt=0)  # max wait for coverage
    # Event ids remembered per ledger partition to drop repeats of re-processed inputs.
    ledger_dedup_window: int = Field(default=20_000, gt=0)
    # librdkafka ``debug`` contexts for the ledger stage's transactional producer (e.g. ``eos,broker``),
    # traced into the worker's log; empty (off) by default.
    ledger_kafka_debug: str = ""
    stall_after_s: float = Field(default=30.0, gt=0)  # lag and no commit this long: "up but not consuming"
    # One decision per action id (processors/replay.py): ids are remembered this long, and
    # proposals older than this (by proposed_at) are refused as possible replays.
    replay_window_s: float = Field(default=DEFAULT_REPLAY_WINDOW_S, gt=0, le=MAX_REPLAY_WINDOW_S)
    # How long a vanished worker (kill -9, lost host) holds its partitions before the group
    # hands them to the others; a restarted worker with the same id takes them back at once.
    processor_session_timeout_s: float = Field(default=10.0, ge=6.0, le=300.0)
    # Review webhooks: comma-separated URLs to POST review events to, and the HMAC secret.
    review_webhooks: str = ""
    review_webhook_secret: str = ""
    # How long the worker's producer waits to batch records into one request (librdkafka
    # ``linger.ms``). 0 sends each at once (lowest latency when idle); a millisecond or two
    # lets concurrent actions' records share produce requests (less broker CPU under load).
    publish_linger_ms: float = Field(default=0.0, ge=0.0, le=50.0)
    # How long the ledger stage's consumer lets the broker hold a fetch to fill it
    # (lockgate.kernel.fetch_batching): fewer requests for the broker, events chained up to
    # this much later; off the decision path. 0: answer on the first record.
    ledger_fetch_wait_ms: int = Field(default=DEFAULT_RECORDING_FETCH_WAIT_MS, ge=0, le=1000)

    @field_validator("log_name", mode="before")
    @classmethod
    def _log_name(cls, value: object) -> str:
        return check_log_name(str(value or "").strip() or DEFAULT_LOG_NAME)

    @property
    def processor_key(self) -> Path:
        return Home(self.home).processor_key

    @property
    def service_dir(self) -> Path:
        return Home(self.home).keys
