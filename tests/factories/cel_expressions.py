"""Random CEL conditions over the engine's variables, for property tests of the analysis.

One generator, two uses: the parser must read whatever ``cel.compile`` accepts, and what
the engine runs (flattened fields, deadline checks, its own bindings) must decide exactly
as plain cel does on the expression as written.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

__all__ = ["ACTION", "CONTEXT", "NOW_US", "conditions", "deterministic", "expressions"]

#: A ProposedAction (the fields the engine reads) and the variables plain cel sees for it.
ACTION: dict[str, Any] = {
    "action_id": "a-1",
    "tenant": "default",
    "service": "billing",
    "actor": {"id": "alice", "roles": ["dev", "dba"], "attributes": {"team": "pay"}},
    "type": "db.query",
    "resource": "db/prod/orders",
    "attributes": {"rows": 5, "sql": "DELETE FROM t", "flag": True},
}
NOW_US = 1_704_067_200_000_000
CONTEXT: dict[str, Any] = {
    "action": {
        "type": "db.query",
        "resource": "db/prod/orders",
        "service": "billing",
        "tenant": "default",
        "attributes": {"rows": 5, "sql": "DELETE FROM t", "flag": True},
        "authenticated": True,
    },
    "actor": {"id": "alice", "roles": ["dev", "dba"], "attributes": {"team": "pay"}},
    "sql": {
        "kind": "DELETE",
        "kinds": ["DELETE"],
        "statements": 1,
        "tables": ["t"],
        "has_where": False,
        "has_limit": False,
        "present": True,
        "parsed": True,
    },
    "now": datetime(2024, 1, 1, tzinfo=UTC),
}

_leaves = st.sampled_from(
    [
        "1",
        "0x2",
        "3u",
        "2.5",
        "-1",
        '"dba"',
        "'x'",
        'r"a\\d"',
        "b'by'",
        "true",
        "false",
        "null",
        "action.type",
        "action.attributes.rows",
        "action.attributes.flag",
        "action.attributes",
        "action['attributes']['rows']",
        "action",
        "actor.roles",
        "actor.id",
        "actor.attributes.team",
        "sql.kinds",
        "sql.tables",
        "sql.has_where",
        "now",
        "v",
        "[1, 2, 3]",
        '["dev", "ops"]',
        '{"a": 1}',
    ]
)


def _compose(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(children, children)
    return st.one_of(
        st.tuples(children, st.sampled_from(["&&", "||", "==", "!=", "<", "+", "*", "in", "-"]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        children.map(lambda a: f"!{a}"),
        st.tuples(children, children, children).map(lambda t: f"{t[0]} ? {t[1]} : ({t[2]})"),
        pair.map(lambda t: f"[{t[0]}, {t[1]}]"),
        pair.map(lambda t: f"{{{t[0]}: {t[1]}}}"),
        children.map(lambda a: f"size({a})"),
        pair.map(lambda t: f"{t[0]}.contains({t[1]})"),
        pair.map(lambda t: f"({t[0]})[{t[1]}]"),
        # Ranges are lists only: cel-rust iterates a map in hash order, which differs between
        # runs, and stops at the first error, so a comprehension over a map may yield an
        # error in one run and a value in the next.
        st.tuples(
            st.sampled_from(["actor.roles", "[1, 2]", "sql.kinds", "sql.tables"]),
            st.sampled_from(["all", "exists", "exists_one", "map", "filter"]),
            children,
        ).map(lambda t: f"{t[0]}.{t[1]}(v, {t[2]})"),
        children.map(lambda a: f"[1, 2].map(v, v > 1, {a})"),
        st.sampled_from(["has(action.attributes.rows)", "has(action.attributes.nope)", "has(action.type)"]),
    )


#: Any expression: values of every kind, errors included.
expressions = st.recursive(_leaves, _compose, max_leaves=12)
#: Expressions shaped as conditions (comparisons and membership tests of expressions).
conditions = st.one_of(
    st.tuples(expressions, expressions).map(lambda t: f"({t[0]}) == ({t[1]})"),
    st.tuples(expressions, expressions).map(lambda t: f"({t[0]}) in [{t[1]}, 'dba']"),
    expressions.map(lambda a: f"actor.roles.exists(v, ({a}) == v)"),
    expressions.map(lambda a: f"has(action.attributes.rows) && ({a}) != null"),
)


def deterministic(run: Callable[[], object], tries: int = 8) -> bool:
    """Whether ``run`` (one evaluation on a fresh context) gives one outcome ``tries`` times.

    cel-rust orders a map by hash, per context: ``actor.roles + action.attributes`` lists
    the keys in a different order each time, so an expression indexing into it has no
    single right answer to compare with; property tests skip such expressions.
    """
    outcomes = set()
    for _ in range(tries):
        try:
            outcomes.add(repr(run()))
        except Exception as exc:
            outcomes.add(type(exc).__name__)
    return len(outcomes) == 1
