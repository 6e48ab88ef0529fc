"""Migrations on real chDB: versioned, idempotent, drift detected, retention toggles."""

from __future__ import annotations

import pytest

from sinks.clickhouse import ConnectClient
from sinks.errors import SinkError
from sinks.migrations import applied_versions, apply_retention, load_migrations, migrate


def test_migrate_twice_is_a_noop(ch: ConnectClient) -> None:
    versions = [m.version for m in load_migrations()]
    assert applied_versions(ch).keys() == set(versions)  # the fixture already migrated
    assert migrate(ch) == []
    assert migrate(ch) == []
    _, tables = ch.query("SELECT name FROM system.tables WHERE database = {db:String} "
                         "ORDER BY name", {"db": ch.database})
    names = {t[0] for t in tables}
    assert {"audit_events", "checkpoints", "action_summary", "action_summary_mv",
            "schema_migrations"} <= names


def test_changed_migration_is_refused(ch: ConnectClient) -> None:
    ch.command(f"ALTER TABLE {ch.database}.schema_migrations UPDATE checksum = 'x' "
               "WHERE version = 1 SETTINGS mutations_sync = 1")
    with pytest.raises(SinkError, match="immutable"):
        migrate(ch)


def test_retention_set_and_removed(ch: ConnectClient) -> None:
    apply_retention(ch, 30)
    assert "toIntervalDay(30)" in str(ch.command(f"SHOW CREATE TABLE {ch.database}.audit_events"))
    apply_retention(ch, 30)
    apply_retention(ch, None)
    assert "TTL" not in str(ch.command(f"SHOW CREATE TABLE {ch.database}.audit_events"))
    with pytest.raises(SinkError):
        apply_retention(ch, 0)
