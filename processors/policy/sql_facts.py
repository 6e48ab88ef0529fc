"""Facts about a SQL text, for policies (the CEL ``sql`` variable).

``sql_facts(text)`` parses *all* statements in ``text`` with sqlglot and reduces them to a
few facts a policy can test without knowing SQL grammar:

``kind``        the most dangerous statement kind present (see :data:`KIND_RANK`), upper case
``kinds``       the kind of each statement, in order (from the dialect that found the most
                statements; ``kind`` may come from another dialect's reading)
``statements``  how many statements the text holds (comment-only text holds 0; this is
                ``len(kinds)``)
``tables``      sorted, de-duplicated, lower-cased table names (``db.table`` when qualified;
                CTE names are not tables)
``has_where``   True only if every UPDATE/DELETE (anywhere, including inside CTEs) has a
                WHERE that references at least one column; when the text has no UPDATE or
                DELETE, True only if every top-level SELECT has such a WHERE. False when
                there is nothing a WHERE could restrict (DROP, INSERT ... VALUES, empty text).
``has_limit``   True only if every top-level SELECT/UPDATE/DELETE has a LIMIT/FETCH/TOP and
                there is at least one such statement

Why these choices, all of which lean towards "more dangerous":

* **Comments never count.** sqlglot's tokenizer drops comments, so
  ``DELETE FROM t -- WHERE id = 1`` is a DELETE without WHERE.
* **Several dialects, merged conservatively.** The same text can mean different things to
  different databases (``#`` starts a comment in MySQL but not in T-SQL, where
  ``DELETE FROM t # WHERE id = 1`` parses *with* a WHERE). We parse with each dialect in
  :data:`DIALECTS` and merge the parses that succeed: the most dangerous kind, the union of
  tables, ``has_where``/``has_limit`` only if every parse agrees, the largest statement
  count. The text is :class:`~processors.errors.SqlUnparseable` only if no dialect parses it.
* **Hidden writes surface.** A statement's kind is the most dangerous of its own kind and
  any DML nested in it, so ``WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x`` is a
  DELETE, and ``EXPLAIN ANALYZE DELETE ...`` (which executes the delete in PostgreSQL and
  MySQL) is a DELETE too.
* **Tautologies are not filters.** ``WHERE 1=1`` or ``WHERE true`` reference no column and
  do not count as a WHERE. (``WHERE id = 1 OR 1 = 1`` still counts: we do not prove
  predicates.)
* **Non-statements are rejected.** ``this is not sql`` parses as the boolean expression
  ``NOT this IS sql``; a top-level node that is not a statement makes that parse fail.

Results are cached per text (bounded LRU), since services repeat the same statements.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from processors.errors import SqlUnparseable

__all__ = ["DIALECTS", "KIND_RANK", "empty_sql_facts", "kind_rank", "sql_facts"]

#: Dialects tried for every text ("" is sqlglot's default, close to ANSI).
DIALECTS: tuple[str, ...] = ("", "mysql", "postgres", "tsql")

#: Statement kinds from most to least dangerous. A kind not listed (an unknown command such
#: as ``VACUUM``) ranks just below INSERT: unknown is treated as possibly-writing, never as
#: a read.
KIND_RANK: tuple[str, ...] = (
    "DROP",
    "TRUNCATE",
    "DELETE",
    "ALTER",
    "MERGE",
    "UPDATE",
    "GRANT",
    "REVOKE",
    "CREATE",
    "INSERT",
    "COPY",
    # <- unknown kinds rank here
    "SELECT",
    "DESCRIBE",
    "EXPLAIN",
    "SHOW",
    "SET",
    "USE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
)
_RANK = {kind: len(KIND_RANK) - i for i, kind in enumerate(KIND_RANK)}
_UNKNOWN_RANK = _RANK["COPY"] - 0.5


def kind_rank(kind: str) -> float:
    """Danger rank of a statement kind: higher is more dangerous; "" (no statement) is 0."""
    if not kind:
        return 0
    return _RANK.get(kind, _UNKNOWN_RANK)


_KIND_BY_CLASS: dict[type[exp.Expression], str] = {
    exp.Select: "SELECT",
    exp.Union: "SELECT",
    exp.Intersect: "SELECT",
    exp.Except: "SELECT",
    exp.Insert: "INSERT",
    exp.Update: "UPDATE",
    exp.Delete: "DELETE",
    exp.Drop: "DROP",
    exp.TruncateTable: "TRUNCATE",
    exp.Alter: "ALTER",
    exp.Create: "CREATE",
    exp.Merge: "MERGE",
    exp.Grant: "GRANT",
    exp.Revoke: "REVOKE",
    exp.Copy: "COPY",
    exp.Describe: "DESCRIBE",
    exp.Transaction: "BEGIN",
    exp.Commit: "COMMIT",
    exp.Rollback: "ROLLBACK",
    exp.Set: "SET",
    exp.Use: "USE",
    exp.Command: "COMMAND",
    exp.Pragma: "PRAGMA",
    exp.Analyze: "ANALYZE",
    exp.LoadData: "LOAD",
    exp.Cache: "CACHE",
    exp.Uncache: "UNCACHE",
    exp.Refresh: "REFRESH",
}
_STATEMENT_TYPES = tuple(_KIND_BY_CLASS)
_NESTED_DML = (exp.Delete, exp.Update, exp.Insert, exp.Merge, exp.Drop, exp.TruncateTable)
_FILTERABLE_DML = (exp.Delete, exp.Update)
_LIMITABLE = (exp.Select, exp.Update, exp.Delete)

# Leading EXPLAIN options to strip before parsing the explained statement.
_EXPLAIN_OPTION = re.compile(
    r"^\s*(?:\([^()]*\)|ANALY[SZ]E|VERBOSE|EXTENDED|QUERY\s+PLAN|PLAN\s+FOR|FORMAT\s*=?\s*\w+)\s*",
    re.IGNORECASE,
)


_TOKEN_REPR = re.compile(r" but got <Token [^>]*>")


@dataclass(frozen=True)
class _Facts:
    kind: str
    kinds: tuple[str, ...]
    tables: frozenset[str]
    has_where: bool
    has_limit: bool


def empty_sql_facts() -> dict[str, Any]:
    """The facts of a text with no statement (also what the engine binds when there is no SQL)."""
    return {
        "kind": "",
        "kinds": [],
        "statements": 0,
        "tables": [],
        "has_where": False,
        "has_limit": False,
    }


def sql_facts(text: str) -> dict[str, Any]:
    """Parse every statement in ``text`` and return its facts (see the module docstring).

    Returns a new dict each call (callers may mutate it). Raises
    :class:`~processors.errors.SqlUnparseable` if no dialect in :data:`DIALECTS` parses
    ``text`` into statements.
    """
    facts = _cached_facts(text)
    return {
        "kind": facts.kind,
        "kinds": list(facts.kinds),
        "statements": len(facts.kinds),
        "tables": sorted(facts.tables),
        "has_where": facts.has_where,
        "has_limit": facts.has_limit,
    }


@lru_cache(maxsize=4096)
def _cached_facts(text: str) -> _Facts:
    parses: list[_Facts] = []
    errors: list[str] = []
    for dialect in DIALECTS:
        try:
            parses.append(_facts_for_dialect(text, dialect))
        except Exception as exc:  # any parser failure means "not in this dialect"
            lines = str(exc).strip().splitlines()
            message = _TOKEN_REPR.sub("", lines[0] if lines else type(exc).__name__)
            if message not in errors:
                errors.append(message)
    if not parses:
        raise SqlUnparseable(text, "; ".join(errors))
    return _merge(parses)


class _NotAStatementError(Exception):
    """A dialect parsed the text into something that is not a statement."""


def _merge(parses: list[_Facts]) -> _Facts:
    if len(parses) == 1:
        return parses[0]
    # The parse with the most statements gives the per-statement kinds; the overall kind is
    # the most dangerous any parse saw (so it may be missing from ``kinds``).
    return _Facts(
        kind=max((f.kind for f in parses), key=kind_rank),
        kinds=max(parses, key=lambda f: len(f.kinds)).kinds,
        tables=frozenset().union(*(f.tables for f in parses)),
        has_where=all(f.has_where for f in parses),
        has_limit=all(f.has_limit for f in parses),
    )


def _facts_for_dialect(text: str, dialect: str) -> _Facts:
    trees = [t for t in sqlglot.parse(text, read=dialect or None) if t is not None]
    statements: list[exp.Expression] = []
    for tree in trees:
        if isinstance(tree, exp.Semicolon):  # a trailing comment after the last ';'
            continue
        if not isinstance(tree, _STATEMENT_TYPES):
            raise _NotAStatementError(f"top-level {type(tree).__name__} is not a SQL statement")
        statements.append(_unwrap_explain(tree, dialect))

    kinds = tuple(_statement_kind(s) for s in statements)
    tables = frozenset(_tables(statements))

    dml = [n for s in statements for n in s.find_all(*_FILTERABLE_DML)]
    filterable = dml or [s for s in statements if isinstance(s, exp.Select)]
    has_where = bool(filterable) and all(_has_real_where(n) for n in filterable)

    limitable = [s for s in statements if isinstance(s, _LIMITABLE)]
    has_limit = bool(limitable) and all(
        s.args.get("limit") is not None or s.args.get("fetch") is not None for s in limitable
    )
    return _Facts(
        kind=max(kinds, key=kind_rank, default=""),
        kinds=kinds,
        tables=tables,
        has_where=has_where,
        has_limit=has_limit,
    )


def _unwrap_explain(stmt: exp.Expression, dialect: str) -> exp.Expression:
    """``EXPLAIN [options] <stmt>`` that sqlglot kept as an opaque Command -> the inner stmt.

    Falls back to the Command itself when the remainder does not parse as one statement.
    """
    if not (isinstance(stmt, exp.Command) and str(stmt.this).upper() == "EXPLAIN"):
        return stmt
    rest = stmt.expression.name if isinstance(stmt.expression, exp.Literal) else ""
    while True:
        stripped = _EXPLAIN_OPTION.sub("", rest, count=1)
        if stripped == rest:
            break
        rest = stripped
    try:
        inner = [t for t in sqlglot.parse(rest, read=dialect or None) if t is not None]
    except SqlglotError:
        return stmt
    if len(inner) == 1 and isinstance(inner[0], _STATEMENT_TYPES):
        return inner[0]
    return stmt


def _statement_kind(stmt: exp.Expression) -> str:
    own = _own_kind(stmt)
    nested = (_own_kind(n) for n in stmt.find_all(*_NESTED_DML) if n is not stmt)
    return max((own, *nested), key=kind_rank)


def _own_kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper() or "COMMAND"
    for cls in type(node).__mro__:
        kind = _KIND_BY_CLASS.get(cls)
        if kind is not None:
            return kind
    return type(node).__name__.upper()


def _tables(statements: Iterable[exp.Expression]) -> Iterable[str]:
    for stmt in statements:
        cte_names = {cte.alias_or_name.lower() for cte in stmt.find_all(exp.CTE)}
        for table in stmt.find_all(exp.Table):
            name = table.name.lower()
            if not name:
                continue
            qualifier = [p.lower() for p in (table.catalog, table.db) if p]
            if not qualifier and name in cte_names:
                continue
            yield ".".join([*qualifier, name])


def _has_real_where(node: exp.Expression) -> bool:
    where = node.args.get("where")
    return isinstance(where, exp.Where) and where.find(exp.Column) is not None
