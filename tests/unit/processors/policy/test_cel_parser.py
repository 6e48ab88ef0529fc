"""cel_parser: the syntax tree agrees with cel on every expression cel accepts, and spans are exact."""

from __future__ import annotations

from typing import Any

import cel
import pytest
from hypothesis import assume, given, settings

from processors.policy.cel_analysis import FLATTENED, TICK_FUNCTION, analyse, instrument
from processors.policy.cel_parser import (
    Binary,
    Call,
    CelSyntaxError,
    Comprehension,
    Conditional,
    Ident,
    Index,
    ListLit,
    Literal,
    MapLit,
    Message,
    Node,
    Select,
    Unary,
    parse,
)
from tests.factories.cel_expressions import CONTEXT, deterministic, expressions


def text(source: str, node: Node) -> str:
    return source[node.start : node.end]


def test_precedence_follows_the_cel_grammar() -> None:
    tree = parse("a || b && c == d + e * f")
    assert isinstance(tree, Binary) and tree.op == "||"
    assert isinstance(tree.right, Binary) and tree.right.op == "&&"
    equality = tree.right.right
    assert isinstance(equality, Binary) and equality.op == "=="
    assert isinstance(equality.right, Binary) and equality.right.op == "+"
    assert isinstance(equality.right.right, Binary) and equality.right.right.op == "*"


def test_conditional_is_right_associative_and_unary_repeats() -> None:
    tree = parse("a ? b : c ? d : !!e")
    assert isinstance(tree, Conditional) and isinstance(tree.otherwise, Conditional)
    inner = tree.otherwise.otherwise
    assert isinstance(inner, Unary) and isinstance(inner.operand, Unary) and isinstance(inner.operand.operand, Ident)


def test_member_chains_calls_and_indexes() -> None:
    source = 'action.attributes["k"].size() > size(actor.roles[0])'
    tree = parse(source)
    assert isinstance(tree, Binary)
    left, right = tree.left, tree.right
    assert isinstance(left, Call) and left.function == "size" and isinstance(left.target, Index)
    assert text(source, left.target) == 'action.attributes["k"]'
    assert isinstance(right, Call) and right.target is None and isinstance(right.args[0], Index)


def test_macros_become_comprehensions_and_has_a_test_only_select() -> None:
    source = "actor.roles.exists(r, r == 'x') && has(action.attributes.rows) && l.map(x, x > 1, x * 2)"
    tree = parse(source)
    assert isinstance(tree, Binary) and isinstance(tree.left, Binary)
    exists = tree.left.left
    assert isinstance(exists, Comprehension) and (exists.macro, exists.var) == ("exists", "r")
    assert text(source, exists.args[0]) == "r == 'x'"
    has = tree.left.right
    assert isinstance(has, Select) and has.test_only and has.field == "rows"
    three = tree.right
    assert isinstance(three, Comprehension) and three.macro == "map" and len(three.args) == 2
    # Not macros: a non-identifier first argument, or a wrong argument count.
    assert isinstance(parse("l.all(1, true)"), Call)
    assert isinstance(parse("l.exists(x, y, true)"), Call)


@pytest.mark.parametrize(
    ("source", "kind", "value", "size"),
    [
        ("42", "int", 42, 0),
        ("0x1F", "int", 31, 0),
        ("7u", "uint", 7, 0),
        ("1.5e3", "double", 1500.0, 0),
        (".5", "double", 0.5, 0),
        ('"a\\tb\\u00e9\\x41"', "string", "a\tbéA", 5),
        ("'it\\'s'", "string", "it's", 4),
        ('r"a\\d"', "string", "a\\d", 3),
        ('"""tri"ple"""', "string", 'tri"ple', 7),
        ("b'xy'", "bytes", b"xy", 2),
        ("true", "bool", True, 0),
        ("null", "null", None, 0),
    ],
)
def test_literals(source: str, kind: str, value: Any, size: int) -> None:
    node = parse(source)
    assert isinstance(node, Literal)
    assert (node.kind, node.value, node.size) == (kind, value, size)


def test_collections_and_message_construction() -> None:
    lst = parse("[1, 2, 3,]")
    assert isinstance(lst, ListLit) and len(lst.items) == 3
    mapping = parse('{"a": 1, "b": [2]}')
    assert isinstance(mapping, MapLit) and len(mapping.entries) == 2
    message = parse("google.protobuf.Timestamp{seconds: 1}")
    assert isinstance(message, Message) and message.name == "google.protobuf.Timestamp"


def test_spans_include_parentheses_so_insertions_stay_balanced() -> None:
    source = "l.all(x, (x > 1) || x == 0)"
    tree = parse(source)
    assert isinstance(tree, Comprehension)
    assert text(source, tree.args[0]) == "(x > 1) || x == 0"
    assert text(source, tree) == source


def test_comments_and_whitespace_are_skipped() -> None:
    tree = parse("a // the actor\n  && b")
    assert isinstance(tree, Binary) and tree.op == "&&"


@pytest.mark.parametrize("source", ["1 +", "a.", "(a", "[1, 2", "a ? b", "'open", "a.true", "#"])
def test_syntax_errors(source: str) -> None:
    with pytest.raises(CelSyntaxError):
        parse(source)


# --- agreement with cel, and instrumentation that changes nothing ---------------------


def _canonical(value: Any) -> Any:
    """Order-free: cel iterates maps in hash order, which differs between contexts, and
    lists built from maps (``roles + attributes``) inherit that order."""
    if isinstance(value, dict):
        return sorted((repr(k), repr(_canonical(v))) for k, v in value.items())
    if isinstance(value, list):
        return sorted(repr(_canonical(v)) for v in value)
    return repr(value)


def _run(program: Any) -> tuple[str, Any]:
    flattened = {flat: CONTEXT[root][name] for (root, name), flat in FLATTENED.items()}
    context = cel.Context({**CONTEXT, **flattened}, {TICK_FUNCTION: lambda: True})
    try:
        return "value", _canonical(program.execute(context))
    except Exception as exc:
        return "error", type(exc).__name__


@settings(max_examples=300, deadline=None, derandomize=True)
@given(expressions)
def test_parser_reads_whatever_cel_compiles_and_instrumenting_changes_no_result(source: str) -> None:
    original: Any = None
    try:
        original = cel.compile(source)
    except Exception:
        pass
    assume(original is not None and deterministic(lambda: _run(original)))
    analysis = analyse(source)  # must not raise, and must not report an unreadable expression
    assert not any("cannot read" in p for p in analysis.problems), analysis.problems
    instrumented = instrument(source, analysis)
    assert instrumented.count(TICK_FUNCTION) == sum(TICK_FUNCTION in text for *_, text in analysis.edits)
    assert _run(cel.compile(instrumented)) == _run(original)
