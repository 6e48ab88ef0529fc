"""verify proves a grant-allowed action was covered by an approved window grant; forgeries are named.

The attacker holds the processor key (the strongest case) and signs allows that cite a real,
approved grant for actions it does not cover: another actor, after the window, outside the
prefix, or a grant whose review was denied. ``verify --decisions`` reproduces an honest
grant allow as the review decision the policy made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from processors.policy.engine import CompiledPolicy
from processors.policy.files import load_policy_text
from processors.policy.reevaluate import Reevaluator
from processors.reviews.desk import final_verdict
from processors.reviews.grants import GrantIndex
from processors.reviews.requests import hold_for_review
from schemas.codec import get_codec
from tests.factories.ledger import outcome
from tests.unit.trust.review_fixtures import NOW, World, proposal, world
from trust.bindings import policy_sha256, record_sha256
from trust.grants import GRANT_USED
from trust.reviews import ReviewBook
from trust.signatures import sign_record
from trust.verify import DecodedLedger, FindingKind, verify_reviews
from trust.verify.decisions import recheck_decisions

HOUR = 3600 * 1_000_000
POLICY = """\
name: grants
default: allow
rules:
  - id: prod-delete
    match: {types: [db.query], resources: ["db/*"]}
    when: sql.kinds.exists(k, k == "DELETE")
    effect: review
    review:
      approvers: [dba]
      require_reason: true
      grant: window
      grant_window: 1h
      grant_resource_prefix: db/prod/
"""


class Ledger:
    """A ledger with the policy, one approved (or denied) window review, and room for more actions."""

    def __init__(self, w: World, vote: str = "approve") -> None:
        self.w = w
        self.codec = get_codec()
        record = load_policy_text(POLICY, version=1, published_at_us=NOW, published_by="t")
        self.policy_raw = self.codec.encode("PolicySet", record)
        self.policy = CompiledPolicy.from_record(record, sha256=policy_sha256(self.policy_raw))
        self.events: list[dict[str, Any]] = []
        self.add("policy", self.policy_raw, None, NOW)
        self.first = proposal()
        self.index = GrantIndex(w.ring, w.registry)
        self.index.reset([0])
        pending_raw = self.codec.encode("Verdict", self.sign(self.first, NOW + 1))
        proposal_raw = self.codec.encode("ProposedAction", self.first)
        self.add("action", proposal_raw, self.first["action_id"], NOW + 1)
        self.add("verdict", pending_raw, self.first["action_id"], NOW + 1)
        book = ReviewBook(w.ring, w.registry)
        book.apply(proposal_raw, NOW + 1)
        review = book.apply(pending_raw, NOW + 1).review
        assert review is not None
        for raw in (proposal_raw, pending_raw):
            self.index.apply(0, raw, NOW + 1)
        raw_vote = w.vote(review, "dana", vote, at=NOW + 10)
        assert self.index.apply(0, raw_vote, NOW + 10) is None
        book.judge(raw_vote, NOW + 10)
        self.add("review", raw_vote, self.first["action_id"], NOW + 11)
        allow = vote == "approve"
        self.closure = final_verdict(review, "allow" if allow else "block",
                                     "review_approved" if allow else "review_denied", vote, w.key, "p1", NOW + 20)
        closure_raw = self.codec.encode("Verdict", self.closure)
        self.index.apply(0, closure_raw, NOW + 20)
        self.index.at_end(0)
        self.add("verdict", closure_raw, self.first["action_id"], NOW + 20)

    def add(self, kind: str, payload: bytes, action_id: str | None, at: int) -> None:
        self.events.append({"event_id": f"e{len(self.events)}", "kind": kind, "recorded_at": at, "tenant": "default",
                            "action_id": action_id, "payload": payload, "ledger_partition": 0,
                            "sequence": len(self.events)})

    def sign(self, rec: dict[str, Any], at: int, review: dict[str, Any] | None = None) -> dict[str, Any]:
        """The verdict the decide stage signs for ``rec`` at ``at`` (with the index; ``review``: forge
        an allow citing that grant state instead)."""
        decision = self.policy.evaluate(rec, authenticated=True, now_us=at)
        held = hold_for_review(rec, decision, at, self.index)
        fields = held.decision.verdict_fields()
        state = held.review
        if review is not None:
            fields.update(decision="allow", basis="review_approved")
            state = review
        verdict = {"action_id": rec["action_id"], "correlation_id": rec["correlation_id"], "reply_instance": "g1",
                   "decided_at": at, "tenant": rec["tenant"], "service": rec["service"], **fields,
                   "eval_latency_us": 1, "processor_id": "p1", "key_id": "", "proposal_sha256": record_sha256(rec),
                   "review": state, "signed_schema": 2, "signature": b""}
        return sign_record(verdict, "signature", b"", self.w.key)

    def act(self, rec: dict[str, Any], at: int, review: dict[str, Any] | None = None) -> dict[str, Any]:
        """Decide ``rec`` (or forge its allow), commit it; the verdict."""
        verdict = self.sign(rec, at, review)
        encoded = self.codec.encode("Verdict", verdict)
        self.add("action", self.codec.encode("ProposedAction", rec), rec["action_id"], at)
        self.add("verdict", encoded, rec["action_id"], at)
        self.add("outcome", self.codec.encode("ActionOutcome", outcome(rec["action_id"], at + 5, encoded)),
                 rec["action_id"], at + 5)
        return verdict

    def same_requester(self, **changes: Any) -> dict[str, Any]:
        return {**proposal(), "actor": dict(self.first["actor"]), "resource": "db/prod/orders", **changes}

    def findings(self) -> list[Any]:
        return verify_reviews(self.events, self.w.ring, self.w.registry)


@pytest.fixture
def w(tmp_path: Path) -> World:
    return world(tmp_path)


def test_an_allow_by_a_valid_grant_verifies_and_reproduces(w: World) -> None:
    led = Ledger(w)
    verdict = led.act(led.same_requester(), NOW + 60)
    assert (verdict["decision"], verdict["basis"], verdict["review"]["grant"]) == ("allow", "review_approved",
                                                                                  GRANT_USED)
    assert led.findings() == []
    report = recheck_decisions(DecodedLedger.build(led.events), Reevaluator())
    assert report.findings == [] and report.checked >= 2  # the pending review and the grant allow


def _forged(led: Ledger, rec: dict[str, Any], at: int) -> Any:
    honest = led.sign(led.same_requester(), NOW + 60)  # a real grant allow, whose review state is cited
    assert honest["review"]["grant"] == GRANT_USED
    led.act(rec, at, review=honest["review"])
    found = [f for f in led.findings() if f.action_id == rec["action_id"]]
    assert [f.kind for f in found] == [FindingKind.GRANT_INVALID], found
    return found[0]


def test_an_allow_citing_someone_elses_grant_is_named(w: World) -> None:
    led = Ledger(w)
    other = {**led.same_requester(), "actor": {"id": "mallory", "roles": [], "attributes": {}}}
    assert "for actor" in _forged(led, other, NOW + 60).message


def test_an_allow_after_the_window_is_named(w: World) -> None:
    led = Ledger(w)
    assert "expired" in _forged(led, led.same_requester(), NOW + 20 + HOUR + 1).message


def test_an_allow_outside_the_prefix_is_named(w: World) -> None:
    led = Ledger(w)
    assert "not under" in _forged(led, led.same_requester(resource="db/production/orders"), NOW + 60).message


def test_an_allow_before_the_approval_is_named(w: World) -> None:
    led = Ledger(w)
    assert "starts at" in _forged(led, led.same_requester(), NOW + 15).message


def test_an_allow_citing_a_denied_review_is_named(w: World) -> None:
    led = Ledger(w, vote="deny")
    state = {**led.closure["review"], "grant": GRANT_USED, "expires_at": NOW + 20 + HOUR,
             "approvals": [led.events[3]["payload"]]}
    rec = led.same_requester()
    led.act(rec, NOW + 60, review=state)
    found = [f for f in led.findings() if f.action_id == rec["action_id"]]
    assert [f.kind for f in found] == [FindingKind.GRANT_INVALID]
    assert "was not approved under a window grant" in found[0].message


def test_an_allow_with_a_stretched_window_or_other_approvals_is_named(w: World) -> None:
    led = Ledger(w)
    honest = led.sign(led.same_requester(), NOW + 60)["review"]
    stretched, emptied = led.same_requester(), led.same_requester()
    led.act(stretched, NOW + 60, review={**honest, "expires_at": honest["expires_at"] + HOUR})
    led.act(emptied, NOW + 60, review={**honest, "approvals": []})
    by_action = {f.action_id: f for f in led.findings()}
    assert "lasts until" in by_action[stretched["action_id"]].message
    assert "other approvals" in by_action[emptied["action_id"]].message


def test_a_grant_allow_without_its_policy_on_the_ledger_is_named(w: World) -> None:
    led = Ledger(w)
    rec = led.same_requester()
    led.act(rec, NOW + 60)
    led.events = [e for e in led.events if e["kind"] != "policy"]
    found = led.findings()
    assert [f.kind for f in found] == [FindingKind.GRANT_INVALID] and "not on the ledger" in found[0].message


def test_a_forged_grant_allow_the_policy_would_not_hold_is_irreproducible(w: World) -> None:
    led = Ledger(w)
    honest = led.sign(led.same_requester(), NOW + 60)["review"]
    rec = led.same_requester(attributes={"sql": "SELECT 1"})  # no DELETE: the rule does not hold it
    led.act(rec, NOW + 60, review=honest)
    report = recheck_decisions(DecodedLedger.build(led.events), Reevaluator())
    assert [(f.kind, f.action_id) for f in report.findings] == [(FindingKind.IRREPRODUCIBLE_DECISION,
                                                                 rec["action_id"])]
    assert FindingKind.GRANT_INVALID in [f.kind for f in led.findings() if f.action_id == rec["action_id"]]
