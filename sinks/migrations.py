"""Versioned, idempotent schema migrations for the audit tables.

Contract:

* Migrations are the files ``sinks/migrations/NNN_name.sql`` (NNN = version), applied in
  version order. ``{db}`` in a file is replaced by the (validated) database name; statements
  are separated by a line holding only ``;``.
* Applied versions are recorded in ``{db}.schema_migrations`` with the file's SHA-256.
  :func:`migrate` applies only versions not recorded there, so re-running it is a no-op.
  A recorded version whose file changed raises :class:`SinkError`: released migrations are
  immutable; write a new one instead.
* Every statement is ``IF NOT EXISTS``, so two sinks starting at once converge (the
  ReplacingMergeTree keeps one row per version).

Retention is not a migration (it is a per-deployment setting): :func:`apply_retention` sets
or removes the TTL idempotently at every start. Default: no TTL, keep forever.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from sinks.clickhouse import ClickHouse, validate_identifier
from sinks.errors import SinkError

__all__ = [
    "RETENTION_TABLES",
    "SCHEMA_MIGRATIONS_DDL",
    "Migration",
    "applied_versions",
    "apply_retention",
    "load_migrations",
    "migrate",
]

_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

#: Tables a retention TTL applies to, with their time column.
RETENTION_TABLES: dict[str, str] = {
    "audit_events": "recorded_at",
    "checkpoints": "created_at",
    "action_summary": "day",
}


@dataclass(frozen=True)
class Migration:
    """One migration file: its version, name, statements (``{db}`` unresolved) and checksum."""

    version: int
    name: str
    statements: tuple[str, ...]
    checksum: str


def load_migrations() -> list[Migration]:
    """All migration files shipped in ``sinks/migrations``, in version order."""
    found: list[Migration] = []
    seen: set[int] = set()
    for entry in resources.files("sinks").joinpath("migrations").iterdir():
        m = _FILE.match(entry.name)
        if not m:
            continue
        version = int(m.group(1))
        if version in seen:
            raise SinkError(f"two migrations share version {version:03d}; renumber one")
        seen.add(version)
        text = entry.read_text(encoding="utf-8")
        statements = tuple(
            s.strip() for s in re.split(r"^\s*;\s*$", text, flags=re.MULTILINE) if _has_sql(s)
        )
        checksum = hashlib.sha256(text.encode("utf-8")).hexdigest()
        found.append(Migration(version, m.group(2), statements, checksum))
    return sorted(found, key=lambda mig: mig.version)


def _has_sql(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())


SCHEMA_MIGRATIONS_DDL = """\
CREATE TABLE IF NOT EXISTS {db}.schema_migrations
(
    version UInt32, name String, checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version"""
"""Where applied versions are recorded (``{db}`` unresolved); the cluster DDL derives from it too."""


def _ensure_table(client: ClickHouse, db: str) -> None:
    client.command(SCHEMA_MIGRATIONS_DDL.replace("{db}", db))


def applied_versions(client: ClickHouse) -> dict[int, str]:
    """Versions recorded as applied, mapped to their checksum."""
    db = validate_identifier(client.database)
    _ensure_table(client, db)
    _, rows = client.query(
        f"SELECT version, any(checksum) FROM {db}.schema_migrations GROUP BY version"
    )
    return {int(v): str(c) for v, c in rows}


def migrate(client: ClickHouse) -> list[int]:
    """Apply pending migrations to ``client.database``; return the versions applied now."""
    db = validate_identifier(client.database)
    done = applied_versions(client)
    applied: list[int] = []
    for mig in load_migrations():
        if mig.version in done:
            if done[mig.version] != mig.checksum:
                raise SinkError(
                    f"migration {mig.version:03d}_{mig.name}.sql changed after it was applied to "
                    f"{db}; released migrations are immutable: restore it and add a new version"
                )
            continue
        for stmt in mig.statements:
            client.command(stmt.replace("{db}", db))
        client.insert(
            f"{db}.schema_migrations",
            [[mig.version, mig.name, mig.checksum]],
            column_names=["version", "name", "checksum"],
        )
        applied.append(mig.version)
    return applied


def apply_retention(client: ClickHouse, days: int | None) -> None:
    """Keep audit data ``days`` days (TTL on each table), or forever when ``days`` is None.

    Idempotent; run at every start so the setting, not history, decides the TTL.
    """
    db = validate_identifier(client.database)
    if days is not None and (not isinstance(days, int) or days < 1):
        raise SinkError(f"retention must be a whole number of days >= 1 or None, got {days!r}")
    for table, column in RETENTION_TABLES.items():
        show = str(client.command(f"SHOW CREATE TABLE {db}.{table}"))
        has_ttl = re.search(r"(?:\\n|\s)TTL\s", show) is not None
        if days is None:
            if has_ttl:
                client.command(f"ALTER TABLE {db}.{table} REMOVE TTL")
        else:
            expr = column if column == "day" else f"toDate({column})"
            client.command(
                f"ALTER TABLE {db}.{table} MODIFY TTL {expr} + toIntervalDay({int(days)})"
            )
