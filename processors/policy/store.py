"""Publishing and listing policy versions on the compacted policies topic.

Key = tenant (one active policy set per tenant; applying a policy replaces the tenant's
previous one). Versions are monotonic per tenant: ``publish`` reads the current version
and writes ``current + 1``. Every publish also writes a ``policy`` audit event to
``audit-intake`` so that policy changes are part of the hash-chained ledger.

Size: both records must fit a Kafka message (librdkafka's default ``message.max.bytes``
is 1,000,000; the audit event carries the whole policy record). Validation already caps
the source at 256 KiB (``processors.policy.limits``), far below; :func:`publish_policy`
checks the encoded record against :data:`MAX_POLICY_RECORD_BYTES` before contacting
Kafka anyway, and turns any refusal by the client into a :class:`PolicyError`, so
``lockgate policy apply`` never ends in a raw client traceback.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from lockgate.kernel.kafka_offsets import watermarks
from schemas.codec import get_codec
from schemas.errors import CodecError
from schemas.records import AuditKind, audit_event
from schemas.topics import Topics

__all__ = ["MAX_POLICY_RECORD_BYTES", "PublishedPolicy", "current_policies", "publish_policy"]

#: Largest encoded PolicySet we publish: room under a 1,000,000-byte Kafka message for the
#: audit event that wraps it.
MAX_POLICY_RECORD_BYTES = 900_000


@dataclass(frozen=True)
class PublishedPolicy:
    tenant: str
    name: str
    version: int
    rules: int
    published_at_us: int
    published_by: str
    source_sha256: str


def current_policies(bootstrap: str, topics: Topics, timeout_s: float = 10.0) -> dict[str, dict[str, Any]]:
    """The latest PolicySet record per tenant, read from the start of the policies topic."""
    codec = get_codec()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "lockgate-policy-reader",
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topics.policies, timeout=timeout_s).topics[topics.policies]
        latest: dict[str, dict[str, Any]] = {}
        for p in meta.partitions:
            tp = TopicPartition(topics.policies, p)
            low, high = watermarks(consumer, tp, timeout_s)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topics.policies, p, low)])
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                if msg.value() is not None:
                    try:
                        rec = codec.decode_as("PolicySet", msg.value() or b"")
                        latest[rec["tenant"]] = rec
                    except CodecError:
                        pass
                if (msg.offset() or 0) >= high - 1:
                    break
        return latest
    except KafkaException as exc:
        from processors.errors import PolicyError

        raise PolicyError(f"cannot read policies from Kafka at {bootstrap}: {exc}; is the stack up?") from exc
    finally:
        consumer.close()


def publish_policy(record: dict[str, Any], bootstrap: str, topics: Topics,
                   published_by: str | None = None, timeout_s: float = 10.0) -> PublishedPolicy:
    """Publish ``record`` (a validated PolicySet) as the tenant's next version.

    Raises :class:`~processors.errors.PolicyTooLarge` (before contacting Kafka) if the
    encoded record is over :data:`MAX_POLICY_RECORD_BYTES`, and
    :class:`~processors.errors.PolicyError` if Kafka cannot be read or refuses the records.
    """
    from processors.errors import PolicyError, PolicyTooLarge

    codec = get_codec()
    size = len(codec.encode("PolicySet", record))
    if size > MAX_POLICY_RECORD_BYTES:
        raise PolicyTooLarge(
            f"policyset {record['tenant']}/{record['name']}",
            0,
            f"the encoded policy is {size:,} bytes; at most {MAX_POLICY_RECORD_BYTES:,} fit a Kafka "
            "message with its audit event. Nothing was published. Make the policy smaller",
        )
    tenant = record["tenant"]
    previous = current_policies(bootstrap, topics, timeout_s).get(tenant)
    rec = dict(record)
    rec["version"] = (previous["version"] if previous else 0) + 1
    rec["published_at"] = time.time_ns() // 1000
    rec["published_by"] = published_by or getpass.getuser()
    value = codec.encode("PolicySet", rec)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    event = audit_event(AuditKind.POLICY, tenant, None, value, detail=f"policy {rec['name']} v{rec['version']} applied")
    try:
        producer.produce(topics.policies, value, key=tenant.encode())
        producer.produce(topics.audit_intake, codec.encode("AuditEvent", event), key=f"policy:{tenant}".encode())
    except (KafkaException, BufferError) as exc:
        raise PolicyError(
            f"Kafka refused policy {rec['name']} ({len(value):,} bytes): {exc}. If the message is too "
            "large, make the policy smaller; otherwise check the broker and retry (`lockgate policy list` "
            "shows the version in force)"
        ) from exc
    if producer.flush(timeout_s):
        raise PolicyError(f"policy {rec['name']} was not confirmed by Kafka within {timeout_s}s; retry")
    return PublishedPolicy(tenant, rec["name"], rec["version"], len(rec["rules"]), rec["published_at"],
                           rec["published_by"], rec["source_sha256"])
