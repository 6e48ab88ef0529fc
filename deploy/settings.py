"""Settings of the local stack, read once from the environment into a frozen object."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lockgate.kernel.home import Home, default_home
from schemas.topics import DEFAULT_PREFIX, Topics

__all__ = ["StackSettings"]


class StackSettings(BaseSettings):
    """Where the local stack lives and which ports it takes.

    Every field maps to ``LOCKGATE_<FIELD>`` (see the README's table).
    """

    model_config = SettingsConfigDict(env_prefix="LOCKGATE_", frozen=True, extra="ignore")

    home: Path = Field(default_factory=default_home)
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int = Field(default=9093, ge=1, le=65535)
    api_port: int = Field(default=8740, ge=0, le=65535)
    processor_port: int = Field(default=8741, ge=0, le=65535)
    witness_port: int = Field(default=8742, ge=0, le=65535)
    topic_prefix: str = DEFAULT_PREFIX
    kafka_heap: str | None = None  # per broker JVM; None: 768m for one node, 320m each in a cluster
    # Kafka nodes (``lockgate up --brokers N``); None: as formatted under this home, else 1.
    brokers: int | None = Field(default=None, ge=1)
    processors: int = Field(default=1, ge=1)  # processor workers (``lockgate up --processors N``)
    start_timeout_s: float = 90.0
    start_processor: bool = True
    start_sink: bool = True
    start_witness: bool = False  # a tlog witness for the demo (`lockgate witness serve`); its own key

    @property
    def paths(self) -> Home:
        return Home(self.home)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)
