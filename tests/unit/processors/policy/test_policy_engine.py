"""policy_engine: decision semantics, errors vs rule verdicts, CEL variables, the match index."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import cel
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from processors.errors import PolicyInvalid
from processors.policy.engine import CompiledPolicy, Decision, no_policy_decision
from processors.policy.files import load_policy_file, load_policy_text
from schemas.codec import get_codec
from tests.factories.cel_expressions import ACTION as CEL_ACTION
from tests.factories.cel_expressions import CONTEXT as CEL_CONTEXT
from tests.factories.cel_expressions import NOW_US as CEL_NOW_US
from tests.factories.cel_expressions import conditions, deterministic

EXAMPLE = Path(__file__).parents[4] / "processors" / "policies" / "example.yaml"
NOW_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z


def policy(rules: str, *, default: str = "allow", on_error: str = "block") -> CompiledPolicy:
    text = f"name: t\ndefault: {default}\non_error: {on_error}\nrules:\n{rules}"
    return CompiledPolicy.from_record(load_policy_text(text, version=3))


def action(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "action_id": "a-1",
        "correlation_id": "c-1",
        "proposed_at": 0,
        "tenant": "default",
        "service": "billing",
        "actor": {"id": "alice", "roles": ["dev"], "attributes": {"team": "pay"}},
        "type": "db.query",
        "resource": "db/prod/orders",
        "attributes": {},
        "change_json": None,
        "reply_topic": "r",
        "reply_partition": 0,
        "reply_instance": "i",
        "service_key_id": None,
        "service_signature": None,
    }
    base.update(overrides)
    return base


def decide(p: CompiledPolicy, act: dict[str, Any], authenticated: bool = True) -> Decision:
    return p.evaluate(act, authenticated=authenticated, now_us=NOW_US)


def ids(d: Decision) -> list[str]:
    return [m["id"] for m in d.matched_rules]


# --- decision semantics ------------------------------------------------------------------


def test_enforced_block_beats_enforced_allow() -> None:
    p = policy("  - {id: ok, effect: allow}\n  - {id: deny, effect: block, message: nope}\n")
    d = decide(p, action())
    assert (d.decision, d.basis) == ("block", "rule")
    assert ids(d) == ["ok", "deny"]
    assert "deny (nope)" in d.reason
    assert (d.policy_name, d.policy_version) == ("t", 3)


def test_enforced_allow_beats_block_default() -> None:
    d = decide(policy("  - {id: ok, effect: allow}\n", default="block"), action())
    assert (d.decision, d.basis) == ("allow", "rule")


def test_no_match_uses_default() -> None:
    p = policy("  - {id: deny, effect: block, when: 'false'}\n", default="block")
    d = decide(p, action())
    assert (d.decision, d.basis, d.matched_rules) == ("block", "default", [])
    assert "default is block" in d.reason


def test_shadow_matches_are_reported_but_never_decide() -> None:
    p = policy(
        "  - {id: s1, effect: block, mode: shadow, message: would}\n"
        "  - {id: s2, effect: block, mode: shadow, when: 'action.attributes.nope'}\n"
    )
    d = decide(p, action())
    assert (d.decision, d.basis) == ("allow", "default")
    assert [(m["id"], m["mode"], m["error"] is None) for m in d.matched_rules] == [
        ("s1", "shadow", True),
        ("s2", "shadow", False),
    ]
    assert "shadow" in d.reason and "s1 would block" in d.reason


def test_failed_condition_blocks_with_evaluation_error_basis() -> None:
    p = policy("  - {id: rows, effect: allow, when: 'action.attributes.rows > 5'}\n")
    d = decide(p, action())
    assert (d.decision, d.basis) == ("block", "evaluation_error")
    [m] = d.matched_rules
    assert m["id"] == "rows" and m["effect"] == "block" and m["mode"] == "enforce"
    assert m["error"] and "rows" in m["error"]
    assert "rows" in d.reason and "could not be evaluated" in d.reason


def test_failed_condition_under_on_error_allow() -> None:
    p = policy("  - {id: x, effect: block, when: '1 + \"a\" == 2'}\n", on_error="allow")
    d = decide(p, action(), authenticated=True)
    assert (d.decision, d.basis) == ("allow", "evaluation_error")
    assert d.matched_rules[0]["effect"] == "allow"
    assert "TypeError" in (d.matched_rules[0]["error"] or "")


def test_rule_block_wins_over_error_block_for_the_basis() -> None:
    p = policy(
        "  - {id: broken, effect: allow, when: 'action.attributes.nope'}\n  - {id: deny, effect: block}\n"
    )
    d = decide(p, action())
    assert (d.decision, d.basis) == ("block", "rule")
    assert "broken" in d.reason


def test_error_block_beats_a_rule_allow() -> None:
    p = policy("  - {id: ok, effect: allow}\n  - {id: broken, effect: allow, when: 'action.attributes.nope'}\n")
    d = decide(p, action())
    assert (d.decision, d.basis) == ("block", "evaluation_error")


def test_non_bool_condition_is_an_error() -> None:
    # An attribute value may be anything at runtime; a literal non-bool is refused by validation.
    d = decide(policy("  - {id: n, effect: allow, when: 'action.attributes.n'}\n"), action(attributes={"n": 2}))
    assert (d.decision, d.basis) == ("block", "evaluation_error")
    assert "expected a bool" in (d.matched_rules[0]["error"] or "")


# --- sql ------------------------------------------------------------------------------


SQL_RULES = (
    "  - {id: nowhere, effect: block, when: 'sql.kind == \"DELETE\" && !sql.has_where'}\n"
    "  - {id: big, effect: block, when: 'action.attributes.rows > 100'}\n"
)


def test_sql_facts_are_bound() -> None:
    sql = "delete from t -- where id=1"
    d = decide(policy(SQL_RULES), action(attributes={"sql": sql, "rows": 1}))
    assert d.matched_rules == [
        {"id": "nowhere", "effect": "block", "mode": "enforce", "message": "", "error": None},
    ]
    assert (d.decision, d.basis) == ("block", "rule")
    fine = decide(policy(SQL_RULES), action(attributes={"sql": "DELETE FROM t WHERE id = 1"}))
    # `rows` is missing, so `big` fails; `nowhere` evaluates to false.
    assert ids(fine) == ["big"] and fine.basis == "evaluation_error"


def test_unparseable_sql_fails_only_rules_that_read_sql() -> None:
    d = decide(policy(SQL_RULES), action(attributes={"sql": "DELEET FROM t", "rows": 5}))
    assert (d.decision, d.basis) == ("block", "evaluation_error")
    assert ids(d) == ["nowhere"]
    assert "not parseable SQL" in (d.matched_rules[0]["error"] or "")


def test_unparseable_sql_does_not_mask_a_rule_verdict() -> None:
    d = decide(policy(SQL_RULES), action(attributes={"sql": "DELEET FROM t", "rows": 500}))
    assert (d.decision, d.basis) == ("block", "rule")
    assert ids(d) == ["nowhere", "big"]


@pytest.mark.parametrize("attributes", [{}, {"sql": None}, {"sql": 7}])
def test_missing_sql_binds_empty_facts(attributes: dict[str, Any]) -> None:
    p = policy(
        "  - {id: e, effect: block, when: "
        "'!sql.present && sql.kind == \"\" && sql.statements == 0 && size(sql.tables) == 0'}\n"
    )
    assert ids(decide(p, action(attributes=attributes))) == ["e"]


# --- CEL variables -------------------------------------------------------------------


def test_all_variables_are_bound() -> None:
    p = policy(
        "  - id: v\n    effect: block\n    when: >-\n"
        "      action.type == 'db.query' && action.resource == 'db/prod/orders' &&\n"
        "      action.service == 'billing' && action.tenant == 'default' &&\n"
        "      action.authenticated && action.attributes.k == 'v' &&\n"
        "      actor.id == 'alice' && 'dev' in actor.roles && actor.attributes.team == 'pay' &&\n"
        "      now == timestamp('2024-01-01T00:00:00Z')\n"
    )
    assert ids(decide(p, action(attributes={"k": "v"}))) == ["v"]
    assert ids(decide(p, action(attributes={"k": "v"}), authenticated=False)) == []


# --- index -----------------------------------------------------------------------------


def test_match_globs_select_candidates() -> None:
    p = policy(
        "  - {id: any, effect: allow}\n"
        "  - {id: exact, effect: allow, match: {types: [db.query]}}\n"
        "  - {id: glob, effect: allow, match: {types: ['db.*']}}\n"
        "  - {id: other, effect: allow, match: {types: [deploy]}}\n"
        "  - {id: prod, effect: allow, match: {resources: ['db/prod/*']}}\n"
        "  - {id: svc, effect: allow, match: {services: [ledger, 'bill*']}}\n"
        "  - {id: nosvc, effect: allow, match: {services: [ledger]}}\n"
    )
    assert p.candidate_rule_ids(action()) == ["any", "exact", "glob", "prod", "svc"]
    assert p.candidate_rule_ids(action(type="deploy", resource="env/prod")) == [
        "any",
        "other",
        "svc",
    ]
    assert p.candidate_rule_ids(action(type="DB.QUERY")) == ["any", "prod", "svc"]


def test_rules_outside_the_index_are_never_executed() -> None:
    # 500 rules whose conditions would all fail if run; none apply to this type.
    many = "".join(
        f"  - {{id: r{i}, effect: block, match: {{types: [t{i}]}}, when: 'action.attributes.nope'}}\n"
        for i in range(500)
    )
    p = policy(many + "  - {id: mine, effect: block, match: {types: [db.query]}}\n")
    d = decide(p, action())
    assert ids(d) == ["mine"]
    assert d.basis == "rule"
    assert len(p.rule_ids) == 501


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["allow", "block"]),
            st.sampled_from(["enforce", "shadow"]),
            st.sampled_from(["true", "false", "action.attributes.nope"]),
        ),
        max_size=6,
    ),
    st.sampled_from(["allow", "block"]),
    st.sampled_from(["allow", "block"]),
)
def test_decision_matches_the_documented_model(
    rules: list[tuple[str, str, str]], default: str, on_error: str
) -> None:
    text = "".join(
        f"  - {{id: r{i}, effect: {e}, mode: {m}, when: '{w}'}}\n" for i, (e, m, w) in enumerate(rules)
    )
    d = decide(policy(text or "  []\n", default=default, on_error=on_error), action())
    broken = "action.attributes.nope"
    hits = [(on_error if w == broken else e, m, w == broken) for e, m, w in rules if w != "false"]
    enforced = [(e, err) for e, m, err in hits if m == "enforce"]
    if ("block", False) in enforced:
        want = ("block", "rule")
    elif ("block", True) in enforced:
        want = ("block", "evaluation_error")
    elif ("allow", False) in enforced:
        want = ("allow", "rule")
    elif ("allow", True) in enforced:
        want = ("allow", "evaluation_error")
    else:
        want = (default, "default")
    assert (d.decision, d.basis) == want
    assert len(d.matched_rules) == len(hits)


# --- example policy: every rule ----------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> CompiledPolicy:
    return CompiledPolicy.from_record(load_policy_file(EXAMPLE))


@pytest.mark.parametrize(
    ("rule", "overrides", "authenticated"),
    [
        ("unauthenticated-service", {"resource": "db/dev/x"}, False),
        ("prod-delete-update-without-where", {"attributes": {"sql": "UPDATE t SET a=1"}}, True),
        ("drop-or-truncate", {"resource": "db/dev/x", "attributes": {"sql": "drop table t"}}, True),
        ("bulk-export", {"type": "export", "attributes": {"rows": 10001}}, True),
        ("prod-deploy-role", {"type": "deploy", "resource": "env/prod/api"}, True),
    ],
)
def test_each_enforced_example_rule_blocks(
    example: CompiledPolicy, rule: str, overrides: dict[str, Any], authenticated: bool
) -> None:
    d = decide(example, action(**overrides), authenticated)
    assert (d.decision, d.basis) == ("block", "rule")
    assert rule in ids(d)


def test_example_shadow_rule(example: CompiledPolicy) -> None:
    d = decide(example, action(attributes={"sql": "select * from orders"}))
    assert (d.decision, d.basis) == ("allow", "default")
    assert d.matched_rules[0]["id"] == "prod-select-without-limit"
    assert d.matched_rules[0]["mode"] == "shadow"


# --- Decision, no policy, invalid records ------------------------------------------------


def test_decision_is_frozen_and_fills_a_valid_verdict(example: CompiledPolicy) -> None:
    d = decide(example, action(attributes={"sql": "DELETE FROM t"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.decision = "allow"  # type: ignore[misc]
    verdict = {
        "action_id": "a-1",
        "correlation_id": "c-1",
        "reply_instance": "i",
        "decided_at": NOW_US,
        "tenant": "default",
        "service": "billing",
        "eval_latency_us": 1,
        "processor_id": "p",
        "key_id": "k",
        "signature": b"",
        "proposal_sha256": b"\x01" * 32,
        "review": None,
        "signed_schema": 2,
        **d.verdict_fields(),
    }
    codec = get_codec()
    assert codec.decode_as("Verdict", codec.encode("Verdict", verdict)) == verdict


def test_no_policy_blocks() -> None:
    d = no_policy_decision("acme")
    assert (d.decision, d.basis, d.matched_rules) == ("block", "no_policy", [])
    assert "acme" in d.reason and not d.allowed


def test_from_record_rejects_bad_cel() -> None:
    record = load_policy_text("name: x\ndefault: allow\nrules: []\n")
    record["rules"] = [
        {"id": "r", "when": "1 +", "effect": "block", "mode": "enforce", "match": {}},
    ]
    with pytest.raises(PolicyInvalid, match="rule 'r'"):
        CompiledPolicy.from_record(record)


# --- what the engine runs decides as the expression as written --------------------------


def _plain(expression: str) -> str:
    """match / no match / error of ``expression`` under plain cel, whole variables bound."""
    try:
        result = cel.compile(expression).execute(cel.Context(CEL_CONTEXT))
    except Exception:
        return "error"
    return {True: "match", False: "no match"}.get(result, "error") if isinstance(result, bool) else "error"


def _plain_is_deterministic(expression: str) -> bool:
    program = cel.compile(expression)
    return deterministic(lambda: program.execute(cel.Context(CEL_CONTEXT)))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(conditions)
def test_engine_bindings_and_rewriting_agree_with_plain_cel(expression: str) -> None:
    record = load_policy_text("name: x\ndefault: allow\nrules: []\n")
    record["rules"] = [
        {"id": "r", "when": expression, "effect": "block", "mode": "enforce", "match": {}, "message": ""}
    ]
    p: CompiledPolicy | None = None
    try:
        p = CompiledPolicy.from_record(record)
    except PolicyInvalid:
        pass
    assume(p is not None and _plain_is_deterministic(expression))
    assert p is not None
    d = p.evaluate(CEL_ACTION, authenticated=True, now_us=CEL_NOW_US)
    engine = "no match" if not d.matched_rules else ("error" if d.matched_rules[0]["error"] else "match")
    assert engine == _plain(expression), d.matched_rules
