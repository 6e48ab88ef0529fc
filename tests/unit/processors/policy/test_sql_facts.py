"""sql_facts: statement kinds, danger ranking, comment tricks, dialect merging, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockgate.kernel.errors import LockgateError
from processors.errors import PolicyError, SqlUnparseable
from processors.policy.sql_facts import KIND_RANK, kind_rank, sql_facts


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("SELECT * FROM t", "SELECT"),
        ("select a from t union select a from u", "SELECT"),
        ("INSERT INTO t VALUES (1)", "INSERT"),
        ("UPDATE t SET a = 1 WHERE id = 2", "UPDATE"),
        ("DELETE FROM t WHERE id = 2", "DELETE"),
        ("DROP TABLE t", "DROP"),
        ("drop database prod", "DROP"),
        ("TRUNCATE TABLE t", "TRUNCATE"),
        ("ALTER TABLE t ADD COLUMN c INT", "ALTER"),
        ("CREATE TABLE t (a INT)", "CREATE"),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "MERGE"),
        ("GRANT SELECT ON t TO bob", "GRANT"),
        ("REVOKE SELECT ON t FROM bob", "REVOKE"),
        ("VACUUM", "VACUUM"),
    ],
)
def test_statement_kind(text: str, kind: str) -> None:
    facts = sql_facts(text)
    assert facts["kind"] == kind
    assert facts["kinds"] == [kind]
    assert facts["statements"] == 1


def test_stacked_statements_report_the_most_dangerous_kind() -> None:
    facts = sql_facts("SELECT 1; TRUNCATE TABLE t")
    assert facts["kind"] == "TRUNCATE"
    assert facts["kinds"] == ["SELECT", "TRUNCATE"]
    assert facts["statements"] == 2
    assert facts["tables"] == ["t"]


def test_transaction_wrapping_does_not_hide_the_delete() -> None:
    facts = sql_facts("BEGIN; DELETE FROM t; COMMIT")
    assert facts["kind"] == "DELETE"
    assert facts["kinds"] == ["BEGIN", "DELETE", "COMMIT"]


@pytest.mark.parametrize(
    "text",
    [
        "DELETE FROM t -- WHERE id = 1",
        "DELETE FROM t /* WHERE id = 1 */",
        "delete from t # where id = 1",  # MySQL comment; T-SQL would read a WHERE here
        "DELETE FROM t WHERE 1 = 1",
        "DELETE FROM t WHERE true",
        "UPDATE t SET a = 1 WHERE id = 1; DELETE FROM t",
    ],
)
def test_where_that_does_not_restrict_is_not_counted(text: str) -> None:
    assert sql_facts(text)["has_where"] is False


@pytest.mark.parametrize(
    "text",
    [
        "DELETE FROM t WHERE id = 1",
        "update t set a = 1 where id = 1 -- no limit",
        "UPDATE t SET a = 1 WHERE id = 1; DELETE FROM t WHERE id = 2",
        "DELETE FROM t WHERE id IN (SELECT id FROM u)",
    ],
)
def test_real_where_is_counted(text: str) -> None:
    assert sql_facts(text)["has_where"] is True


def test_has_where_is_false_when_nothing_can_be_filtered() -> None:
    assert sql_facts("DROP TABLE t")["has_where"] is False
    assert sql_facts("SELECT * FROM t WHERE a = 1")["has_where"] is True
    assert sql_facts("SELECT * FROM t")["has_where"] is False


def test_has_limit() -> None:
    assert sql_facts("SELECT * FROM t LIMIT 5")["has_limit"] is True
    assert sql_facts("SELECT TOP 5 * FROM t")["has_limit"] is True  # T-SQL only
    assert sql_facts("SELECT * FROM t")["has_limit"] is False
    assert sql_facts("SELECT * FROM t LIMIT 5; SELECT * FROM u")["has_limit"] is False
    assert sql_facts("DROP TABLE t")["has_limit"] is False


def test_tables_are_lower_cased_qualified_and_exclude_ctes() -> None:
    facts = sql_facts("WITH c AS (SELECT 1) SELECT * FROM c JOIN Prod.Orders o ON o.id = 1")
    assert facts["tables"] == ["prod.orders"]
    assert sql_facts("select * from `Shop`.`Items`")["tables"] == ["shop.items"]
    assert sql_facts("DROP TABLE B, a")["tables"] == ["a", "b"]


def test_nested_dml_raises_the_statement_kind() -> None:
    facts = sql_facts("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x")
    assert facts["kind"] == "DELETE"
    assert facts["has_where"] is False


def test_explain_analyze_is_treated_as_the_statement_it_runs() -> None:
    assert sql_facts("EXPLAIN ANALYZE DELETE FROM t")["kind"] == "DELETE"
    assert sql_facts("EXPLAIN SELECT 1")["kind"] == "SELECT"


@pytest.mark.parametrize("text", ["", "   ", "-- DROP TABLE t", "/* TRUNCATE t */"])
def test_no_statements(text: str) -> None:
    facts = sql_facts(text)
    assert facts["statements"] == 0
    assert facts["kind"] == ""
    assert facts["kinds"] == []


@pytest.mark.parametrize("text", ["SELECT FROM WHERE", "this is not sql", "DELEET FROM t"])
def test_unparseable_raises_typed_error(text: str) -> None:
    with pytest.raises(SqlUnparseable) as info:
        sql_facts(text)
    assert isinstance(info.value, PolicyError)
    assert isinstance(info.value, LockgateError)
    assert "not parseable SQL" in str(info.value)
    assert info.value.text == text


def test_result_is_a_fresh_dict_each_call() -> None:
    first = sql_facts("DELETE FROM t")
    first["kind"] = "SELECT"
    first["tables"].append("x")
    again = sql_facts("DELETE FROM t")
    assert again["kind"] == "DELETE"
    assert again["tables"] == ["t"]


def test_ranking_is_documented_order_and_unknown_is_not_a_read() -> None:
    ranks = [kind_rank(k) for k in KIND_RANK]
    assert ranks == sorted(ranks, reverse=True)
    assert kind_rank("DROP") > kind_rank("TRUNCATE") > kind_rank("DELETE") > kind_rank("UPDATE")
    assert kind_rank("INSERT") > kind_rank("VACUUM") > kind_rank("SELECT")
    assert kind_rank("") == 0 < kind_rank("ROLLBACK")


_POOL = {
    "SELECT a FROM t WHERE id = 1": "SELECT",
    "INSERT INTO t VALUES (1)": "INSERT",
    "UPDATE t SET a = 1 WHERE id = 1": "UPDATE",
    "DELETE FROM t WHERE id = 1": "DELETE",
    "DROP TABLE t": "DROP",
    "TRUNCATE TABLE t": "TRUNCATE",
    "ALTER TABLE t ADD COLUMN c INT": "ALTER",
    "CREATE TABLE u (a INT)": "CREATE",
}


@given(st.lists(st.sampled_from(sorted(_POOL)), min_size=1, max_size=5))
def test_stacked_kind_is_the_max_by_rank(statements: list[str]) -> None:
    facts = sql_facts("; ".join(statements))
    expected = [_POOL[s] for s in statements]
    assert facts["kinds"] == expected
    assert facts["statements"] == len(statements)
    assert facts["kind"] == max(expected, key=kind_rank)


@given(
    st.sampled_from(["DELETE FROM t", "UPDATE t SET a = 1", "delete from t"]),
    st.sampled_from(["-- WHERE id = 1", "/* WHERE id = 1 */", "--WHERE id=1", "# WHERE id = 1"]),
)
def test_commented_where_never_counts(statement: str, comment: str) -> None:
    assert sql_facts(f"{statement} {comment}")["has_where"] is False
