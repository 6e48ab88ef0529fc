"""Offline ``policy test``: run a YAML file of example actions against a policy.

A cases file is a list of cases::

    - name: delete without where on prod is blocked     # required, unique
      action:
        type: db.query                                  # required
        resource: db/prod/orders                        # required
        service: billing                                # optional, default "policy-test"
        tenant: default                                 # optional, default: the policy's
        authenticated: true                             # optional, default true
        actor: {id: alice, roles: [dba], attributes: {}}  # optional, id default "policy-test"
        attributes: {rows: 5}                           # optional; null/bool/int/float/str
        sql: DELETE FROM orders                         # optional shortcut for attributes.sql
      expect: block                                     # required: allow | block
      expect_rules: [prod-delete-update-without-where]  # optional

``expect_rules``, when given, must equal the *set* of rule ids in the decision's
``matched_rules`` (enforce and shadow, matched or failed): listing them all keeps a case
honest when a new rule starts matching too. Omit it to check only the decision.

The runner builds full ProposedAction dicts (placeholder ids, reply fields) and calls the
same :meth:`~processors.policy.engine.CompiledPolicy.evaluate` the processor calls, so a
passing case means the live processor would decide the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from processors.errors import PolicyCasesInvalid, PolicyProblem
from processors.policy.engine import CompiledPolicy, Decision
from processors.policy.files import RULE_EFFECTS, compose_yaml, load_policy_file

__all__ = [
    "CaseResult",
    "PolicyCase",
    "load_cases",
    "load_cases_text",
    "run_case_file",
    "run_cases",
]

#: 2024-01-01T00:00:00Z: a fixed ``now`` so case outcomes do not depend on the wall clock.
DEFAULT_NOW_US = 1_704_067_200_000_000

_CASE_KEYS = ("name", "action", "expect", "expect_rules")
_ACTION_KEYS = (
    "type",
    "resource",
    "service",
    "tenant",
    "actor",
    "attributes",
    "sql",
    "authenticated",
)
_ACTOR_KEYS = ("id", "roles", "attributes")

_Report = Callable[[yaml.Node, str], None]


@dataclass(frozen=True)
class PolicyCase:
    """One example action and what the policy should decide for it."""

    name: str
    line: int
    action: dict[str, Any]
    authenticated: bool
    expect: str
    expect_rules: frozenset[str] | None


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case: ``passed``, and ``reason`` saying why not (or the decision)."""

    case: PolicyCase
    passed: bool
    reason: str
    decision: Decision

    def __str__(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        return f"{status} {self.case.name} (line {self.case.line}): {self.reason}"


def load_cases(path: str | Path) -> list[PolicyCase]:
    """Read and validate a cases file; raises :class:`~processors.errors.PolicyCasesInvalid`."""
    path = Path(path)
    return load_cases_text(path.read_bytes(), source=str(path))


def load_cases_text(data: bytes | str, *, source: str = "<cases>") -> list[PolicyCase]:
    """Like :func:`load_cases` for text in memory; ``source`` names it in problem locations."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    problems: list[PolicyProblem] = []
    root = compose_yaml(raw, source, problems)
    cases: list[PolicyCase] = []
    if root is not None and not problems:
        if not isinstance(root, yaml.SequenceNode):
            problems.append(PolicyProblem(source, _line(root), None, "a cases file must be a list of cases"))
        else:
            seen: set[str] = set()
            for node in root.value:
                case = _case(node, source, problems)
                if case is None:
                    continue
                if case.name in seen:
                    problems.append(
                        PolicyProblem(source, case.line, None, f"duplicate case name {case.name!r}")
                    )
                seen.add(case.name)
                cases.append(case)
    if root is None and not problems:
        problems.append(PolicyProblem(source, 1, None, "the file is empty; write some cases"))
    if problems:
        raise PolicyCasesInvalid(problems)
    return cases


def run_cases(
    policy: CompiledPolicy, cases: Sequence[PolicyCase], *, now_us: int = DEFAULT_NOW_US
) -> list[CaseResult]:
    """Evaluate each case against ``policy`` and compare with its expectations."""
    results = []
    for case in cases:
        action = {"tenant": policy.tenant, **case.action}
        decision = policy.evaluate(action, authenticated=case.authenticated, now_us=now_us)
        got_rules = frozenset(m["id"] for m in decision.matched_rules)
        failures = []
        if decision.decision != case.expect:
            failures.append(f"expected {case.expect}, got {decision.decision}")
        if case.expect_rules is not None and got_rules != case.expect_rules:
            missing = sorted(case.expect_rules - got_rules)
            extra = sorted(got_rules - case.expect_rules)
            parts = [
                f"missing {missing}" if missing else "",
                f"unexpected {extra}" if extra else "",
            ]
            failures.append("matched rules differ: " + ", ".join(p for p in parts if p))
        summary = f"{decision.decision} ({decision.basis}): {decision.reason}"
        reason = "; ".join(failures) + f" -- decision was {summary}" if failures else summary
        results.append(CaseResult(case=case, passed=not failures, reason=reason, decision=decision))
    return results


def run_case_file(
    policy_path: str | Path, cases_path: str | Path, *, now_us: int = DEFAULT_NOW_US
) -> list[CaseResult]:
    """Load a policy file and a cases file and run the cases (the CLI's one call)."""
    policy = CompiledPolicy.from_record(load_policy_file(policy_path))
    return run_cases(policy, load_cases(cases_path), now_us=now_us)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _case(node: yaml.Node, source: str, problems: list[PolicyProblem]) -> PolicyCase | None:
    before = len(problems)

    def problem(at: yaml.Node, message: str) -> None:
        problems.append(PolicyProblem(source, _line(at), None, message))

    fields = _mapping(node, "a case", _CASE_KEYS, problem)
    if fields is None:
        return None
    for required in ("name", "action", "expect"):
        if required not in fields:
            problem(node, f"case is missing required key {required!r}")
    name = _plain(fields.get("name"))
    if "name" in fields and not (isinstance(name, str) and name):
        problem(fields["name"], "'name' must be a non-empty string")
    expect = _plain(fields.get("expect"))
    if "expect" in fields and expect not in RULE_EFFECTS:
        problem(fields["expect"], f"'expect' must be allow, block or review, got {expect!r}")
    expect_rules: frozenset[str] | None = None
    if "expect_rules" in fields:
        ids = _plain(fields["expect_rules"])
        if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            problem(fields["expect_rules"], "'expect_rules' must be a list of rule ids")
        else:
            expect_rules = frozenset(ids)
    action, authenticated = None, True
    if "action" in fields:
        action_fields = _mapping(fields["action"], "'action'", _ACTION_KEYS, problem)
        if action_fields is not None:
            action, authenticated = _action(fields["action"], action_fields, problem)
    if len(problems) != before or action is None:
        return None
    return PolicyCase(
        name=str(name),
        line=_line(node),
        action=action,
        authenticated=authenticated,
        expect=str(expect),
        expect_rules=expect_rules,
    )


def _action(
    node: yaml.Node, fields: dict[str, yaml.Node], problem: _Report
) -> tuple[dict[str, Any] | None, bool]:
    values = {key: _plain(value) for key, value in fields.items()}
    ok = True
    for key in ("type", "resource"):
        if not isinstance(values.get(key), str) or not values[key]:
            problem(fields.get(key, node), f"action.{key} is required and must be a string")
            ok = False
    for key in ("service", "tenant", "sql"):
        if key in values and not isinstance(values[key], str):
            problem(fields[key], f"action.{key} must be a string")
            ok = False
    authenticated = values.get("authenticated", True)
    if not isinstance(authenticated, bool):
        problem(fields["authenticated"], "action.authenticated must be true or false")
        ok = False
    attributes = values.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, bool | int | float | str))
        for k, v in attributes.items()
    ):
        problem(
            fields.get("attributes", node),
            "action.attributes must map names to null, bool, int, float or string",
        )
        ok = False
        attributes = {}
    if "sql" in values:
        attributes = {**attributes, "sql": values["sql"]}
    actor: dict[str, Any] = {"id": "policy-test", "roles": [], "attributes": {}}
    if "actor" in fields:
        actor_fields = _mapping(fields["actor"], "action.actor", _ACTOR_KEYS, problem)
        if actor_fields is None:
            ok = False
        else:
            raw = {key: _plain(value) for key, value in actor_fields.items()}
            actor.update(raw)
            if not isinstance(actor["id"], str):
                problem(actor_fields["id"], "actor.id must be a string")
                ok = False
            roles = actor["roles"]
            if not (isinstance(roles, list) and all(isinstance(r, str) for r in roles)):
                problem(actor_fields["roles"], "actor.roles must be a list of strings")
                ok = False
            attrs = actor["attributes"]
            if not (
                isinstance(attrs, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in attrs.items())
            ):
                problem(actor_fields["attributes"], "actor.attributes must map strings to strings")
                ok = False
    if not ok:
        return None, True
    action: dict[str, Any] = {
        "action_id": "00000000-0000-4000-8000-000000000000",
        "correlation_id": "policy-test",
        "proposed_at": 0,
        "service": values.get("service", "policy-test"),
        "actor": actor,
        "type": values["type"],
        "resource": values["resource"],
        "attributes": attributes,
        "change_json": None,
        "reply_topic": "",
        "reply_partition": 0,
        "reply_instance": "",
        "service_key_id": None,
        "service_signature": None,
        "deadline": None,
        "justification": None,
        "break_glass": False,
        "signed_schema": 2,
    }
    if "tenant" in values:
        action["tenant"] = values["tenant"]
    return action, bool(authenticated)


def _mapping(
    node: yaml.Node, what: str, allowed: tuple[str, ...], problem: _Report
) -> dict[str, yaml.Node] | None:
    if not isinstance(node, yaml.MappingNode):
        problem(node, f"{what} must be a mapping")
        return None
    fields: dict[str, yaml.Node] = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else None
        if name not in allowed:
            problem(key, f"unknown key {name!r} in {what}; allowed keys: {', '.join(allowed)}")
            continue
        fields.setdefault(str(name), value)
    return fields


def _plain(node: yaml.Node | None) -> Any:
    """A node as plain Python (safe constructors), for leaves whose line we no longer need."""
    if node is None:
        return None
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
