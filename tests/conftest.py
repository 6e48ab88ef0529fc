"""Session fixtures: one real Kafka broker for the whole run, unique topics per test.

The broker lives in a scratch ``LOCKGATE_HOME`` (``LOCKGATE_TEST_HOME`` if set, else a temp
dir) on free ports, so a developer's own stack is never touched. It starts on first use by
an integration test and stops when the session ends, pass or fail.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from deploy.settings import StackSettings
from deploy.stack import Stack
from lockgate.kernel.topic_admin import ensure_topics
from schemas.topics import Topics

# Property tests are part of a deterministic suite: the same examples every run, and no
# per-example time limit (timing is for benchmarks; a loaded 2-core box is slow, not wrong).
hypothesis_settings.register_profile("lockgate", deadline=None, derandomize=True, database=None)
hypothesis_settings.load_profile("lockgate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def test_home() -> Path:
    raw = os.environ.get("LOCKGATE_TEST_HOME")
    return Path(raw) if raw else Path(tempfile.mkdtemp(prefix="lockgate-test-"))


@pytest.fixture(scope="session")
def stack_settings(test_home: Path) -> StackSettings:
    return StackSettings(
        home=test_home,
        kafka_port=free_port(),
        controller_port=free_port(),
        api_port=free_port(),
        processor_port=free_port(),
        topic_prefix="lockgate-test.",
        start_processor=False,
        start_sink=False,
    )


@pytest.fixture(scope="session")
def kafka_stack(stack_settings: StackSettings) -> Iterator[Stack]:
    stack = Stack(stack_settings)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_stack: Stack) -> str:
    return kafka_stack.settings.bootstrap


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def topics(kafka_bootstrap: str, topic_prefix: str) -> Topics:
    """The full catalogue created under a unique prefix for this test."""
    t = Topics(topic_prefix)
    ensure_topics(kafka_bootstrap, t)
    return t


@pytest.fixture
def unique_group() -> str:
    return f"g-{uuid.uuid4().hex[:12]}"
