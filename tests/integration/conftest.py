"""Fixtures that start real processor workers (Faust) against the session broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.identity import ensure_cli_identity, ensure_processor_key
from lockgate.kernel.topic_admin import ensure_topics
from processors.policy.files import load_policy_file
from processors.policy.store import publish_policy
from producers import Action, Actor, Guard, GuardSettings, VerdictTimeout
from schemas.topics import Topics
from sinks.tokens import create_token
from tests.conftest import free_port
from tests.integration.held_submit import HeldSubmits

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "processors" / "policies" / "example.yaml"


@dataclass
class ProcessorHandle:
    bootstrap: str
    home: Path
    topics: Topics
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def guard_settings(self, **overrides: object) -> GuardSettings:
        base: dict[str, object] = {"bootstrap_servers": self.bootstrap, "topic_prefix": self.topics.prefix,
                                   "home": self.home, "timeout_s": 10.0}
        base.update(overrides)
        return GuardSettings(**base)  # type: ignore[arg-type]

    def guard(self, **overrides: object) -> Guard:
        return Guard(self.guard_settings(**overrides))

    def cli_env(self) -> dict[str, str]:
        """The environment of a ``lockgate`` command on this worker's home, broker and topics."""
        return {**os.environ, "LOCKGATE_HOME": str(self.home), "LOCKGATE_BOOTSTRAP_SERVERS": self.bootstrap,
                "LOCKGATE_TOPIC_PREFIX": self.topics.prefix}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``lockgate args`` against this worker and return what it printed."""
        return subprocess.run([sys.executable, "-m", "lockgate.cli", *args], capture_output=True, text=True,
                              env=self.cli_env(), timeout=120, check=False)


def start_processor(bootstrap: str, home: Path, prefix: str, log: Path,
                    extra_env: dict[str, str] | None = None, port: int | None = None) -> ProcessorHandle:
    topics = Topics(prefix)
    ensure_topics(bootstrap, topics)
    ensure_processor_key(home)
    ensure_cli_identity(home)
    port = port or free_port()
    env = dict(os.environ)
    env.update({"LOCKGATE_HOME": str(home), "LOCKGATE_BOOTSTRAP_SERVERS": bootstrap,
                "LOCKGATE_TOPIC_PREFIX": prefix, "LOCKGATE_PROCESSOR_PORT": str(port),
                "LOCKGATE_CHECKPOINT_INTERVAL_S": "1"})
    env.update(extra_env or {})
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "processors.worker"], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    handle = ProcessorHandle(bootstrap, home, topics, port, proc, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"processor exited with {proc.returncode}; log:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    return handle


def wait_until_deciding(handle: ProcessorHandle, timeout_s: float = 60.0) -> None:
    """Block until the worker has its partitions and answers a proposal."""
    deadline = time.monotonic() + timeout_s
    with handle.guard(timeout_s=3.0) as guard:
        while time.monotonic() < deadline:
            try:
                guard.check(Action(Actor("probe"), "probe", "probe"))
                return
            except VerdictTimeout:
                continue
    raise RuntimeError(f"processor never answered; log:\n{handle.log.read_text()[-4000:]}")


def stop_processor(handle: ProcessorHandle) -> None:
    handle.proc.terminate()
    try:
        handle.proc.wait(30)
    except subprocess.TimeoutExpired:
        handle.proc.kill()
        handle.proc.wait(10)


class Worker:
    """One processor worker on its own topic prefix, restartable."""

    def __init__(self, bootstrap: str, home: Path, prefix: str, log: Path) -> None:
        self.args = (bootstrap, home, prefix, log)
        self.handle: ProcessorHandle = start_processor(*self.args)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.handle.cli(*args)

    def kill9(self) -> None:
        self.handle.proc.kill()
        self.handle.proc.wait(30)

    def restart(self) -> None:
        self.handle = start_processor(*self.args)
        wait_until_deciding(self.handle)


def wait_for(cond: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout_s}s")


def get_json(url: str, token: str | None) -> Any:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, ConnectionError):
        return None


class Sink:
    def __init__(self, processor: ProcessorHandle, state: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "LOCKGATE_HOME": str(processor.home),
                    "LOCKGATE_TOPIC_PREFIX": processor.topics.prefix,
                    "LOCKGATE_BOOTSTRAP_SERVERS": processor.bootstrap,
                    "LOCKGATE_CLICKHOUSE_DSN": f"chdb://{state / 'ch'}",
                    "LOCKGATE_SINK_GROUP_ID": f"sink-{uuid.uuid4().hex[:8]}",
                    "LOCKGATE_SINK_HTTP_PORT": str(self.port)}
        self.log = state / "sink.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "sinks"], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        wait_for(lambda: get_json(f"{self.url}/healthz", None), what="sink health")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


@pytest.fixture(scope="module")
def pipeline(processor: ProcessorHandle, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[ProcessorHandle, Sink, str]]:
    sink = Sink(processor, tmp_path_factory.mktemp("sink"))
    _info, token = create_token(processor.home, "default", label="pipeline test")
    sink.start()
    try:
        yield processor, sink, token
    finally:
        sink.stop()


def fresh_topics(bootstrap: str, letter: str, policy: dict[str, Any] | None = None) -> Topics:
    """Topics on a new prefix ``<letter><8 hex>.``, created, with ``policy`` published on them.

    ``letter`` tells whose topics they are in the broker's listing; ``policy`` is a
    validated PolicySet (:func:`processors.policy.files.load_policy_text`), the example
    policy when not given.
    """
    topics = Topics(f"{letter}{uuid.uuid4().hex[:8]}.")
    ensure_topics(bootstrap, topics)
    publish_policy(policy or load_policy_file(EXAMPLE_POLICY), bootstrap, topics, published_by="tests")
    return topics


@contextmanager
def running_processor(bootstrap: str, home: Path, log: Path, letter: str, policy: dict[str, Any] | None = None,
                      extra_env: dict[str, str] | None = None) -> Iterator[ProcessorHandle]:
    """A processor worker on :func:`fresh_topics`, answering proposals; stopped on exit."""
    handle = start_processor(bootstrap, home, fresh_topics(bootstrap, letter, policy).prefix, log, extra_env)
    try:
        wait_until_deciding(handle)
        yield handle
    finally:
        stop_processor(handle)


@contextmanager
def running_worker(bootstrap: str, home: Path, log: Path, letter: str,
                   policy: dict[str, Any] | None = None) -> Iterator[Worker]:
    """Like :func:`running_processor`, as a :class:`Worker` a test can kill and restart."""
    w = Worker(bootstrap, home, fresh_topics(bootstrap, letter, policy).prefix, log)
    try:
        wait_until_deciding(w.handle)
        yield w
    finally:
        stop_processor(w.handle)


@pytest.fixture
def worker(kafka_bootstrap: str, test_home: Path, tmp_path: Path) -> Iterator[Worker]:
    """A worker of the test's own, with the example policy, that it can kill and restart; a module
    that needs another policy defines its own ``worker``."""
    with running_worker(kafka_bootstrap, test_home, tmp_path / "processor.log", "k") as w:
        yield w


@pytest.fixture(scope="module")
def processor(kafka_bootstrap: str, test_home: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[ProcessorHandle]:
    """A real processor worker on a unique topic prefix, with the example policy applied."""
    with running_processor(kafka_bootstrap, test_home, tmp_path_factory.mktemp("proc") / "processor.log",
                           "p") as handle:
        yield handle


@pytest.fixture
def submit_held() -> Iterator[HeldSubmits]:
    """Starts ``lockgate submit --wait-review`` processes; any still waiting are killed at teardown."""
    started = HeldSubmits()
    try:
        yield started
    finally:
        started.kill_waiting()
