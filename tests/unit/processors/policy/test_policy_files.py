"""policy_files: loading the example, record shape, and file:line validation of everything."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from processors.errors import PolicyError, PolicyInvalid, PolicyProblem
from processors.policy.files import check_cel, load_policy_file, load_policy_text
from schemas.codec import get_codec

EXAMPLE = Path(__file__).parents[4] / "processors" / "policies" / "example.yaml"


def test_example_loads_into_the_avro_shape() -> None:
    record = load_policy_file(EXAMPLE, version=7, published_at_us=123, published_by="ci")
    assert record["name"] == "example"
    assert (record["version"], record["published_at"], record["published_by"]) == (7, 123, "ci")
    assert record["source_sha256"] == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    codec = get_codec()
    assert codec.decode_as("PolicySet", codec.encode("PolicySet", record)) == record


def test_defaults_are_filled() -> None:
    record = load_policy_text("name: p\ndefault: block\nrules:\n  - id: r\n    effect: allow\n")
    assert record["tenant"] == "default"
    assert record["on_error"] == "block"
    assert record["version"] == 0
    assert record["rules"] == [
        {
            "id": "r",
            "description": "",
            "match": {"types": [], "resources": [], "services": []},
            "when": "true",
            "effect": "allow",
            "mode": "enforce",
            "message": "",
            "review": None,
        }
    ]


BAD = """\
name: bad
default: maybe
colour: blue
rules:
  - id: one
    effect: block
    when: action.type ==
  - id: one
    effect: allow
  - id: two
    effect: deny
    mode: loud
    match:
      types: db.query
  - id: three
    effect: block
    when: acton.type == "x"
    extra: 1
  - id: four
    description: missing effect
  - id: five
    effect: block
    effect: allow
"""


def test_every_problem_is_reported_with_its_line() -> None:
    with pytest.raises(PolicyInvalid) as info:
        load_policy_text(BAD, source="bad.yaml")
    problems = info.value.problems
    found = {(p.line, p.rule_id) for p in problems}
    expected = {
        (2, None),  # default: maybe
        (3, None),  # unknown key colour
        (7, "one"),  # CEL syntax
        (8, "one"),  # duplicate id
        (11, "two"),  # effect deny
        (12, "two"),  # mode loud
        (14, "two"),  # match.types not a list
        (17, "three"),  # unknown variable
        (18, "three"),  # unknown key extra
        (19, "four"),  # missing effect (reported at the rule)
        (23, None),  # duplicate YAML key
    }
    assert expected <= found, sorted(found)
    text = str(info.value)
    assert "bad.yaml:2: 'default' must be one of allow, block, got 'maybe'" in text
    assert "bad.yaml:3: unknown key 'colour'" in text
    assert "bad.yaml:8: rule 'one': duplicate rule id (first at line 5)" in text
    assert "acton" in text
    assert "bad.yaml:23: duplicate key 'effect' (first at line 22)" in text
    assert isinstance(info.value, PolicyError)


def test_problem_str_is_file_line_message() -> None:
    assert str(PolicyProblem("p.yaml", 4, "r", "oops")) == "p.yaml:4: oops"


def test_yaml_syntax_error_has_a_line() -> None:
    with pytest.raises(PolicyInvalid) as info:
        load_policy_text("name: x\nrules:\n  - id: [unclosed\n", source="s.yaml")
    assert info.value.problems[0].file == "s.yaml"
    assert info.value.problems[0].line >= 3
    assert "YAML syntax error" in info.value.problems[0].message


def test_empty_file_is_invalid() -> None:
    with pytest.raises(PolicyInvalid, match="empty"):
        load_policy_text("", source="e.yaml")


def test_non_string_scalars_are_rejected() -> None:
    with pytest.raises(PolicyInvalid) as info:
        load_policy_text("name: 12\ndefault: allow\nrules: []\n")
    assert "'name' must be a string" in str(info.value)


def test_when_may_be_a_yaml_bool_and_macros_bind_names() -> None:
    record = load_policy_text(
        "name: p\ndefault: allow\nrules:\n"
        "  - {id: a, effect: block, when: true}\n"
        "  - {id: b, effect: block, when: 'actor.roles.exists(r, r == \"x\")'}\n"
    )
    assert [r["when"] for r in record["rules"]] == ["true", 'actor.roles.exists(r, r == "x")']


def test_check_cel() -> None:
    assert check_cel('sql.kind == "DELETE" && now > timestamp("2020-01-01T00:00:00Z")') is None
    assert "does not compile" in (check_cel("1 +") or "")
    assert "unknown variable 'request'" in (check_cel("request.x") or "")
