"""Fixtures for chDB-backed sink tests.

chDB allows ONE data directory per process (verified: a second path fails with
"EmbeddedServer already initialized with path ..."), so all tests share one
session-scoped directory and each test gets its own database.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.clickhouse import ConnectClient, connect
from sinks.migrations import migrate
from tests.integration.sinks.sink_fixtures import Events

_counter = itertools.count()


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def ch(chdb_dir: Path) -> Iterator[ConnectClient]:
    """A migrated database of its own on the shared embedded engine."""
    client = connect(f"chdb://{chdb_dir}", f"t{next(_counter)}_{uuid.uuid4().hex[:8]}")
    migrate(client)
    yield client
    client.command(f"DROP DATABASE IF EXISTS {client.database}")


@pytest.fixture
def events() -> Events:
    return Events()
