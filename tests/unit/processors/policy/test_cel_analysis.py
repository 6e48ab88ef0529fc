"""cel_analysis: unknown fields and functions, what a condition reads, and its worst-case cost."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from processors.errors import PolicyInvalid
from processors.policy.cel_analysis import ACCUMULATED, ELEMENT, ITERATION, TICK_FUNCTION, analyse, instrument
from processors.policy.files import load_policy_text
from processors.policy.limits import DEFAULT_LIMITS, PolicyLimits

EXAMPLE = Path(__file__).parents[4] / "processors" / "policies" / "example.yaml"
BUDGET = DEFAULT_LIMITS.rule_cost_budget


def problems(expression: str, limits: PolicyLimits = DEFAULT_LIMITS) -> str:
    return " | ".join(analyse(expression, limits).problems)


# --- fields of every documented variable -------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("action.no_such_field == 1", "action has no field 'no_such_field'"),
        ("action.typ == 'deploy'", "did you mean 'type'?"),
        ("action['typo'] == 'x'", "did you mean 'type'?"),
        ("has(action.resourse)", "did you mean 'resource'?"),
        ("'dba' in actor.rolez", "actor has no field 'rolez'; did you mean 'roles'?"),
        ("actor.name == 'x'", "actor has no field 'name'"),
        ("sql.no_such_fact", "sql has no field 'no_such_fact'"),
        ("sql.has_wher", "did you mean 'has_where'?"),
        ("now.year > 2000", "now is a timestamp and has no field 'year'"),
        ("action.type.prefix == 'x'", "action.type is a string and has no field 'prefix'"),
        ("action.authenticated.value", "is a bool"),
        ("action.attributes.rows.value > 1", "action.attributes.rows is an attribute value"),
        ("actor.attributes.team.name == 'x'", "has no field 'name'"),
        ("sql.tables.first == 'x'", "sql.tables is a list"),
    ],
)
def test_unknown_members_are_problems(expression: str, expected: str) -> None:
    assert expected in problems(expression)


def test_unknown_field_lists_the_fields_and_where_free_facts_go() -> None:
    found = problems("action.rows > 1")
    assert "its fields: attributes, authenticated, resource, service, tenant, type" in found
    assert "facts of your own go in action.attributes.<key>" in found


@pytest.mark.parametrize(
    "expression",
    [
        "action.attributes.anything == 1",
        "has(action.attributes.rows) && action.attributes.rows > 5",
        "actor.attributes['team-name'] == 'pay'",
        "action.type == 'x' && action.resource != '' && action.service != '' && action.tenant != ''",
        "action.authenticated && actor.id != '' && size(actor.roles) > 0",
        "sql.kind == 'DELETE' && sql.kinds.size() > 0 && sql.statements > 0 && sql.tables.size() > 0",
        "sql.has_where || sql.has_limit || sql.present || sql.parsed",
        "now.getFullYear() > 2000 && now > timestamp('2024-01-01T00:00:00Z')",
        "actor.roles.exists(action, action == 'x')",  # a macro variable shadows `action`
    ],
)
def test_documented_members_and_free_maps_pass(expression: str) -> None:
    assert analyse(expression).problems == ()


def test_reads_are_the_longest_static_paths() -> None:
    reads = analyse(
        "has(action.attributes.rows) && action.attributes.rows > 1 && 'dba' in actor.roles "
        "&& actor.roles.exists(r, r == action.type) && action.attributes.exists(k, k == 'x') && now > now"
    ).reads
    assert reads == {
        ("action", "attributes", "rows"),
        ("actor", "roles"),
        ("action", "type"),
        ("action", "attributes"),
        ("now",),
    }


# --- variables, functions, results ---------------------------------------------------------


def test_unknown_variable_with_a_hint() -> None:
    assert "unknown variable 'acton'" in problems("acton.type == 'x'")
    assert "did you mean 'action'?" in problems("acton.type == 'x'")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("action.type.lowerAscii() == 'x'", "unknown function lowerAscii()"),
        ("action.type.startswith('x')", "did you mean 'startsWith'?"),
        ("max(1, 2) == 2", "unknown function max()"),
        ("contains(action.type, 'x')", "contains() is called on a value"),
        ("action.type.int() == 1", "int() is called as a function"),
        ("now.getHours('Europe/Paris') == 1", "time zones are not supported"),
        ("actor.roles.contains('x')", "contains() works on strings; actor.roles is a list"),
        ("Foo{a: 1} == 1", "message construction"),
    ],
)
def test_functions_the_engine_does_not_provide(expression: str, expected: str) -> None:
    assert expected in problems(expression)


@pytest.mark.parametrize("expression", ["1 + 1", "'yes'", "[true]", "actor.roles", "now"])
def test_a_condition_that_cannot_be_a_bool(expression: str) -> None:
    assert "a condition must be a bool" in problems(expression)


def test_a_value_that_may_be_a_bool_at_runtime_passes() -> None:
    assert analyse("action.attributes.approved").problems == ()


def test_iterating_over_an_attribute_value_is_a_problem() -> None:
    assert "action.attributes.tags is an attribute value" in problems("action.attributes.tags.exists(t, t == 'x')")


# --- cost ------------------------------------------------------------------------------------

MACROS = ["all", "exists", "exists_one", "map", "filter"]


def body(macro: str, inner: str) -> str:
    """A boolean condition around a comprehension (map/filter yield lists)."""
    return f"size({inner}) > 0" if macro in ("map", "filter") else inner


def test_the_example_policy_is_well_within_the_budget() -> None:
    rules = yaml.safe_load(EXAMPLE.read_text())["rules"]
    for rule in rules:
        analysis = analyse(rule.get("when", "true"))
        assert analysis.problems == (), rule["id"]
        assert analysis.cost < BUDGET / 2, (rule["id"], analysis.cost)


@pytest.mark.parametrize("macro", MACROS)
def test_one_comprehension_over_an_input_list_is_affordable(macro: str) -> None:
    cost = analyse(body(macro, f"actor.roles.{macro}(r, r == 'dba')")).cost
    if macro in ("map", "filter"):
        # cel-rust copies the result on every append: quadratic in the range's bound.
        n = DEFAULT_LIMITS.max_items
        assert cost >= ACCUMULATED * n * (n - 1) // 2
        assert cost > BUDGET
    else:
        assert DEFAULT_LIMITS.max_items * ITERATION <= cost <= BUDGET


@pytest.mark.parametrize("outer", MACROS)
@pytest.mark.parametrize("inner", ["all", "exists", "exists_one"])
def test_nested_comprehensions_over_inputs_multiply_and_are_refused(outer: str, inner: str) -> None:
    nested = body(outer, f"actor.roles.{outer}(r, sql.tables.{inner}(t, t == r))")
    analysis = analyse(nested)
    assert analysis.cost >= DEFAULT_LIMITS.max_items**2
    assert any("over the budget" in p for p in analysis.problems)


def test_nesting_within_smaller_bounds_fits() -> None:
    small = PolicyLimits(max_items=10)
    assert analyse("actor.roles.exists(r, sql.tables.exists(t, t == r))", small).problems == ()


def test_the_200_cubed_comprehension_is_refused_with_its_estimate() -> None:
    items = "[" + ",".join(str(i) for i in range(200)) + "]"
    analysis = analyse(f"{items}.all(x, {items}.all(y, {items}.all(z, x + y + z >= 0)))")
    assert analysis.cost >= 200**3 * ITERATION
    [problem] = analysis.problems
    assert f"worst-case cost {analysis.cost:,} units is over the budget of {BUDGET:,}" in problem


def test_list_literals_cost_per_element_and_are_rebuilt_inside_loops() -> None:
    items = "[" + ",".join(["1"] * 1500) + "]"
    alone = analyse(f"size({items}) > 1").cost
    assert alone >= 1500 * ELEMENT
    looped = analyse(f"actor.roles.exists(r, size({items}) > 1)").cost
    assert looped >= DEFAULT_LIMITS.max_items * alone
    assert "over the budget" in problems(f"actor.roles.exists(r, size({items}) > 1)")


def test_huge_list_literal_in_a_comprehension_is_refused() -> None:
    items = "[" + ",".join(["0"] * 4000) + "]"
    assert "over the budget" in problems(f"{items}.exists(x, x == 1)")


@pytest.mark.parametrize(
    ("expression", "refused"),
    [
        ("action.attributes.blob.contains('DROP')", False),
        ("action.attributes.blob.matches('^[a-z]+$')", False),
        ("action.attributes.blob.startsWith(action.attributes.prefix)", False),
        ("action.attributes.a + action.attributes.b == action.attributes.c", False),
        ("actor.roles.exists(r, action.attributes.blob.contains(r))", True),
        ("action.attributes.blob.matches(action.attributes.pattern)", True),
        ("actor.attributes.exists(k, actor.attributes[k] == action.attributes.blob)", True),
        ("actor.roles.exists(r, action.resource.contains(r))", False),
    ],
)
def test_string_work_scales_with_the_bounded_length(expression: str, refused: bool) -> None:
    assert ("over the budget" in problems(expression)) is refused


def test_cost_grows_with_the_value_bound() -> None:
    cheap = analyse("action.attributes.blob.contains('x')", PolicyLimits(max_value_chars=1024)).cost
    dear = analyse("action.attributes.blob.contains('x')", PolicyLimits(max_value_chars=1024 * 1024)).cost
    assert dear > 100 * cheap


# --- through validation: file:line ---------------------------------------------------------


def test_validation_reports_each_problem_at_its_line() -> None:
    text = (
        "name: p\ndefault: allow\nrules:\n"
        "  - id: field\n    effect: block\n    when: action.no_such_field == 1\n"
        "  - id: fact\n    effect: block\n    when: sql.no_such_fact\n"
        "  - id: role\n    effect: block\n    when: \"'dba' in actor.rolez\"\n"
        "  - id: cost\n    effect: block\n    when: actor.roles.exists(r, sql.tables.exists(t, t == r))\n"
        "  - id: fine\n    effect: block\n    when: action.attributes.anything == 1\n"
    )
    with pytest.raises(PolicyInvalid) as info:
        load_policy_text(text, source="p.yaml")
    found = {(p.line, p.rule_id) for p in info.value.problems}
    assert found == {(6, "field"), (9, "fact"), (12, "role"), (15, "cost")}
    rendered = str(info.value)
    assert "p.yaml:12: rule 'role': 'when' is not a valid condition: actor has no field 'rolez'" in rendered
    assert "p.yaml:15: rule 'cost': 'when' is not a valid condition: worst-case cost" in rendered


# --- instrumentation -------------------------------------------------------------------------


def test_every_comprehension_body_gets_a_deadline_check() -> None:
    source = "actor.roles.exists(r, sql.tables.all(t, t != r)) && [1].map(x, x > 0, x).size() > 0"
    analysis = analyse(source)
    instrumented = instrument(source, analysis)
    assert instrumented.count(f"{TICK_FUNCTION}()") == 3
    assert instrument("action.type == 'x'", analyse("action.type == 'x'")) == "action.type == 'x'"
