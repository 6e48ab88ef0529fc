"""``lockgate up`` / ``down`` / ``status``: the local stack as one unit.

``up`` starts, in order, the broker (one node, or ``--brokers N`` nodes: see
:mod:`deploy.kafka_broker`), then creates the catalogue's topics, then (when
``LOCKGATE_START_WITNESS`` is set) a tlog witness, then the processor workers and the sink
(when those components are installed), each in the background with its
own pid file and log under ``$LOCKGATE_HOME``. Each step is a no-op when already done, so
``up`` can be run any number of times. ``down`` stops them in reverse order (SIGTERM, wait,
then SIGKILL) and leaves all data in place.

**Workers.** ``--processors N`` (``LOCKGATE_PROCESSORS``) runs N processor workers in one
consumer group; they share the partitions of ``actions``, ``outcomes`` and
``audit-intake``. Worker *i* is ``processor`` (i = 1) or ``processor-<i>``: processor id
``processor-<i>`` (its static group membership and ledger transactional id), health port
``LOCKGATE_PROCESSOR_PORT`` for the first and a free port for the others (kept in
``run/<name>.port``). ``down`` and ``status`` cover every worker that has a pid file, also
those of an earlier ``up`` with a larger N.
"""

from __future__ import annotations

import os
import re
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deploy.errors import ProcessFailed
from deploy.health import consumer_health
from deploy.kafka_broker import KafkaBroker
from deploy.processes import ManagedProcess, check_port_free, free_port
from deploy.settings import StackSettings
from lockgate.kernel.topic_admin import TopicDrift, ensure_topics

__all__ = ["ComponentStatus", "Stack", "UpReport"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    pid: int | None
    log: str
    address: str | None
    # What a running component says about its consumer (``deploy.health``): e.g.
    # {"state": "stalled", ...} is a component that is up but not consuming.
    health: dict[str, Any] | None = None


@dataclass(frozen=True)
class UpReport:
    started: list[str]
    already_running: list[str]
    topics_created: list[str]
    drifts: list[TopicDrift]


@dataclass(frozen=True)
class _Service:
    """A Python stack process (processor or sink) started with the current interpreter."""

    name: str
    module: str
    port_attr: str
    health_path: str
    worker: int = 0  # processor workers: 1..N (each its own process, id and port)


_WITNESS = _Service("witness", "witness", "witness_port", "/healthz")  # optional; before the log
_PROCESSOR = _Service("processor", "processors.worker", "processor_port", "/healthz/consumer")
_SINK = _Service("sink", "sinks", "api_port", "/healthz")
_WORKER_NAME = re.compile(r"^processor(?:-(\d+))?$")


def _worker(i: int) -> _Service:
    return _Service("processor" if i == 1 else f"processor-{i}", _PROCESSOR.module, _PROCESSOR.port_attr,
                    _PROCESSOR.health_path, worker=i)


def witness_spec(settings: StackSettings) -> str:
    """``LOCKGATE_WITNESSES`` for the stack's own witness: its local URL and its verifier key file.

    ``up`` hands this to every processor worker when it starts a witness (unless
    ``LOCKGATE_WITNESSES`` is already set, which then wins), so the demo's checkpoints are
    cosigned with no further set-up; ``verify --witness-key`` takes the same key file.
    """
    return f"http://127.0.0.1:{settings.witness_port}={settings.paths.witness_vkey}"


class Stack:
    """The local stack under one ``LOCKGATE_HOME``."""

    def __init__(self, settings: StackSettings | None = None, progress: Progress | None = None,
                 probe: Callable[[StackSettings], float] | None = None) -> None:
        """``probe``, when given, is how ``up`` proves the processor decides (it returns the
        seconds a probe action took to get a verdict); the CLI passes a Guard-based one
        (:mod:`lockgate.cli.probe`), since the stack itself knows no SDK."""
        self.settings = settings or StackSettings()
        self.progress: Progress = progress or (lambda m: print(m, file=sys.stderr))
        self.probe = probe
        self.broker = KafkaBroker(self.settings, self.progress)

    def _process(self, name: str) -> ManagedProcess:
        p = self.settings.paths
        return ManagedProcess(name, p.pidfile(name), p.logfile(name))

    def _services(self) -> list[_Service]:
        """Every component ``up`` may start, in start order (the workers 1..N)."""
        return [_WITNESS, *(_worker(i) for i in range(1, self.settings.processors + 1)), _SINK]

    def _known_services(self) -> list[_Service]:
        """What ``down``/``status`` cover: the configured components plus any worker with a pid file."""
        services = self._services()
        names = {svc.name for svc in services}
        extra = []
        run = self.settings.paths.run
        for pidfile in sorted(run.glob("processor-*.pid")) if run.is_dir() else []:
            m = _WORKER_NAME.match(pidfile.stem)
            if m and pidfile.stem not in names:
                extra.append(_worker(int(m.group(1))))
        extra.sort(key=lambda svc: svc.worker)
        at = max(i for i, svc in enumerate(services) if svc.worker) + 1
        return [*services[:at], *extra, *services[at:]]

    def _enabled(self, svc: _Service) -> bool:
        flag: bool = getattr(self.settings, "start_processor" if svc.worker else f"start_{svc.name}")
        if not flag:
            return False
        import importlib.util

        return importlib.util.find_spec(svc.module) is not None

    def _port_file(self, svc: _Service) -> Path:
        return self.settings.paths.run / f"{svc.name}.port"

    def port(self, svc: _Service) -> int:
        """The component's HTTP port: from the settings, or the one a worker was started on."""
        if svc.worker > 1:
            try:
                return int(self._port_file(svc).read_text().strip())
            except (OSError, ValueError):
                return 0
        port: int = getattr(self.settings, svc.port_attr)
        return port

    @property
    def bootstrap(self) -> str:
        """The local cluster's bootstrap servers (every node)."""
        return self.broker.bootstrap

    def _env(self, svc: _Service | None = None) -> dict[str, str]:
        env = dict(os.environ)
        s = self.settings
        env.update({
            "LOCKGATE_HOME": str(s.home),
            "LOCKGATE_BOOTSTRAP_SERVERS": self.bootstrap,
            "LOCKGATE_TOPIC_PREFIX": s.topic_prefix,
            "LOCKGATE_API_PORT": str(s.api_port),
            "LOCKGATE_SINK_HTTP_PORT": str(s.api_port),
            "LOCKGATE_PROCESSOR_PORT": str(s.processor_port),
            "LOCKGATE_WITNESS_PORT": str(s.witness_port),
        })
        if svc is not None and svc.worker:
            env["LOCKGATE_PROCESSOR_ID"] = f"processor-{svc.worker}"
            env["LOCKGATE_PROCESSOR_PORT"] = str(self.port(svc))
            if self._enabled(_WITNESS) and not env.get("LOCKGATE_WITNESSES"):
                env["LOCKGATE_WITNESSES"] = witness_spec(s)
        return env

    def up(self) -> UpReport:
        started: list[str] = []
        already: list[str] = []
        if self.broker.start():
            started.append("kafka")
        else:
            already.append("kafka")
        created, drifts = ensure_topics(self.bootstrap, self.settings.topics)
        if created:
            self.progress(f"created {len(created)} topics: {', '.join(created)}")
        for drift in drifts:
            self.progress(f"warning: {drift}")
        if any(self._enabled(svc) for svc in self._services()):
            from deploy.identity import ensure_cli_identity, ensure_processor_key

            if ensure_processor_key(self.settings.home)[1]:
                self.progress(f"created processor key {self.settings.home}/keys/processor.pem (0600)")
            if ensure_cli_identity(self.settings.home):
                self.progress("registered the `cli` service identity for `lockgate submit`")
        workers: list[tuple[_Service, ManagedProcess]] = []  # started side by side, they join together

        def await_workers() -> None:
            for w, wproc in workers:
                self._wait_healthy(w, wproc)
                started.append(w.name)
            workers.clear()

        for svc in self._services():
            if not self._enabled(svc):
                continue
            if not svc.worker:
                await_workers()
            proc = self._process(svc.name)
            if proc.running():
                already.append(svc.name)
                continue
            if svc.worker > 1:
                self._port_file(svc).write_text(f"{free_port()}\n")
            check_port_free(self.port(svc))
            self.progress(f"starting {svc.name} ...")
            proc.start([sys.executable, "-m", svc.module], self._env(svc))
            if svc.worker:
                workers.append((svc, proc))
            else:
                self._wait_healthy(svc, proc)
                started.append(svc.name)
        await_workers()
        processor = self._enabled(_PROCESSOR)
        if processor and self.probe is not None:  # healthy is not deciding
            self.progress(f"processor answered a probe action in {self.probe(self.settings):.1f}s")
        return UpReport(started, already, created, drifts)

    def _wait_healthy(self, svc: _Service, proc: ManagedProcess) -> None:
        port = self.port(svc)
        url = f"http://127.0.0.1:{port}/healthz"
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            code = proc.exited()
            if code is not None:
                raise ProcessFailed(f"{svc.name} exited with status {code} during start-up; see {proc.logfile}")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise ProcessFailed(f"{svc.name} did not become healthy at {url}; see {proc.logfile}")

    def down(self) -> list[str]:
        stopped: list[str] = []
        for svc in reversed(self._known_services()):
            if self._process(svc.name).stop():
                stopped.append(svc.name)
            if svc.worker > 1:
                self._port_file(svc).unlink(missing_ok=True)
        if self.broker.stop():
            stopped.append("kafka")
        return stopped

    def status(self) -> dict[str, Any]:
        s = self.settings
        comps = [ComponentStatus(node.process.name, node.process.running(), node.process.pid(),
                                 str(self.broker.node_logs(node) / "kafka-server.log"), node.address)
                 for node in self.broker.nodes]
        for svc in self._known_services():
            proc = self._process(svc.name)
            port = self.port(svc)
            running = proc.running()
            health = consumer_health(f"http://127.0.0.1:{port}{svc.health_path}") if running else None
            comps.append(ComponentStatus(svc.name, running, proc.pid(), str(proc.logfile),
                                         f"http://127.0.0.1:{port}", health))
        return {
            "home": str(s.home),
            "bootstrap": self.bootstrap,
            "topic_prefix": s.topic_prefix,
            "logs": str(s.paths.logs),
            "dashboard": f"http://127.0.0.1:{s.api_port}/",
            "components": [asdict(c) for c in comps],
        }
