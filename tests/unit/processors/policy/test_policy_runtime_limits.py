"""Tenant isolation in the engine: input bounds and the evaluation time limit, all fail-closed.

No test here measures time: the time limit runs on a fake clock, so each outcome is the
same on any machine (bench/policy_isolation_bench.py measures the real stall).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from processors.errors import PolicyInvalid
from processors.policy.cases import run_case_file
from processors.policy.engine import CompiledPolicy, Decision
from processors.policy.files import load_policy_file, load_policy_text
from processors.policy.limits import DEFAULT_LIMITS, PolicyLimits

POLICIES = Path(__file__).parents[4] / "processors" / "policies"
NOW_US = 1_704_067_200_000_000
ITEMS = "[" + ",".join(str(i) for i in range(200)) + "]"
CUBE = f"{ITEMS}.all(x, {ITEMS}.all(y, {ITEMS}.all(z, x + y + z >= 0)))"
#: Lets the 200³ rule past the static budget, standing in for a rule the estimate misses.
LIFTED = PolicyLimits(rule_cost_budget=10**15)


class FakeClock:
    """Advances ``step`` seconds each time it is read: the deadline passes after a fixed
    number of reads, whatever the machine's speed. Used as both the wall and the CPU clock
    unless a test separates them."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.step
        return self.now


def compiled(
    rules: str,
    *,
    limits: PolicyLimits = DEFAULT_LIMITS,
    on_error: str = "block",
    clock: FakeClock | None = None,
    cpu_clock: FakeClock | None = None,
) -> CompiledPolicy:
    text = f"name: t\ndefault: allow\non_error: {on_error}\nrules:\n{rules}"
    clock = clock or FakeClock(step=0.0)
    return CompiledPolicy.from_record(
        load_policy_text(text, limits=limits), limits=limits, clock=clock, cpu_clock=cpu_clock or clock
    )


def action(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "action_id": "a-1",
        "tenant": "default",
        "service": "billing",
        "actor": {"id": "alice", "roles": ["dev"], "attributes": {"team": "pay"}},
        "type": "db.query",
        "resource": "db/prod/orders",
        "attributes": {},
    }
    base.update(overrides)
    return base


def decide(policy: CompiledPolicy, act: dict[str, Any] | None = None) -> Decision:
    return policy.evaluate(act or action(), authenticated=True, now_us=NOW_US)


def errors(decision: Decision) -> dict[str, str | None]:
    return {m["id"]: m["error"] for m in decision.matched_rules}


# --- compile-time checks in the engine ------------------------------------------------------


def test_the_engine_refuses_records_with_too_many_rules() -> None:
    two = "name: p\ndefault: allow\nrules:\n  - {id: a, effect: block}\n  - {id: b, effect: block}\n"
    record = load_policy_text(two)
    with pytest.raises(PolicyInvalid, match="2 rules; at most 1"):
        CompiledPolicy.from_record(record, limits=PolicyLimits(max_rules=1))


def test_the_engine_refuses_records_over_the_cost_budget() -> None:
    record = load_policy_text(f"name: p\ndefault: allow\nrules:\n  - id: cube\n    effect: block\n    when: '{CUBE}'\n",
                              limits=LIFTED)
    with pytest.raises(PolicyInvalid, match="rule 'cube': worst-case cost"):
        CompiledPolicy.from_record(record)


# --- the evaluation time limit ----------------------------------------------------------------


def test_a_slow_rule_is_stopped_and_blocks_with_evaluation_error() -> None:
    clock = FakeClock(step=0.01)  # the 50 ms deadline passes on the sixth read
    p = compiled(
        f"  - id: cube\n    effect: allow\n    when: '{CUBE}'\n"
        "  - {id: after, effect: block, when: 'action.type == \"db.query\"'}\n",
        limits=LIFTED,
        clock=clock,
    )
    d = decide(p)
    assert (d.decision, d.basis) == ("block", "evaluation_error")
    found = errors(d)
    assert (found["cube"] or "").startswith("stopped: exceeded this action's evaluation time limit of 50 ms")
    assert found["after"] == "not evaluated: this action's evaluation time limit of 50 ms was used up (by rule 'cube')"
    assert "cube (stopped" in d.reason and "could not be evaluated" in d.reason
    assert clock.reads < 20  # stopped at once, not after 8 million steps


def test_the_time_limit_follows_on_error() -> None:
    p = compiled(f"  - id: cube\n    effect: block\n    when: '{CUBE}'\n", limits=LIFTED, on_error="allow",
                 clock=FakeClock(step=0.01))
    d = decide(p)
    assert (d.decision, d.basis) == ("allow", "evaluation_error")
    assert d.matched_rules[0]["effect"] == "allow"


def test_a_stopped_shadow_rule_does_not_decide() -> None:
    p = compiled(f"  - id: cube\n    effect: block\n    mode: shadow\n    when: '{CUBE}'\n", limits=LIFTED,
                 clock=FakeClock(step=0.01))
    d = decide(p)
    assert (d.decision, d.basis) == ("allow", "default")
    assert (errors(d)["cube"] or "").startswith("stopped")


def test_rules_after_the_deadline_are_not_run_even_without_loops() -> None:
    # A rule without comprehensions cannot be stopped midway; the rules after it are not run.
    clock = FakeClock(step=0.0)
    p = compiled(
        "  - {id: first, effect: block, when: 'action.type == \"nope\"'}\n"
        "  - {id: second, effect: allow, when: 'true'}\n",
        clock=clock,
    )
    clock.step = 1.0  # every read is a second later: the deadline passes during `first`
    d = decide(p)
    used_up = "not evaluated: this action's evaluation time limit of 50 ms was used up (by rule 'first')"
    assert errors(d) == {"second": used_up}
    assert (d.decision, d.basis) == ("block", "evaluation_error")


def test_a_descheduled_processor_is_not_charged_for_wall_time() -> None:
    # The wall clock races ahead (the host is busy), the thread's CPU time does not.
    wall, cpu = FakeClock(step=1.0), FakeClock(step=0.0)
    p = compiled(
        "  - {id: loop, effect: block, when: 'actor.roles.exists(r, r == \"nope\")'}\n"
        "  - {id: after, effect: block, when: 'action.type == \"db.query\"'}\n",
        clock=wall,
        cpu_clock=cpu,
    )
    d = decide(p, action(actor={"id": "a", "roles": ["x"] * 50, "attributes": {}}))
    assert errors(d) == {"after": None}
    assert (d.decision, d.basis) == ("block", "rule")
    assert cpu.reads > 1  # the CPU clock was consulted when the wall clock passed


def test_within_the_limit_nothing_changes() -> None:
    p = compiled(
        "  - {id: loop, effect: block, when: 'actor.roles.exists(r, r == \"dev\")'}\n", clock=FakeClock(step=0.0)
    )
    assert (decide(p).basis, errors(decide(p))) == ("rule", {"loop": None})


# --- input bounds ---------------------------------------------------------------------------------

SMALL = PolicyLimits(max_items=3, max_name_chars=20, max_value_chars=50, max_sql_chars=40)

BOUNDED_RULES = (
    "  - {id: roles, effect: block, when: '\"x\" in actor.roles'}\n"
    "  - {id: type, effect: block, when: 'action.type == \"x\"'}\n"
    "  - {id: resource, effect: block, when: 'action.resource == \"x\"'}\n"
    "  - {id: rows, effect: block, when: 'has(action.attributes.rows) && action.attributes.rows > 100'}\n"
    "  - {id: blob, effect: block, when: 'has(action.attributes.blob) && action.attributes.blob.contains(\"x\")'}\n"
    "  - {id: keys, effect: block, when: 'action.attributes.exists(k, k == \"x\")'}\n"
    "  - {id: team, effect: block, when: 'actor.attributes.team == \"x\"'}\n"
    "  - {id: sql, effect: block, when: 'sql.kind == \"DROP\"'}\n"
    "  - {id: tables, effect: block, when: 'sql.tables.exists(t, t == \"x\")'}\n"
)


def affected(**overrides: Any) -> dict[str, str]:
    """Rule id -> error, for the rules an over-bound input made fail."""
    d = decide(compiled(BOUNDED_RULES, limits=SMALL), action(**overrides))
    return {m["id"]: m["error"] for m in d.matched_rules if m["error"]}


def test_within_bounds_every_rule_runs() -> None:
    assert affected(attributes={"rows": 5, "blob": "short", "sql": "SELECT a FROM t"}) == {}


def test_too_many_roles_fail_only_the_rules_that_read_roles() -> None:
    found = affected(actor={"id": "a", "roles": ["a", "b", "c", "d"], "attributes": {"team": "pay"}})
    assert list(found) == ["roles"]
    assert found["roles"] == (
        "not evaluated: actor.roles has 4 entries, over the bound of 3; the rule reads it, and its cost is "
        "only bounded for inputs within the engine's bounds (tenant isolation)"
    )


def test_an_overlong_role_fails_the_rules_that_read_roles() -> None:
    found = affected(actor={"id": "a", "roles": ["r" * 21], "attributes": {}})
    assert list(found) == ["roles", "team"]  # team: the attribute is missing, an ordinary error
    assert "an entry of actor.roles is 21 characters, over the bound of 20" in found["roles"]


def test_an_overlong_name_fails_the_rules_that_read_it() -> None:
    found = affected(resource="db/" + "x" * 30)
    assert list(found) == ["resource"]
    assert "action.resource is 33 characters, over the bound of 20" in found["resource"]


def test_a_huge_attribute_fails_only_the_rules_that_read_it() -> None:
    found = affected(attributes={"rows": 5, "blob": "x" * 51})
    assert sorted(found) == ["blob", "keys"]  # `keys` iterates over every attribute
    assert "action.attributes.blob is 51 characters, over the bound of 50" in found["blob"]


def test_too_many_attributes_fail_only_the_rules_that_iterate_over_them() -> None:
    found = affected(attributes={"rows": 5, "a": 1, "b": 2, "c": 3})
    assert list(found) == ["keys"]
    assert "action.attributes has 4 entries, over the bound of 3" in found["keys"]


def test_overlong_sql_is_not_parsed_and_fails_the_rules_that_read_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    from processors.policy import engine

    def refuse(_: str) -> None:
        raise AssertionError("over-long SQL was parsed")

    monkeypatch.setattr(engine, "sql_facts", refuse)
    found = affected(attributes={"sql": "SELECT a FROM t WHERE b = 'x' AND c = 'y' -- long"})
    assert sorted(found) == ["sql", "tables"]
    assert "attributes.sql is 49 characters, over the bound of 40 the engine parses" in found["sql"]


def test_too_many_sql_tables_fail_the_rules_that_read_them() -> None:
    found = affected(attributes={"sql": "SELECT 1 FROM a, b, c, d"})
    assert list(found) == ["tables"]
    assert "sql.tables has 4 entries, over the bound of 3" in found["tables"]


def test_the_example_policy_and_its_cases_still_pass() -> None:
    results = run_case_file(POLICIES / "example.yaml", POLICIES / "example_cases.yaml")
    assert results and all(r.passed for r in results), [str(r) for r in results if not r.passed]


def test_rule_costs_are_exposed_for_validate() -> None:
    policy = CompiledPolicy.from_record(load_policy_file(POLICIES / "example.yaml"))
    costs = policy.rule_costs
    assert set(costs) == set(policy.rule_ids)
    assert all(0 < cost <= DEFAULT_LIMITS.rule_cost_budget for cost in costs.values())
