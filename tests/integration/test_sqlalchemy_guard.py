"""The SQLAlchemy integration on a real database: a blocked statement never runs."""

from __future__ import annotations

import time

import pytest

sqlalchemy = pytest.importorskip("sqlalchemy", reason="the optional sqlalchemy extra is not installed")

from sqlalchemy import create_engine, text  # noqa: E402

from producers import ActionBlocked  # noqa: E402
from producers.sqlalchemy_guard import guard_engine  # noqa: E402
from tests.integration.conftest import ProcessorHandle  # noqa: E402
from tests.integration.test_round_trip import read_topic  # noqa: E402

pytestmark = pytest.mark.integration


def test_blocked_statement_never_reaches_the_database(processor: ProcessorHandle) -> None:
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)"))
        conn.execute(text("INSERT INTO orders VALUES (1, 10), (2, 20), (3, 30)"))
    with processor.guard() as guard:
        unguard = guard_engine(engine, guard, actor=lambda: "sql-app", resource="db/prod/orders")
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM orders WHERE id = 1"))
        with pytest.raises(ActionBlocked) as info:
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM orders -- WHERE id = 2"))
        assert [r.id for r in info.value.verdict.enforced_rules] == ["prod-delete-update-without-where"]
        unguard()
    with engine.connect() as conn:
        remaining = conn.execute(text("SELECT id FROM orders ORDER BY id")).scalars().all()
    assert remaining == [2, 3]  # the allowed DELETE ran; the blocked one never did


def test_each_executed_statement_records_an_outcome(processor: ProcessorHandle) -> None:
    engine = create_engine("sqlite://")
    marker = f"t{int(time.time() * 1e6)}"
    with processor.guard() as guard:
        unguard = guard_engine(engine, guard, actor=lambda: marker, resource="db/staging/scratch")
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE {marker} (id INTEGER)"))
        with pytest.raises(sqlalchemy.exc.OperationalError):
            with engine.begin() as conn:
                conn.execute(text(f"INSERT INTO no_such_table_{marker} VALUES (1)"))
        unguard()
    failed = read_topic(processor.bootstrap, processor.topics.outcomes,
                        lambda r: r["actor_id"] == marker and r["status"] == "failed", "ActionOutcome")
    assert failed["error_type"] == "OperationalError"
    committed = read_topic(processor.bootstrap, processor.topics.outcomes,
                           lambda r: r["actor_id"] == marker and r["status"] == "committed", "ActionOutcome")
    assert committed["status"] == "committed"
