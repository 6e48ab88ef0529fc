"""Create topics idempotently and report drift.

Takes any catalogue with ``specs()`` (``schemas.topics.Topics`` is the one Lockgate has),
so the kernel knows nothing of the topic names.

An existing topic whose partition count or catalogued configs differ is reported, never
deleted or recreated: recreating a replay topic would destroy the audit history.

Replication follows the cluster (:func:`replication_for` of the brokers registered when a
topic is created): one broker, one replica; three or more, three replicas and
``min.insync.replicas`` 2, so with ``acks=all`` an acknowledged record is on two brokers
and one broker can die without losing it or stopping writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

__all__ = ["Catalogue", "TopicDrift", "create_if_missing", "ensure_topics", "replication_for", "wait_for_leaders",
           "wait_until_serving"]

MAX_REPLICAS = 3
MIN_INSYNC = 2


def replication_for(brokers: int) -> tuple[int, int]:
    """``(replication factor, min.insync.replicas)`` for a cluster of ``brokers`` nodes.

    ``min(3, brokers)`` replicas; two must acknowledge a write once there are three (one
    node may fail), else one (two replicas of a two-node cluster still survive a node loss,
    but demanding both would stop writes when one node is down).
    """
    if brokers < 1:
        raise ValueError(f"a cluster has at least one broker, got {brokers}")
    replicas = min(MAX_REPLICAS, brokers)
    return replicas, MIN_INSYNC if replicas >= MAX_REPLICAS else 1


def _replicated(configs: Mapping[str, str], brokers: int) -> tuple[int, dict[str, str]]:
    """Replication factor and configs of a topic created on a cluster of ``brokers``."""
    replicas, min_isr = replication_for(brokers)
    out = dict(configs)
    if replicas > 1:
        out.setdefault("min.insync.replicas", str(min_isr))
    return replicas, out


class TopicSpec(Protocol):
    """One topic's wanted shape."""

    @property
    def partitions(self) -> int: ...

    def configs(self) -> Mapping[str, str]: ...


class Catalogue(Protocol):
    """A set of topics to create: ``specs()`` yields ``(name, spec)`` pairs."""

    def specs(self) -> Iterable[tuple[str, TopicSpec]]: ...


@dataclass(frozen=True)
class TopicDrift:
    """One difference between a live topic and the catalogue."""

    topic: str
    setting: str
    expected: str
    actual: str

    def __str__(self) -> str:
        return (f"topic {self.topic}: {self.setting} is {self.actual}, catalogue says {self.expected} "
                "(left as is; change it with kafka-configs or adjust the catalogue)")


def ensure_topics(bootstrap: str, topics: Catalogue, timeout_s: float = 30.0) -> tuple[list[str], list[TopicDrift]]:
    """Create missing topics; return (created names, drifts of existing ones)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=timeout_s)
    existing, brokers = md.topics, len(md.brokers)
    wanted = list(topics.specs())
    new = []
    for name, spec in wanted:
        if name not in existing:
            replicas, configs = _replicated(spec.configs(), brokers)
            new.append(NewTopic(name, num_partitions=spec.partitions, replication_factor=replicas, config=configs))
    created = _create(admin, new, timeout_s)
    if created:
        wait_for_leaders(admin, created, timeout_s)
        wait_until_serving(bootstrap, admin, created, timeout_s)
    drifts: list[TopicDrift] = []
    # Judge drift on fresh metadata: a topic may have appeared since the first listing.
    existing = admin.list_topics(timeout=timeout_s).topics
    present = [(n, s) for n, s in wanted if n in existing and n not in created]
    if present:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n, _ in present]
        described = admin.describe_configs(resources, request_timeout=timeout_s)
        by_name = {res.name: fut for res, fut in described.items()}
        replicas, _ = replication_for(brokers)
        for name, spec in present:
            parts = len(existing[name].partitions)
            if parts != spec.partitions:
                drifts.append(TopicDrift(name, "partitions", str(spec.partitions), str(parts)))
            live_replicas = min((len(p.replicas) for p in existing[name].partitions.values()), default=0)
            if live_replicas < replicas:
                drifts.append(TopicDrift(name, "replication factor", str(replicas), str(live_replicas)))
            live = by_name[name].result(timeout=timeout_s)
            for key, value in _replicated(spec.configs(), brokers)[1].items():
                actual = live[key].value if key in live else "<unset>"
                if actual != value:
                    drifts.append(TopicDrift(name, key, value, str(actual)))
    return created, drifts


def wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Return once every partition of ``names`` has a leader (new topics elect one shortly)."""
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while pending and time.monotonic() < deadline:
        md = admin.list_topics(timeout=timeout_s).topics
        pending = {
            n for n in pending
            if n not in md or md[n].error is not None
            or any(p.leader < 0 for p in md[n].partitions.values())
        }
        if pending:
            time.sleep(0.05)


def wait_until_serving(bootstrap: str, admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Return once every partition of ``names`` answers an offsets request.

    A leader in the metadata is not yet a leader that serves: on a busy broker a new
    partition answers NOT_LEADER_FOR_PARTITION for a while longer (over a second was
    seen), and a client that starts at once — a Guard reading its reply partition's end
    — fails. "Created" here means usable.
    """
    md = admin.list_topics(timeout=timeout_s).topics
    pending = [TopicPartition(n, p) for n in names if n in md for p in md[n].partitions]
    if not pending:
        return
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "lockgate-topic-admin"})
    deadline = time.monotonic() + timeout_s
    try:
        while pending and time.monotonic() < deadline:
            tp = pending[0]
            try:
                consumer.get_watermark_offsets(tp, timeout=max(0.5, deadline - time.monotonic()))
                pending.pop(0)
            except KafkaException:
                time.sleep(0.05)
    finally:
        consumer.close()


def create_if_missing(bootstrap: str, wanted: dict[str, tuple[int, dict[str, str]]],
                      timeout_s: float = 30.0) -> list[str]:
    """Create each ``name: (partitions, configs)`` that does not exist; wait for its leaders.

    Used for Faust's internal topics: Faust creates them itself but joins its group at
    once, and on a fresh cluster its assignor can run before the new topics are in the
    metadata, which leaves the worker without partitions.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=timeout_s)
    new = []
    for name, (parts, configs) in wanted.items():
        if name not in md.topics:
            replicas, replicated = _replicated(configs, len(md.brokers))
            new.append(NewTopic(name, num_partitions=parts, replication_factor=replicas, config=replicated))
    created = _create(admin, new, timeout_s)
    wait_for_leaders(admin, list(wanted), timeout_s)
    wait_until_serving(bootstrap, admin, created, timeout_s)
    return created


def _create(admin: AdminClient, new: list[NewTopic], timeout_s: float) -> list[str]:
    """Create ``new``; a topic that appeared meanwhile is not an error. Returns those created."""
    created: list[str] = []
    for name, fut in (admin.create_topics(new, operation_timeout=timeout_s).items() if new else []):
        try:
            fut.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created
