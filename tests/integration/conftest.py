"""Fixtures that start real processor workers (Faust) against the session broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.identity import ensure_cli_identity, ensure_processor_key
from deploy.topic_admin import ensure_topics
from processors.policy_files import load_policy_file
from processors.policy_store import publish_policy
from producers import Action, Actor, Guard, GuardSettings, VerdictTimeout
from schemas.topics import Topics
from tests.conftest import free_port

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


def start_processor(bootstrap: str, home: Path, prefix: str, log: Path,
                    extra_env: dict[str, str] | None = None) -> ProcessorHandle:
    topics = Topics(prefix)
    ensure_topics(bootstrap, topics)
    ensure_processor_key(home)
    ensure_cli_identity(home)
    port = free_port()
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


@pytest.fixture(scope="module")
def processor(kafka_bootstrap: str, test_home: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[ProcessorHandle]:
    """A real processor worker on a unique topic prefix, with the example policy applied."""
    prefix = f"p{uuid.uuid4().hex[:8]}."
    log = tmp_path_factory.mktemp("proc") / "processor.log"
    topics = Topics(prefix)
    ensure_topics(kafka_bootstrap, topics)
    publish_policy(load_policy_file(EXAMPLE_POLICY), kafka_bootstrap, topics, published_by="tests")
    handle = start_processor(kafka_bootstrap, test_home, prefix, log)
    try:
        wait_until_deciding(handle)
        yield handle
    finally:
        stop_processor(handle)
