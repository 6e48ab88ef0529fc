"""The local stack on a real broker: smoke round trip, idempotent up, data kept over restarts."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from deploy.errors import PortInUse
from deploy.settings import StackSettings
from deploy.smoke import smoke
from deploy.stack import Stack
from schemas.codec import get_codec
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def test_avro_records_round_trip_through_the_broker(kafka_stack: Stack) -> None:
    result = smoke(50, kafka_stack.settings)
    assert result["produced"] == 50
    assert result["consumed"] == 50


def test_up_again_is_a_noop(kafka_stack: Stack) -> None:
    pid_before = kafka_stack.broker.process.pid()
    report = kafka_stack.up()
    assert report.started == []
    assert "kafka" in report.already_running
    assert report.topics_created == []
    assert kafka_stack.broker.process.pid() == pid_before


def test_status_reports_running_broker(kafka_stack: Stack) -> None:
    status = kafka_stack.status()
    kafka = next(c for c in status["components"] if c["name"] == "kafka")
    assert kafka["running"] is True
    assert kafka["address"] == kafka_stack.settings.bootstrap
    assert status["home"] == str(kafka_stack.settings.home)


def test_port_in_use_names_the_port_and_holder(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = StackSettings(home=tmp_path, kafka_port=port, controller_port=free_port(),
                                 start_processor=False, start_sink=False)
        with pytest.raises(PortInUse) as info:
            Stack(settings, progress=lambda _m: None).up()
    assert info.value.port == port
    assert str(port) in str(info.value)
    assert "python" in info.value.holder or "pid" in info.value.holder or "process" in info.value.holder


def test_down_then_up_keeps_topics_and_data(tmp_path: Path) -> None:
    settings = StackSettings(home=tmp_path / "home", kafka_port=free_port(),
                             controller_port=free_port(), topic_prefix="keep.",
                             start_processor=False, start_sink=False)
    stack = Stack(settings, progress=lambda _m: None)
    codec = get_codec()
    try:
        stack.up()
        topic = settings.topics.deadletter
        producer = Producer({"bootstrap.servers": settings.bootstrap})
        record = {"dead_letter_id": "kept", "recorded_at": 1, "source_topic": "t", "source_partition": 0,
                  "source_offset": 0, "stage": "test", "error_type": "E", "error": "e", "key": None,
                  "raw": b"\x00\x01"}
        producer.produce(topic, codec.encode("DeadLetter", record))
        assert producer.flush(30) == 0
        assert stack.down() == ["kafka"]
        assert not stack.broker.process.running()
        report = stack.up()
        assert report.started == ["kafka"]
        assert report.topics_created == []
        consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "keep",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 30
        got = None
        while got is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got = codec.decode_as("DeadLetter", msg.value() or b"")
        consumer.close()
        assert got == record
    finally:
        stack.down()


def test_topic_drift_is_reported_not_recreated(kafka_bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from lockgate.kernel.topic_admin import ensure_topics
    from schemas.topics import Topics

    topics = Topics(f"drift{uuid.uuid4().hex[:6]}.")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    wrong = NewTopic(topics.audit, num_partitions=2, replication_factor=1, config={"retention.ms": "60000"})
    admin.create_topics([wrong])[topics.audit].result(30)
    created, drifts = ensure_topics(kafka_bootstrap, topics)
    assert topics.audit not in created
    assert topics.actions in created
    found = {(d.topic, d.setting, d.expected, d.actual) for d in drifts}
    assert (topics.audit, "partitions", "4", "2") in found
    assert (topics.audit, "retention.ms", "-1", "60000") in found
    md = admin.list_topics(timeout=10).topics[topics.audit]
    assert len(md.partitions) == 2  # left as is: recreating a replay topic would destroy history
