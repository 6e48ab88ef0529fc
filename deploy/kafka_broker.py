"""Apache Kafka 4.x in KRaft mode from Maven Central: one node, or a cluster of several on this machine.

First start: Maven resolves ``deploy/pom.xml`` into a classpath (jars stay in ``~/.m2``; the
classpath file is cached under ``$LOCKGATE_HOME/kafka`` keyed by the pom's hash, and shared
through ``~/.m2/lockgate/`` so that a fresh home skips Maven while every jar it names is
there), a cluster id is generated, each node's ``server.properties`` written, and its
storage formatted with ``kafka.tools.StorageTool format`` (the nodes of a cluster in
parallel). Later starts reuse all of it, so topics and data survive ``down``/``up``.

**One node** (the default): broker and controller in one JVM on ``LOCKGATE_KAFKA_PORT`` /
``LOCKGATE_CONTROLLER_PORT``, a standalone controller quorum, every internal topic with one
replica.

**A cluster** (``lockgate up --brokers 3``): N JVMs, each broker *and* controller, with a
static quorum of all N controllers. Node 1 keeps the two ports above; the other nodes get
free ports when the cluster is first formatted, and the layout (node id → ports) is kept in
``$LOCKGATE_HOME/kafka/cluster.json``, because a formatted cluster must keep its nodes'
addresses. Internal topics (consumer offsets, transaction state) and the catalogue's topics
get ``min(3, N)`` replicas and ``min.insync.replicas`` 2 once there are 3 replicas
(:func:`lockgate.kernel.topic_admin.replication_for`), so one node can die without losing an
acknowledged record or stopping writes. Each JVM's heap is ``LOCKGATE_KAFKA_HEAP`` (default
768m for one node, 320m per node in a cluster). A node that dies is noticed within
``broker.session.timeout.ms`` (3 s here, 9 s in Kafka's defaults) and its partitions' leadership
moves to an in-sync replica.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from deploy.errors import BrokerUnavailable, ClusterLayoutMismatch, JarResolutionFailed, ProcessFailed
from deploy.processes import ManagedProcess, check_port_free, free_port
from deploy.settings import StackSettings
from lockgate.kernel.topic_admin import replication_for

__all__ = ["KafkaBroker", "KafkaNode"]

Progress = Callable[[str], None]


def _resource(name: str) -> Path:
    return Path(str(resources.files("deploy") / name))


@dataclass(frozen=True)
class KafkaNode:
    """One JVM of the local cluster: its id, ports, data directory and process."""

    node_id: int
    port: int
    controller_port: int
    data: Path
    config_dir: Path
    process: ManagedProcess

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def properties_file(self) -> Path:
        return self.config_dir / ("server.properties" if self.node_id == 1 else f"server-{self.node_id}.properties")


class KafkaBroker:
    """The local broker: one node, or a cluster of ``LOCKGATE_BROKERS`` nodes on this machine.

    ``process`` is node 1's (the one node of a single-node stack).
    """

    def __init__(self, settings: StackSettings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.progress: Progress = progress or (lambda msg: print(msg, file=sys.stderr))
        self.nodes = self._layout()
        self.process = self.nodes[0].process

    # -- layout -----------------------------------------------------------------------

    @property
    def layout_file(self) -> Path:
        return self.paths.kafka_dir / "cluster.json"

    def _formatted_size(self) -> int | None:
        """How many nodes the formatted cluster under this home has (``None``: not formatted)."""
        if self.layout_file.exists():
            return len(json.loads(self.layout_file.read_text())["nodes"])
        if (self.paths.kafka_data / "meta.properties").exists():
            return 1
        return None

    def _layout(self) -> list[KafkaNode]:
        s = self.settings
        formatted = self._formatted_size()
        size = s.brokers if s.brokers is not None else (formatted or 1)
        if formatted is not None and formatted != size:
            raise ClusterLayoutMismatch(
                f"{self.paths.kafka_dir} holds a formatted {formatted}-node Kafka cluster, not {size}; "
                f"run with --brokers {formatted}, or use another LOCKGATE_HOME for a {size}-node cluster "
                "(the data of a formatted cluster is never reshaped)")
        ports: dict[int, tuple[int, int]] = {1: (s.kafka_port, s.controller_port)}
        if self.layout_file.exists():
            for entry in json.loads(self.layout_file.read_text())["nodes"]:
                if entry["id"] != 1:
                    ports[entry["id"]] = (entry["port"], entry["controller_port"])
        else:
            for node_id in range(2, size + 1):
                ports[node_id] = (free_port(), free_port())
        nodes = []
        for node_id in range(1, size + 1):
            name = "kafka" if node_id == 1 else f"kafka-{node_id}"
            data = self.paths.kafka_data if node_id == 1 else self.paths.kafka_dir / f"data-{node_id}"
            nodes.append(KafkaNode(node_id, *ports[node_id], data, self.paths.kafka_dir,
                                   ManagedProcess(name, self.paths.pidfile(name), self.paths.logfile(name))))
        return nodes

    def _save_layout(self) -> None:
        if len(self.nodes) == 1 or self.layout_file.exists():
            return
        nodes = [{"id": n.node_id, "port": n.port, "controller_port": n.controller_port} for n in self.nodes]
        self.layout_file.write_text(json.dumps({"nodes": nodes}, indent=2) + "\n")

    @property
    def bootstrap(self) -> str:
        """Every node's address: clients find the cluster through any node that is up."""
        return ",".join(n.address for n in self.nodes)

    @property
    def properties_file(self) -> Path:
        return self.nodes[0].properties_file

    def node_logs(self, node: KafkaNode) -> Path:
        return self.paths.logs if node.node_id == 1 else self.paths.logs / f"kafka-{node.node_id}"

    def classpath(self) -> str:
        """Resolve (once) and return the broker classpath."""
        pom = _resource("pom.xml")
        digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
        cp_file = self.paths.kafka_dir / f"classpath-{digest}.txt"
        shared = Path.home() / ".m2" / "lockgate" / f"kafka-classpath-{digest}.txt"
        for cached in (cp_file, shared):
            if cached.exists() and all(Path(p).exists() for p in cached.read_text().strip().split(":")):
                if cached is shared:
                    cp_file.write_text(cached.read_text())
                return cached.read_text().strip()
        mvn = shutil.which("mvn")
        if mvn is None:
            raise JarResolutionFailed("Maven (mvn) is not on PATH; install Maven 3.8+ and retry")
        self.progress("resolving Apache Kafka jars from Maven Central (first run only; about a minute)...")
        tmp = cp_file.with_suffix(".tmp")
        cmd = [mvn, "-B", "--no-transfer-progress", "-f", str(pom),
               "dependency:build-classpath", f"-Dmdep.outputFile={tmp}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            tail = [*tail[-30:], line.rstrip()]
            if "Downloading" in line or "Downloaded" in line or "BUILD" in line:
                self.progress(f"  mvn: {line.strip()[:120]}")
        if proc.wait() != 0 or not tmp.exists():
            raise JarResolutionFailed(
                "Maven could not resolve org.apache.kafka:kafka_2.13; check access to Maven "
                "Central (or a mirror in ~/.m2/settings.xml). Last output:\n" + "\n".join(tail)
            )
        tmp.replace(cp_file)
        try:
            shared.parent.mkdir(parents=True, exist_ok=True)
            shared.write_text(cp_file.read_text())
        except OSError:
            pass  # only a shortcut for the next fresh home
        self.progress("  Kafka jars resolved")
        return cp_file.read_text().strip()

    def _write_config(self, node: KafkaNode) -> None:
        n = len(self.nodes)
        replicas, min_isr = replication_for(n)
        if n == 1:
            quorum = f"controller.quorum.bootstrap.servers=127.0.0.1:{node.controller_port}"
        else:
            quorum = "controller.quorum.voters=" + ",".join(
                f"{m.node_id}@127.0.0.1:{m.controller_port}" for m in self.nodes)
        props = f"""# Written by lockgate; edits are overwritten on `lockgate up`.
process.roles=broker,controller
node.id={node.node_id}
{quorum}
listeners=PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={node.data}
num.partitions=1
auto.create.topics.enable=false
default.replication.factor={replicas}
min.insync.replicas={min_isr}
unclean.leader.election.enable=false
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=8
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={min_isr}
group.initial.rebalance.delay.ms=0
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms={9000 if n == 1 else 3000}
log.retention.hours=-1
message.max.bytes=10485760
replica.fetch.max.bytes=10485760
"""
        node.properties_file.write_text(props)

    def _cluster_id(self) -> str:
        id_file = self.paths.kafka_dir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=") + "\n")
        return id_file.read_text().strip()

    def _format(self, classpath: str, cluster_id: str, node: KafkaNode) -> None:
        if (node.data / "meta.properties").exists():
            return
        single = len(self.nodes) == 1
        self.progress(f"formatting Kafka storage of node {node.node_id} (KRaft, "
                      f"{'standalone controller' if single else f'{len(self.nodes)}-voter quorum'})...")
        # "--cluster-id=ID": a base64url id may start with "-" and be taken for an option.
        argv = ["java", "-cp", classpath, "kafka.tools.StorageTool", "format",
                *(["--standalone"] if single else []), "-g",
                f"--cluster-id={cluster_id}", "-c", str(node.properties_file)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ProcessFailed(f"kafka storage format of node {node.node_id} failed:\n"
                                f"{result.stdout}\n{result.stderr}")

    def heap(self) -> str:
        return self.settings.kafka_heap or ("768m" if len(self.nodes) == 1 else "320m")

    def start(self) -> bool:
        """Start every node that is not running; wait for metadata. True if any started now."""
        down = [n for n in self.nodes if not n.process.running()]
        if not down:
            return False
        for node in down:
            check_port_free(node.port)
            check_port_free(node.controller_port)
        self.paths.ensure()
        classpath = self.classpath()
        self._save_layout()
        cluster_id = self._cluster_id()
        for node in down:
            node.data.mkdir(parents=True, exist_ok=True)
            self._write_config(node)
        with ThreadPoolExecutor(len(down)) as pool:  # one JVM each: start-up dominates, so in parallel
            list(pool.map(lambda n: self._format(classpath, cluster_id, n), down))
        for node in down:
            self.start_node(node, classpath)
        self.wait_ready()
        return True

    def start_node(self, node: KafkaNode, classpath: str | None = None) -> None:
        """Start one node's JVM (configured and formatted already); does not wait."""
        logs = self.node_logs(node)
        logs.mkdir(parents=True, exist_ok=True)
        argv = [
            "java", f"-Xmx{self.heap()}", "-Xms128m", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={logs}",
            f"-Dlog4j2.configurationFile={_resource('log4j2.xml')}",
            "-cp", classpath or self.classpath(), "kafka.Kafka", str(node.properties_file),
        ]
        self.progress(f"starting Kafka node {node.node_id} on {node.address} ...")
        node.process.start(argv, dict(os.environ))

    def wait_ready(self) -> None:
        """Block until every node is registered with the controller and answers metadata, or raise."""
        from confluent_kafka.admin import AdminClient

        conf: dict[str, object] = {"bootstrap.servers": self.bootstrap, "log_level": 0,
                                   "logger": _SilentLogger()}
        admin = AdminClient(conf)  # type: ignore[arg-type]
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            for node in self.nodes:
                code = node.process.exited()
                if code is not None:
                    raise ProcessFailed(
                        f"Kafka node {node.node_id} exited with status {code} during start-up; see "
                        f"{self.node_logs(node)}/kafka-server.log and {node.process.logfile}"
                    )
            try:
                md = admin.list_topics(timeout=1.0)
                if len(md.brokers) >= len(self.nodes):
                    return
            except Exception:  # noqa: S112 - the broker is not answering yet
                continue
            time.sleep(0.2)
        raise BrokerUnavailable(
            f"Kafka ({len(self.nodes)} node(s)) did not answer a metadata request on {self.bootstrap} with "
            f"every node registered within {self.settings.start_timeout_s:.0f}s; see {self.paths.logs}/kafka-server.log"
        )

    def stop(self) -> bool:
        """Stop every node; True if any was running."""
        if len(self.nodes) == 1:
            return self.process.stop(timeout_s=60.0)
        # All at once: a node stopped after the quorum lost its majority would wait for a
        # controller that no longer answers before its controlled shutdown gives up.
        results: list[bool] = []
        threads = [threading.Thread(target=lambda n=node: results.append(n.process.stop(timeout_s=60.0)))
                   for node in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return any(results)


class _SilentLogger:
    """librdkafka logger that drops connection-refused noise while the broker starts."""

    def log(self, *args: object, **kwargs: object) -> None:
        return None
