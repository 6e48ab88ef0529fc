"""The scaled-out stack's shape, without starting anything: workers, cluster layout, replication."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.errors import ClusterLayoutMismatch
from deploy.kafka_broker import KafkaBroker
from deploy.settings import StackSettings
from deploy.stack import Stack
from lockgate.kernel.topic_admin import replication_for


@pytest.mark.parametrize(("brokers", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))])
def test_replication_follows_the_cluster_size(brokers: int, expected: tuple[int, int]) -> None:
    assert replication_for(brokers) == expected


def test_replication_of_no_broker_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one broker"):
        replication_for(0)


def test_each_worker_gets_its_own_id_and_port(tmp_path: Path) -> None:
    stack = Stack(StackSettings(home=tmp_path, processors=3, processor_port=18741))
    workers = [svc for svc in stack._services() if svc.worker]
    assert [w.name for w in workers] == ["processor", "processor-2", "processor-3"]
    stack.settings.paths.run.mkdir(parents=True)
    (stack.settings.paths.run / "processor-2.port").write_text("23456\n")
    env = stack._env(workers[1])
    assert env["LOCKGATE_PROCESSOR_ID"] == "processor-2" and env["LOCKGATE_PROCESSOR_PORT"] == "23456"
    assert stack._env(workers[0])["LOCKGATE_PROCESSOR_ID"] == "processor-1"
    assert stack._env(workers[0])["LOCKGATE_PROCESSOR_PORT"] == "18741"


def test_down_and_status_cover_workers_of_an_earlier_larger_up(tmp_path: Path) -> None:
    stack = Stack(StackSettings(home=tmp_path, processors=1))
    run = stack.settings.paths.run
    run.mkdir(parents=True)
    for name in ("processor-4.pid", "processor-2.pid", "processor-x.pid"):
        (run / name).write_text("1 0\n")  # pid 1 with a wrong start time: never "running"
    names = [svc.name for svc in stack._known_services()]
    assert names == ["witness", "processor", "processor-2", "processor-4", "sink"]
    status = [c["name"] for c in stack.status()["components"]]
    assert status == ["kafka", "witness", "processor", "processor-2", "processor-4", "sink"]


def test_a_cluster_keeps_its_layout_and_refuses_another_size(tmp_path: Path) -> None:
    settings = StackSettings(home=tmp_path, brokers=3, kafka_port=19092, controller_port=19093)
    broker = KafkaBroker(settings)
    assert [n.node_id for n in broker.nodes] == [1, 2, 3]
    assert broker.nodes[0].address == "127.0.0.1:19092"
    assert broker.bootstrap.split(",")[0] == "127.0.0.1:19092" and len(broker.bootstrap.split(",")) == 3
    settings.paths.ensure()
    broker._save_layout()
    again = KafkaBroker(StackSettings(home=tmp_path, kafka_port=19092, controller_port=19093))
    assert again.bootstrap == broker.bootstrap  # later runs use the formatted size and ports
    saved = json.loads(broker.layout_file.read_text())["nodes"]
    assert [n["id"] for n in saved] == [1, 2, 3]
    with pytest.raises(ClusterLayoutMismatch, match="formatted 3-node Kafka cluster, not 1"):
        KafkaBroker(StackSettings(home=tmp_path, brokers=1))


def test_cluster_nodes_replicate_internal_topics(tmp_path: Path) -> None:
    broker = KafkaBroker(StackSettings(home=tmp_path, brokers=3))
    broker.paths.kafka_dir.mkdir(parents=True)
    broker._write_config(broker.nodes[1])
    props = dict(line.split("=", 1) for line in broker.nodes[1].properties_file.read_text().splitlines()
                 if "=" in line and not line.startswith("#"))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"].count("@127.0.0.1:") == 3
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2" and props["min.insync.replicas"] == "2"
    assert broker.heap() == "320m"
