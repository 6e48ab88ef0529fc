"""Splitting and classifying statement text: what the proxy judges is what PostgreSQL runs."""

from __future__ import annotations

import pytest

from producers.pgproxy.images import ImageLimits, RowImage, after_image_sql, before_image_sql
from producers.pgproxy.statements import (
    Control,
    PrepareCommand,
    dml_target,
    redact_secrets,
    split_statements,
    sql_prepare_command,
    transaction_control,
)


@pytest.mark.parametrize(("text", "pieces"), [
    ("SELECT 1; DELETE FROM t -- x\n;; SELECT 2", ["SELECT 1", "DELETE FROM t -- x", "SELECT 2"]),
    ("SELECT $$a;b$$; DROP TABLE t", ["SELECT $$a;b$$", "DROP TABLE t"]),
    ("SELECT $q$ ; $x$ ; $q$; SELECT 3", ["SELECT $q$ ; $x$ ; $q$", "SELECT 3"]),
    ("SELECT 'a\\'; DROP TABLE t; --'", ["SELECT 'a\\'", "DROP TABLE t"]),  # standard strings
    ("SELECT E'a\\'; DROP TABLE t; --'", ["SELECT E'a\\'; DROP TABLE t; --'"]),
    ("SELECT 1 /* /* */ ; DROP TABLE t; */ ; SELECT 4", ["SELECT 1 /* /* */ ; DROP TABLE t; */", "SELECT 4"]),
    ('SELECT "a;b" FROM t; SAVEPOINT "c;d"', ['SELECT "a;b" FROM t', 'SAVEPOINT "c;d"']),
    ("DO $$ BEGIN PERFORM 1; END $$; SHOW x -- ;\n", ["DO $$ BEGIN PERFORM 1; END $$", "SHOW x -- ;"]),
    ("  -- only a comment\n ; ", []),
])
def test_split_matches_postgresql(text: str, pieces: list[str]) -> None:
    assert split_statements(text) == pieces


@pytest.mark.parametrize(("text", "control"), [
    ("BEGIN", Control("begin")),
    ("begin isolation level serializable, read only", Control("begin")),
    ("START TRANSACTION", Control("begin")),
    ("COMMIT /* done */", Control("commit")),
    ("END WORK", Control("commit")),
    ("COMMIT AND CHAIN", Control("commit")),
    ("ABORT", Control("rollback")),
    ("ROLLBACK TO SAVEPOINT a", Control("rollback_to", "a")),
    ('ROLLBACK WORK TO "Sp"', Control("rollback_to", "Sp")),
    ("SAVEPOINT A", Control("savepoint", "a")),
    ("RELEASE SAVEPOINT a", Control("release", "a")),
    ("release b", Control("release", "b")),
    ("COMMIT PREPARED 'gid'", None),  # decides another transaction: judged
    ("COMMIT; DROP TABLE t", None),
    ("BEGIN; DELETE FROM t", None),
    ("SAVEPOINT a b", None),
    ("ROLLBACK TO 'a'", None),
    ("PREPARE TRANSACTION 'x'", None),
])
def test_transaction_control_grammar_is_strict(text: str, control: Control | None) -> None:
    assert transaction_control(text) == control


def test_sql_prepared_statements_are_seen_through() -> None:
    assert sql_prepare_command("PREPARE p (int) AS DELETE FROM t WHERE id = $1") == PrepareCommand(
        "prepare", "p", "DELETE FROM t WHERE id = $1")
    assert sql_prepare_command('EXECUTE "P"(1)') == PrepareCommand("execute", "P")
    assert sql_prepare_command("DEALLOCATE ALL") == PrepareCommand("deallocate", None)
    assert sql_prepare_command("DEALLOCATE PREPARE p") == PrepareCommand("deallocate", "p")
    assert sql_prepare_command("PREPARE TRANSACTION 'x'") is None


def test_passwords_are_redacted_before_proposing() -> None:
    assert redact_secrets("ALTER USER bob WITH PASSWORD 'se''cret' VALID UNTIL 'x'") == (
        "ALTER USER bob WITH PASSWORD '***' VALID UNTIL 'x'")
    assert redact_secrets("create role b login password E'a\\'b'") == "create role b login password '***'"
    assert redact_secrets("SELECT 'password'") == "SELECT 'password'"


def test_dml_target_keeps_raw_clauses() -> None:
    t = dml_target("UPDATE public.orders AS o SET total = $1 FROM c WHERE o.cid = c.id AND c.n = $2 RETURNING o.id")
    assert t is not None and (t.kind, t.table, t.reference) == ("UPDATE", "public.orders", "o")
    assert (t.target_sql, t.from_sql, t.where_sql) == ("public.orders AS o", "c", "o.cid = c.id AND c.n = $2")
    assert t.names() == ("public.orders", "orders")
    d = dml_target("WITH x AS (SELECT id FROM t) DELETE FROM orders USING x WHERE orders.id = x.id;")
    assert d is not None and (d.with_sql, d.from_sql, d.where_sql) == (
        "WITH x AS (SELECT id FROM t)", "x", "orders.id = x.id")
    assert dml_target("INSERT INTO orders VALUES (1)").kind == "INSERT"  # type: ignore[union-attr]
    assert dml_target("SELECT 1") is None


def test_no_image_where_the_where_cannot_be_re_evaluated() -> None:
    for sql in ("UPDATE t SET a = 1 WHERE id = my_func(1)", "DELETE FROM t WHERE random() < 0.5",
                "DELETE FROM t WHERE id IN (WITH d AS (DELETE FROM u RETURNING id) SELECT id FROM d)"):
        target = dml_target(sql)
        assert target is not None and target.image_error, sql


def test_image_queries_and_caps() -> None:
    target = dml_target("UPDATE orders o SET s = 1 WHERE o.id < $1")
    assert target is not None
    limits = ImageLimits(max_rows=2, max_columns=2, max_bytes=10)
    assert before_image_sql(target, ("id",), limits) == (
        'SELECT o.* FROM orders o WHERE o.id < $1 ORDER BY o."id" LIMIT 3 FOR UPDATE OF o')
    assert after_image_sql(target, ("id",), 2) == (
        'SELECT o.* FROM orders o WHERE (o."id") IN (($1), ($2)) ORDER BY o."id"')
    image = RowImage(limits, ("id",))
    image.on_columns(["id", "s", "big"])
    for row in ([b"1", b"a", b"x"], [b"1", b"a", b"x"], [b"2", b"bbbbbbbb", b"x"], [b"3", b"c", b"x"]):
        image.on_row(row)
    assert image.to_json() == {"columns": ["id", "s"], "rows": [["1", "a"]], "truncated": True}
    assert image.keys == [(b"1",)]
