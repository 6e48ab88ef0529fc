"""Policy size limits: an oversized policy is refused before it is parsed, with file:line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.errors import PolicyInvalid, PolicyTooLarge
from processors.policy import files
from processors.policy.files import load_policy_file, load_policy_text
from processors.policy.limits import DEFAULT_LIMITS, PolicyLimits

# --- size: refused before parsing -----------------------------------------------------------


@pytest.fixture
def no_yaml(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if the YAML parser is reached."""

    def refuse(*_: Any) -> None:
        raise AssertionError("the oversized policy was parsed")

    monkeypatch.setattr(files, "compose_yaml", refuse)
    yield


def test_oversized_file_is_refused_unparsed(tmp_path: Path, no_yaml: None) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# padding\n" * (DEFAULT_LIMITS.max_policy_bytes // 10 + 1))
    with pytest.raises(PolicyTooLarge) as info:
        load_policy_file(path)
    assert isinstance(info.value, PolicyInvalid)
    [problem] = info.value.problems
    assert (problem.file, problem.line) == (str(path), 1)
    assert f"a policy may be at most {DEFAULT_LIMITS.max_policy_bytes:,} bytes (256 KiB)" in problem.message
    assert f"the file is {path.stat().st_size:,} bytes" in problem.message
    assert "Nothing was parsed or published" in problem.message


def test_oversized_text_is_refused_unparsed(no_yaml: None) -> None:
    with pytest.raises(PolicyTooLarge, match="at most 1,000 bytes"):
        load_policy_text("x" * 1001, limits=PolicyLimits(max_policy_bytes=1000))


def test_a_file_at_the_limit_is_parsed(tmp_path: Path) -> None:
    text = "name: p\ndefault: allow\nrules: []\n"
    path = tmp_path / "p.yaml"
    path.write_text(text + "#" * (DEFAULT_LIMITS.max_policy_bytes - len(text)))
    assert load_policy_file(path)["name"] == "p"


def test_too_many_rules_are_refused_before_any_is_compiled() -> None:
    rules = "".join(f"  - {{id: r{i}, effect: block, when: 'not CEL ('}}\n" for i in range(4))
    with pytest.raises(PolicyTooLarge) as info:
        load_policy_text(f"name: p\ndefault: allow\nrules:\n{rules}", source="p.yaml", limits=PolicyLimits(max_rules=3))
    [problem] = info.value.problems  # the broken CEL was never looked at
    assert (problem.line, problem.rule_id) == (3, None)
    assert "the policy has 4 rules; a policy may have at most 3" in problem.message


def test_an_overlong_condition_is_refused_before_cel_compiles_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import cel

    def refuse(_: str) -> None:
        raise AssertionError("cel.compile saw the overlong expression")

    monkeypatch.setattr(cel, "compile", refuse)
    long_when = " || ".join(["action.type == 'x'"] * 600)
    with pytest.raises(PolicyInvalid) as info:
        load_policy_text(f"name: p\ndefault: allow\nrules:\n  - id: long\n    effect: block\n    when: {long_when}\n")
    assert f"a condition may have at most {DEFAULT_LIMITS.max_when_chars:,}" in str(info.value)
