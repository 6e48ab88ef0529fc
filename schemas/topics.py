"""The topic catalogue: every topic Lockgate uses, in one place.

Names are ``<prefix><name>``; the prefix (``LOCKGATE_TOPIC_PREFIX``, default ``lockgate.``)
lets several stacks or test runs share one cluster. Replay topics (actions, verdicts,
outcomes, audit-intake, audit, checkpoints) keep records forever by default so history can be
reconstructed and re-verified; ``policies`` is compacted (latest version per tenant/policy);
the dead-letter topic keeps raw records for 30 days; ``decisions`` (the decide stage's record
of what it decided for which input, so a re-delivered input is never decided twice, and the
ledger stage's input for the decision's audit events) is kept forever like ``audit-intake``:
the ledger must be able to chain a decision however long it was down. ``decisions`` has as
many partitions as ``actions``: a decision lives in its input's partition. ``reviews`` is the log
of every review (proposal, pending verdict, reviewers' votes, closure; keyed by review id,
:mod:`trust.reviews`): it is the pending-review state itself, rebuilt by reading it, so it
keeps records forever and stamps them with the broker's clock (``LogAppendTime``), which is
the time a vote is judged at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CATALOGUE", "DEAD_LETTER_MAX_BYTES", "DEFAULT_PREFIX", "TOPIC_MAX_MESSAGE_BYTES",
           "TopicSpec", "Topics"]

DEFAULT_PREFIX = "lockgate."
# A dead letter carries the whole raw record plus the error, so its topic accepts more than
# the 1 MiB default proposal limit (see LOCKGATE_MAX_RECORD_BYTES).
DEAD_LETTER_MAX_BYTES = 8 * 1024 * 1024
# Topic-level max.message.bytes: the record ceiling plus room for the Kafka record overhead.
TOPIC_MAX_MESSAGE_BYTES = DEAD_LETTER_MAX_BYTES + 65536
FOREVER = -1
THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its short name, shape, retention, and the schema its values carry."""

    name: str
    partitions: int
    cleanup_policy: Literal["delete", "compact"]
    retention_ms: int
    schema: str
    purpose: str

    max_message_bytes: int | None = None
    timestamp_type: Literal["CreateTime", "LogAppendTime"] | None = None

    def configs(self) -> dict[str, str]:
        """Topic-level configs the broker must hold for this topic."""
        out: dict[str, str] = {"cleanup.policy": self.cleanup_policy}
        if self.cleanup_policy == "delete":
            out["retention.ms"] = str(self.retention_ms)
        if self.max_message_bytes is not None:
            out["max.message.bytes"] = str(self.max_message_bytes)
        if self.timestamp_type is not None:
            out["message.timestamp.type"] = self.timestamp_type
        return out


CATALOGUE: tuple[TopicSpec, ...] = (
    TopicSpec("actions", 4, "delete", FOREVER, "ProposedAction",
              "proposed actions from the SDK, keyed by action id", TOPIC_MAX_MESSAGE_BYTES),
    TopicSpec("verdicts", 8, "delete", FOREVER, "Verdict",
              "signed verdicts, written to the requester's reply partition"),
    TopicSpec("outcomes", 4, "delete", FOREVER, "ActionOutcome",
              "what happened after the verdict, keyed by action id", TOPIC_MAX_MESSAGE_BYTES),
    TopicSpec("policies", 1, "compact", FOREVER, "PolicySet",
              "policy versions, keyed by tenant/name (compacted)"),
    TopicSpec("audit-intake", 4, "delete", FOREVER, "AuditEvent",
              "unchained audit events from every stage, keyed by action id", TOPIC_MAX_MESSAGE_BYTES),
    TopicSpec("audit", 4, "delete", FOREVER, "AuditEvent",
              "the ledger: audit events hash-chained per partition", TOPIC_MAX_MESSAGE_BYTES),
    TopicSpec("checkpoints", 1, "delete", FOREVER, "Checkpoint",
              "signed checkpoints of ledger chain heads"),
    TopicSpec("deadletter", 1, "delete", THIRTY_DAYS_MS, "DeadLetter",
              "records that could not be processed, raw, with the error", TOPIC_MAX_MESSAGE_BYTES),
    TopicSpec("decisions", 4, "delete", FOREVER, "DecisionRecord",
              "each decided input's verdict and audit events, stored before the verdict is sent; "
              "partition = the input's", TOPIC_MAX_MESSAGE_BYTES),
    TopicSpec("reviews", 4, "delete", FOREVER, "ReviewVote",
              "reviews: proposals and verdicts under review, reviewers' signed votes, closures; keyed by review id",
              TOPIC_MAX_MESSAGE_BYTES, "LogAppendTime"),
)


@dataclass(frozen=True)
class Topics:
    """Full topic names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def name(self, short: str) -> str:
        if short not in {t.name for t in CATALOGUE}:
            raise KeyError(f"no topic {short!r} in the catalogue")
        return f"{self.prefix}{short}"

    @property
    def actions(self) -> str:
        return self.name("actions")

    @property
    def verdicts(self) -> str:
        return self.name("verdicts")

    @property
    def outcomes(self) -> str:
        return self.name("outcomes")

    @property
    def policies(self) -> str:
        return self.name("policies")

    @property
    def audit_intake(self) -> str:
        return self.name("audit-intake")

    @property
    def audit(self) -> str:
        return self.name("audit")

    @property
    def checkpoints(self) -> str:
        return self.name("checkpoints")

    @property
    def deadletter(self) -> str:
        return self.name("deadletter")

    @property
    def decisions(self) -> str:
        return self.name("decisions")

    @property
    def reviews(self) -> str:
        return self.name("reviews")

    def specs(self) -> list[tuple[str, TopicSpec]]:
        return [(self.name(t.name), t) for t in CATALOGUE]
