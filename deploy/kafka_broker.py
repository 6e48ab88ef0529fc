"""Apache Kafka 4.x in KRaft mode (broker + controller in one JVM), from Maven Central.

First start: Maven resolves ``deploy/pom.xml`` into a classpath (jars stay in ``~/.m2``; the
classpath file is cached under ``$LOCKGATE_HOME/kafka`` keyed by the pom's hash), a cluster
id is generated, ``server.properties`` written, and storage formatted with
``kafka.tools.StorageTool format --standalone -g``. Later starts reuse all of it, so topics
and data survive ``down``/``up``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from deploy.errors import BrokerUnavailable, JarResolutionFailed, ProcessFailed
from deploy.processes import ManagedProcess, check_port_free
from deploy.settings import StackSettings

__all__ = ["KafkaBroker"]

Progress = Callable[[str], None]


def _resource(name: str) -> Path:
    return Path(str(resources.files("deploy") / name))


class KafkaBroker:
    """The local single-node broker."""

    def __init__(self, settings: StackSettings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.progress: Progress = progress or (lambda msg: print(msg, file=sys.stderr))
        self.process = ManagedProcess("kafka", self.paths.pidfile("kafka"), self.paths.logfile("kafka"))

    @property
    def properties_file(self) -> Path:
        return self.paths.kafka_dir / "server.properties"

    def classpath(self) -> str:
        """Resolve (once) and return the broker classpath."""
        pom = _resource("pom.xml")
        digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
        cp_file = self.paths.kafka_dir / f"classpath-{digest}.txt"
        if cp_file.exists() and all(Path(p).exists() for p in cp_file.read_text().split(":")):
            return cp_file.read_text().strip()
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
        self.progress("  Kafka jars resolved")
        return cp_file.read_text().strip()

    def _write_config(self) -> None:
        s = self.settings
        data = self.paths.kafka_data
        props = f"""# Written by lockgate; edits are overwritten on `lockgate up`.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{s.controller_port}
listeners=PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{s.kafka_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
message.max.bytes=10485760
replica.fetch.max.bytes=10485760
"""
        self.properties_file.write_text(props)

    def _format(self, classpath: str) -> None:
        id_file = self.paths.kafka_dir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=") + "\n")
        if (self.paths.kafka_data / "meta.properties").exists():
            return
        self.progress("formatting Kafka storage (KRaft, standalone controller)...")
        result = subprocess.run(
            # "--cluster-id=ID": a base64url id may start with "-" and be taken for an option.
            ["java", "-cp", classpath, "kafka.tools.StorageTool", "format", "--standalone", "-g",
             f"--cluster-id={id_file.read_text().strip()}", "-c", str(self.properties_file)],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise ProcessFailed(f"kafka storage format failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> bool:
        """Start the broker unless it runs; wait for metadata. Return True if started now."""
        if self.process.running():
            return False
        check_port_free(self.settings.kafka_port)
        check_port_free(self.settings.controller_port)
        self.paths.ensure()
        self.paths.kafka_data.mkdir(parents=True, exist_ok=True)
        classpath = self.classpath()
        self._write_config()
        self._format(classpath)
        env = dict(os.environ)
        argv = [
            "java", f"-Xmx{self.settings.kafka_heap}", "-Xms128m", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.paths.logs}",
            f"-Dlog4j2.configurationFile={_resource('log4j2.xml')}",
            "-cp", classpath, "kafka.Kafka", str(self.properties_file),
        ]
        self.progress(f"starting Kafka broker on {self.settings.bootstrap} ...")
        self.process.start(argv, env)
        self.wait_ready()
        return True

    def wait_ready(self) -> None:
        """Block until the broker answers a metadata request, or raise."""
        from confluent_kafka.admin import AdminClient

        conf: dict[str, object] = {"bootstrap.servers": self.settings.bootstrap, "log_level": 0,
                                   "logger": _SilentLogger()}
        admin = AdminClient(conf)  # type: ignore[arg-type]
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            code = self.process.exited()
            if code is not None:
                raise ProcessFailed(
                    f"Kafka broker exited with status {code} during start-up; see "
                    f"{self.paths.logs}/kafka-server.log and {self.process.logfile}"
                )
            try:
                md = admin.list_topics(timeout=1.0)
                if md.brokers:
                    return
            except Exception:  # noqa: S112 - the broker is not answering yet
                continue
            time.sleep(0.2)
        raise BrokerUnavailable(
            f"Kafka broker did not answer a metadata request on {self.settings.bootstrap} within "
            f"{self.settings.start_timeout_s:.0f}s; see {self.paths.logs}/kafka-server.log"
        )

    def stop(self) -> bool:
        return self.process.stop(timeout_s=60.0)


class _SilentLogger:
    """librdkafka logger that drops connection-refused noise while the broker starts."""

    def log(self, *args: object, **kwargs: object) -> None:
        return None
