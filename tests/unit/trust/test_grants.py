"""The grant predicate: who, what, where and when one approval under grant: window covers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.trust.review_fixtures import NOW, WINDOW_RULE, World, proposal, reviews_topic, world
from trust.grants import Grant, GrantTerms, grant_covers, grant_of, terms_in_policy, under_prefix

HOUR = 3600 * 1_000_000
TERMS = GrantTerms("prod-delete", HOUR, "db/prod/")
APPROVED = NOW + 20


@pytest.fixture
def w(tmp_path: Path) -> World:
    return world(tmp_path)


def _grant(w: World, rec: dict[str, Any] | None = None, outcome: str = "approve"
           ) -> tuple[Grant | None, dict[str, Any]]:
    rec = rec or proposal()
    _records, final = reviews_topic(w, rec, outcome=outcome, closed_at=APPROVED)
    return grant_of(final, rec), rec


def _later(rec: dict[str, Any], **changes: Any) -> dict[str, Any]:
    nxt = {**proposal(), "service": rec["service"], "actor": dict(rec["actor"]), "type": rec["type"],
           "tenant": rec["tenant"], "resource": "db/prod/orders"}
    nxt.update(changes)
    return nxt


@pytest.mark.parametrize(("resource", "covered"), [
    ("db/prod/orders", True), ("db/prod/a/b", True), ("db/production/orders", False), ("db/prod", False),
    ("db/prod/", False), ("xdb/prod/orders", False), ("DB/prod/orders", False),
])
def test_prefix_edges(resource: str, covered: bool) -> None:
    assert under_prefix(resource, "db/prod/") is covered
    assert not under_prefix(resource, "")  # an empty prefix covers nothing


def test_an_approved_window_review_grants_its_requester(w: World) -> None:
    grant, rec = _grant(w)
    assert grant is not None and grant.approved_at == APPROVED and grant.actor == "bob.smith@corp.example"
    assert grant_covers(grant, TERMS, _later(rec), APPROVED + 1) is None
    # the requester under another spelling of the same identity is the same requester
    respelled = _later(rec, actor={"id": "BOB.SMITH@corp.example", "roles": [], "attributes": {}})
    assert grant_covers(grant, TERMS, respelled, APPROVED + 1) is None


@pytest.mark.parametrize(("at", "covered"), [
    (APPROVED - 1, False), (APPROVED, True), (APPROVED + HOUR, True), (APPROVED + HOUR + 1, False),
])
def test_window_edges(w: World, at: int, covered: bool) -> None:
    grant, rec = _grant(w)
    assert grant is not None
    assert (grant_covers(grant, TERMS, _later(rec), at) is None) is covered


@pytest.mark.parametrize(("change", "why"), [
    ({"actor": {"id": "carol", "roles": [], "attributes": {}}}, "for actor"),
    ({"service": "other-service"}, "for actor"),
    ({"tenant": "acme"}, "tenant"),
    ({"type": "db.export"}, "action type"),
    ({"resource": "db/production/orders"}, "not under"),
])
def test_another_requester_tenant_type_or_resource_is_not_covered(w: World, change: dict[str, Any],
                                                                   why: str) -> None:
    grant, rec = _grant(w)
    assert grant is not None
    problem = grant_covers(grant, TERMS, _later(rec, **change), APPROVED + 1)
    assert problem is not None and why in problem


def test_another_rule_is_not_covered(w: World) -> None:
    grant, rec = _grant(w)
    assert grant is not None
    problem = grant_covers(grant, GrantTerms("other-rule", HOUR, "db/prod/"), _later(rec), APPROVED + 1)
    assert problem is not None and "rule" in problem


def test_an_approval_outside_the_prefix_covers_only_its_own_action(w: World) -> None:
    grant, rec = _grant(w, {**proposal(), "resource": "db/staging/customers"})
    assert grant is not None
    problem = grant_covers(grant, TERMS, _later(rec), APPROVED + 1)
    assert problem is not None and "covers only its own action" in problem


@pytest.mark.parametrize("outcome", ["deny", "expire"])
def test_a_denial_or_an_expiry_grants_nothing(w: World, outcome: str) -> None:
    grant, _rec = _grant(w, outcome=outcome)
    assert grant is None


def test_a_one_action_review_grants_nothing(w: World) -> None:
    rec = proposal()
    _records, final = reviews_topic(w, rec, rule={**WINDOW_RULE, "grant": "action"})
    assert grant_of(final, rec) is None
    assert grant_of(final, {**rec, "action_id": "another"}) is None


def test_terms_come_from_the_enforced_review_rule() -> None:
    rule = {"id": "prod-delete", "effect": "review", "mode": "enforce", "review": WINDOW_RULE}
    assert terms_in_policy({"rules": [rule]}, "prod-delete") == GrantTerms("prod-delete", HOUR, "db/prod/", 1,
                                                                           frozenset({"dba"}))
    assert terms_in_policy({"rules": [{**rule, "mode": "shadow"}]}, "prod-delete") is None
    assert terms_in_policy({"rules": [rule]}, "other") is None
    assert GrantTerms.of_rule("r", {**WINDOW_RULE, "grant_resource_prefix": ""}) is None
    assert GrantTerms.of_rule("r", {**WINDOW_RULE, "grant": "action"}) is None


def test_a_stricter_rule_ends_grants_approved_under_a_weaker_one(w: World) -> None:
    grant, rec = _grant(w)  # approved: 1 approval from dba
    assert grant is not None
    for stricter in (GrantTerms("prod-delete", HOUR, "db/prod/", min_approvals=2),
                     GrantTerms("prod-delete", HOUR, "db/prod/", approvers=frozenset({"sre"}))):
        problem = grant_covers(grant, stricter, _later(rec), APPROVED + 1)
        assert problem is not None and "weaker requirement" in problem
    same = GrantTerms("prod-delete", HOUR, "db/prod/", min_approvals=1, approvers=frozenset({"dba", "sre"}))
    assert grant_covers(grant, same, _later(rec), APPROVED + 1) is None
