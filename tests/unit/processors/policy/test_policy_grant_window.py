"""grant: window needs an explicit, boundary-ending resource prefix; problems name file and line."""

from __future__ import annotations

import pytest

from processors.errors import PolicyInvalid
from processors.policy.files import load_policy_text

_POLICY = """\
name: p
default: allow
rules:
  - id: prod-delete
    match:
      types: [db.query]
    effect: review
    review:
      approvers: [dba]
{review}
"""


def _load(review: str) -> dict[str, object]:
    return load_policy_text(_POLICY.format(review=review), source="g.yaml")


def test_window_grant_with_prefix_loads() -> None:
    record = _load("      grant: window\n      grant_window: 2h\n      grant_resource_prefix: db/prod/")
    review = record["rules"][0]["review"]  # type: ignore[index]
    assert (review["grant"], review["grant_window_s"], review["grant_resource_prefix"]) == ("window", 7200, "db/prod/")


def test_one_action_grant_has_no_prefix() -> None:
    review = _load("      grant: action")["rules"][0]["review"]  # type: ignore[index]
    assert (review["grant"], review["grant_window_s"], review["grant_resource_prefix"]) == ("action", 0, "")


@pytest.mark.parametrize(("lines", "line", "message"), [
    ("      grant: window\n      grant_window: 2h", 9, "grant window needs 'grant_resource_prefix'"),
    ("      grant: window\n      grant_window: 2h\n      grant_resource_prefix: db/prod", 12,
     "must end with '/'"),
    ("      grant: window\n      grant_window: 2h\n      grant_resource_prefix: /", 12, "must end with '/'"),
    ("      grant: window\n      grant_window: 2h\n      grant_resource_prefix: 'db/*/'", 12, "plain prefix"),
    ("      grant: window\n      grant_window: 2h\n      grant_resource_prefix: [db/]", 12, "non-empty string"),
    ("      grant_resource_prefix: db/prod/", 10, "'grant_resource_prefix' only applies to grant window"),
    ("      grant: window\n      grant_resource_prefix: db/prod/", 9, "needs 'grant_window'"),
])
def test_bad_grant_scope_is_reported_at_its_line(lines: str, line: int, message: str) -> None:
    with pytest.raises(PolicyInvalid) as info:
        _load(lines)
    problems = [p for p in info.value.problems if message in p.message]
    assert problems, [str(p) for p in info.value.problems]
    assert (problems[0].file, problems[0].line, problems[0].rule_id) == ("g.yaml", line, "prod-delete")
