"""The evolution check accepts compatible changes and rejects breaking ones."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from schemas.codec import SCHEMA_NAMES, load_schema_json
from schemas.errors import IncompatibleSchema
from schemas.evolution import check_full, check_release


def _current() -> dict[str, Any]:
    return {n: load_schema_json(n) for n in SCHEMA_NAMES}


def test_current_schemas_are_compatible_with_the_last_release() -> None:
    check_release()


def test_adding_a_field_with_a_default_is_compatible() -> None:
    old = _current()
    new = copy.deepcopy(old)
    new["Verdict"]["fields"].append({"name": "region", "type": "string", "default": "eu"})
    assert check_full(old, new, "Verdict") == []


def test_adding_a_field_without_default_is_rejected() -> None:
    old = _current()
    new = copy.deepcopy(old)
    new["Verdict"]["fields"].append({"name": "region", "type": "string"})
    problems = check_full(old, new, "Verdict")
    assert any("Verdict.region: field added without a default" in p for p in problems)


def test_removing_a_field_without_default_is_rejected() -> None:
    old = _current()
    new = copy.deepcopy(old)
    new["Verdict"]["fields"] = [f for f in new["Verdict"]["fields"] if f["name"] != "reason"]
    problems = check_full(old, new, "Verdict")
    assert any("old cannot read new" in p and "reason" in p for p in problems)


def test_retyping_a_field_is_rejected() -> None:
    old = _current()
    new = copy.deepcopy(old)
    for f in new["Verdict"]["fields"]:
        if f["name"] == "policy_version":
            f["type"] = "string"
    assert check_full(old, new, "Verdict")


def test_removing_an_enum_symbol_is_rejected() -> None:
    old = _current()
    new = copy.deepcopy(old)
    for f in new["MatchedRule"]["fields"]:
        if f["name"] == "mode":
            f["type"]["symbols"] = ["enforce"]
    problems = check_full(old, new, "Verdict")
    assert any("enum symbols ['shadow']" in p for p in problems)


def test_check_release_raises_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import schemas.evolution as evo

    real = evo.load_schema_json  # type: ignore[attr-defined]

    def patched(name: str, released: str | None = None) -> dict[str, Any]:
        data = real(name, released)
        if released is None and name == "Checkpoint":
            data["fields"].append({"name": "witness", "type": "string"})
        return data

    monkeypatch.setattr(evo, "load_schema_json", patched)
    with pytest.raises(IncompatibleSchema, match=r"Checkpoint\.witness"):
        check_release()
