"""``lockgate up`` / ``down`` / ``status``: the local stack as one unit.

``up`` starts, in order, the broker, then creates the catalogue's topics, then (when
``LOCKGATE_START_WITNESS`` is set) a tlog witness, then the processor worker and the sink
(when those components are installed), each in the background with its
own pid file and log under ``$LOCKGATE_HOME``. Each step is a no-op when already done, so
``up`` can be run any number of times. ``down`` stops them in reverse order (SIGTERM, wait,
then SIGKILL) and leaves all data in place.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from deploy.errors import ProcessFailed
from deploy.health import consumer_health
from deploy.kafka_broker import KafkaBroker
from deploy.processes import ManagedProcess, check_port_free
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


_SERVICES = (
    _Service("witness", "witness", "witness_port", "/healthz"),  # optional (LOCKGATE_START_WITNESS); before the log
    _Service("processor", "processors.worker", "processor_port", "/healthz/consumer"),
    _Service("sink", "sinks", "api_port", "/healthz"),
)


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

    def _enabled(self, svc: _Service) -> bool:
        flag: bool = getattr(self.settings, f"start_{svc.name}")
        if not flag:
            return False
        import importlib.util

        return importlib.util.find_spec(svc.module) is not None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        s = self.settings
        env.update({
            "LOCKGATE_HOME": str(s.home),
            "LOCKGATE_BOOTSTRAP_SERVERS": s.bootstrap,
            "LOCKGATE_TOPIC_PREFIX": s.topic_prefix,
            "LOCKGATE_API_PORT": str(s.api_port),
            "LOCKGATE_SINK_HTTP_PORT": str(s.api_port),
            "LOCKGATE_PROCESSOR_PORT": str(s.processor_port),
            "LOCKGATE_WITNESS_PORT": str(s.witness_port),
        })
        return env

    def up(self) -> UpReport:
        started: list[str] = []
        already: list[str] = []
        if self.broker.start():
            started.append("kafka")
        else:
            already.append("kafka")
        created, drifts = ensure_topics(self.settings.bootstrap, self.settings.topics)
        if created:
            self.progress(f"created {len(created)} topics: {', '.join(created)}")
        for drift in drifts:
            self.progress(f"warning: {drift}")
        if any(self._enabled(svc) for svc in _SERVICES):
            from deploy.identity import ensure_cli_identity, ensure_processor_key

            if ensure_processor_key(self.settings.home)[1]:
                self.progress(f"created processor key {self.settings.home}/keys/processor.pem (0600)")
            if ensure_cli_identity(self.settings.home):
                self.progress("registered the `cli` service identity for `lockgate submit`")
        for svc in _SERVICES:
            if not self._enabled(svc):
                continue
            proc = self._process(svc.name)
            if proc.running():
                already.append(svc.name)
                continue
            check_port_free(getattr(self.settings, svc.port_attr))
            self.progress(f"starting {svc.name} ...")
            proc.start([sys.executable, "-m", svc.module], self._env())
            self._wait_healthy(svc, proc)
            started.append(svc.name)
        processor = any(svc.name == "processor" and self._enabled(svc) for svc in _SERVICES)
        if processor and self.probe is not None:  # healthy is not deciding
            self.progress(f"processor answered a probe action in {self.probe(self.settings):.1f}s")
        return UpReport(started, already, created, drifts)

    def _wait_healthy(self, svc: _Service, proc: ManagedProcess) -> None:
        port = getattr(self.settings, svc.port_attr)
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
        for svc in reversed(_SERVICES):
            if self._process(svc.name).stop():
                stopped.append(svc.name)
        if self.broker.stop():
            stopped.append("kafka")
        return stopped

    def status(self) -> dict[str, Any]:
        s = self.settings
        comps = [ComponentStatus("kafka", self.broker.process.running(), self.broker.process.pid(),
                                 str(s.paths.logs / "kafka-server.log"), s.bootstrap)]
        for svc in _SERVICES:
            proc = self._process(svc.name)
            port = getattr(s, svc.port_attr)
            running = proc.running()
            health = consumer_health(f"http://127.0.0.1:{port}{svc.health_path}") if running else None
            comps.append(ComponentStatus(svc.name, running, proc.pid(), str(proc.logfile),
                                         f"http://127.0.0.1:{port}", health))
        return {
            "home": str(s.home),
            "bootstrap": s.bootstrap,
            "topic_prefix": s.topic_prefix,
            "logs": str(s.paths.logs),
            "dashboard": f"http://127.0.0.1:{s.api_port}/",
            "components": [asdict(c) for c in comps],
        }
