"""policy_cases: the example cases pass, cover every rule, and failures/invalid files explain."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from processors.errors import PolicyCasesInvalid, PolicyInvalid
from processors.policy.cases import load_cases_text, run_case_file, run_cases
from processors.policy.engine import CompiledPolicy
from processors.policy.files import load_policy_file, load_policy_text
from schemas.codec import get_codec

POLICIES = Path(__file__).parents[4] / "processors" / "policies"


def test_example_cases_all_pass() -> None:
    results = run_case_file(POLICIES / "example.yaml", POLICIES / "example_cases.yaml")
    assert results
    failed = [str(r) for r in results if not r.passed]
    assert failed == []


def test_example_cases_cover_every_rule_matching_and_not_matching() -> None:
    rules = {r["id"] for r in load_policy_file(POLICIES / "example.yaml")["rules"]}
    cases = yaml.safe_load((POLICIES / "example_cases.yaml").read_text())
    expected = {rule for case in cases for rule in case["expect_rules"]}
    assert rules <= expected
    assert all("expect_rules" in case for case in cases)
    assert {"allow", "block", "review"} == {case["expect"] for case in cases}


def test_example_cases_distinguish_evaluation_errors_from_rule_verdicts() -> None:
    results = run_case_file(POLICIES / "example.yaml", POLICIES / "example_cases.yaml")
    bases = {r.case.name: r.decision.basis for r in results}
    assert bases["rows sent as a string cannot be compared and blocks via on_error"] == "evaluation_error"
    assert bases["delete without where on prod is blocked"] == "rule"


POLICY = CompiledPolicy.from_record(
    load_policy_text(
        "name: p\ndefault: allow\nrules:\n"
        "  - {id: prod, effect: block, match: {resources: ['db/prod/*']}}\n"
        "  - {id: shadowy, effect: block, mode: shadow}\n"
    )
)


def test_failures_say_what_differs() -> None:
    cases = load_cases_text(
        "- name: wrong decision\n"
        "  action: {type: db.query, resource: db/prod/x}\n"
        "  expect: allow\n"
        "- name: wrong rules\n"
        "  action: {type: db.query, resource: db/prod/x}\n"
        "  expect: block\n"
        "  expect_rules: [prod, other]\n"
        "- name: right\n"
        "  action: {type: db.query, resource: db/dev/x}\n"
        "  expect: allow\n"
        "  expect_rules: [shadowy]\n"
    )
    wrong, rules, right = run_cases(POLICY, cases)
    assert not wrong.passed and "expected allow, got block" in wrong.reason
    assert not rules.passed
    assert "missing ['other']" in rules.reason and "unexpected ['shadowy']" in rules.reason
    assert right.passed
    assert str(wrong).startswith("FAIL wrong decision (line 1)")


def test_defaults_build_a_schema_valid_action() -> None:
    [case] = load_cases_text("- name: c\n  action: {type: t, resource: r, sql: SELECT 1}\n  expect: allow\n")
    assert case.authenticated is True
    action = {"tenant": "default", **case.action}
    assert action["attributes"] == {"sql": "SELECT 1"}
    assert action["service"] == "policy-test"
    codec = get_codec()
    assert codec.decode_as("ProposedAction", codec.encode("ProposedAction", action)) == action


def test_authenticated_false_reaches_the_engine() -> None:
    p = CompiledPolicy.from_record(
        load_policy_text(
            "name: p\ndefault: allow\nrules:\n  - {id: u, effect: block, when: '!action.authenticated'}\n"
        )
    )
    [case] = load_cases_text(
        "- name: c\n  action: {type: t, resource: r, authenticated: false}\n  expect: block\n"
    )
    assert run_cases(p, [case])[0].passed


def test_invalid_cases_file_lists_problems_with_lines() -> None:
    text = (
        "- name: a\n"
        "  action: {type: t, resource: r, colour: red}\n"
        "  expect: maybe\n"
        "- name: a\n"
        "  action:\n"
        "    type: t\n"
        "    attributes: {nested: [1, 2]}\n"
        "    actor: {id: x, roles: admin}\n"
        "  expect: block\n"
    )
    with pytest.raises(PolicyCasesInvalid) as info:
        load_cases_text(text, source="c.yaml")
    lines = {p.line for p in info.value.problems}
    assert {2, 3, 6, 7, 8} <= lines, [str(p) for p in info.value.problems]
    assert isinstance(info.value, PolicyInvalid)
    assert "c.yaml:3: 'expect' must be allow, block or review" in str(info.value)


def test_cases_file_must_be_a_list() -> None:
    with pytest.raises(PolicyCasesInvalid, match="must be a list"):
        load_cases_text("name: x\n")
