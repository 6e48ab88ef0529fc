"""A fenced sink consumer (FENCED_INSTANCE_ID, fatal in librdkafka) is replaced by the sink itself.

Another consumer joins the sink's group with the sink's static ``group.instance.id``: the
broker fences the sink's member, exactly as it may after a broker restart. The sink must
close the dead consumer, re-join and land every record exactly once, without a restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from schemas.topics import Topics
from tests.integration.conftest import wait_for
from tests.integration.sink_process import audit_records, produce, start_sink

pytestmark = pytest.mark.integration


def test_fenced_sink_consumer_rejoins_and_lands_everything_once(
        kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    sink = start_sink(kafka_bootstrap, topics.prefix, tmp_path, tmp_path, {"LOCKGATE_SINK_BATCH_ROWS": "500"})
    try:
        first, first_ids = audit_records(4_000)
        produce(kafka_bootstrap, topics.audit, first)
        wait_for(lambda: sink.stored() >= 500, 60, "the sink ingesting")

        assigned: list[Any] = []
        intruder = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": sink.env["LOCKGATE_SINK_GROUP_ID"],
                             "group.instance.id": sink.env["LOCKGATE_SINK_INSTANCE_ID"],
                             "enable.auto.commit": False, "auto.offset.reset": "latest"})
        try:
            intruder.subscribe([topics.audit, topics.checkpoints], on_assign=lambda _c, ps: assigned.extend(ps))

            def intruder_assigned() -> bool:
                intruder.poll(0.2)
                return bool(assigned)

            wait_for(intruder_assigned, 30, "the intruder taking the partitions")
        finally:
            intruder.close()  # a static member does not leave: the group still waits for this instance id

        second, second_ids = audit_records(1_000)
        produce(kafka_bootstrap, topics.audit, second)
        total = len(first) + len(second)
        wait_for(lambda: sink.stored() >= total, 60, f"all {total} rows stored; sink log:\n{sink.tail()}")
        ids = sink.event_ids()
        assert len(ids) == total, f"{len(ids) - len(set(ids))} duplicates landed"
        assert set(ids) == first_ids | second_ids
        health = sink.health()
        assert health["consumer_restarts"] >= 1
        assert "fenced" in (health["last_consumer_error"] or "").lower()
        assert 'lockgate_sink_consumer_restarts_total{reason="fatal"}' in sink.metrics()
        assert "re-joining group" in sink.tail()
    finally:
        sink.stop()
