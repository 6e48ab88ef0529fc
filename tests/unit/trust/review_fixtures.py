"""A small world of reviews for the unit tests: a processor key, reviewers, a held proposal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processors.policy.engine import Decision
from processors.reviews.requests import hold_for_review
from schemas.codec import get_codec
from trust.bindings import record_sha256
from trust.keys import Keyring, SigningKey
from trust.reviewers import ReviewerRegistry
from trust.reviews import Review, ReviewBook, make_vote
from trust.signatures import sign_record

NOW = 1_700_000_000_000_000
REVIEW_RULE = {"approvers": ["dba"], "min_approvals": 1, "require_reason": True, "expires_after_s": 600,
               "grant": "action", "grant_window_s": 0}


def proposal(actor: str = "Bob.Smith@corp.example", *, justification: str | None = "GDPR erasure",
             break_glass: bool = False, roles: tuple[str, ...] = ("dev",)) -> dict[str, Any]:
    return {
        "action_id": str(uuid.uuid4()), "correlation_id": uuid.uuid4().hex, "proposed_at": NOW, "tenant": "default",
        "service": "billing", "actor": {"id": actor, "roles": list(roles), "attributes": {}}, "type": "db.query",
        "resource": "db/prod/customers", "attributes": {"sql": "DELETE FROM customers WHERE id = 7"},
        "change_json": None, "reply_topic": "lockgate.verdicts", "reply_partition": 0, "reply_instance": "g1",
        "service_key_id": None, "service_signature": None, "deadline": None, "justification": justification,
        "break_glass": break_glass, "signed_schema": 2,
    }


def decision(effect: str = "review", rule: dict[str, Any] | None = None) -> Decision:
    matched = [{"id": "prod-delete", "effect": effect, "mode": "enforce", "message": "", "error": None}]
    return Decision(effect, "rule", matched, f"{effect} by rule prod-delete", "p", 1,
                    review=("prod-delete", rule or REVIEW_RULE) if effect == "review" else None,
                    break_glass_roles=("oncall",))


@dataclass
class World:
    key: SigningKey
    registry: ReviewerRegistry
    keys: dict[str, SigningKey]

    @property
    def ring(self) -> Keyring:
        return Keyring([self.key.public()])

    def verdict(self, rec: dict[str, Any], d: Decision | None = None, now: int = NOW) -> dict[str, Any]:
        held = hold_for_review(rec, d or decision(), now)
        verdict = {
            "action_id": rec["action_id"], "correlation_id": rec["correlation_id"], "reply_instance": "g1",
            "decided_at": now, "tenant": rec["tenant"], "service": rec["service"],
            **held.decision.verdict_fields(), "eval_latency_us": 1, "processor_id": "p1", "key_id": "",
            "proposal_sha256": record_sha256(rec), "review": held.review, "signed_schema": 2, "signature": b"",
        }
        return sign_record(verdict, "signature", b"", self.key)

    def open(self, rec: dict[str, Any] | None = None, d: Decision | None = None) -> tuple[ReviewBook, Review]:
        rec = rec or proposal()
        codec = get_codec()
        book = ReviewBook(self.ring, self.registry)
        book.apply(codec.encode("ProposedAction", rec), NOW)
        applied = book.apply(codec.encode("Verdict", self.verdict(rec, d)), NOW)
        assert applied.review is not None, applied.note
        return book, applied.review

    def vote(self, review: Review, who: str, vote: str = "approve", *, at: int = NOW + 1,
             signer: str | None = None) -> bytes:
        record = make_vote(review, who, self.keys[signer or who], vote, "ok", at)
        return get_codec().encode("ReviewVote", record)


def world(tmp_path: Path) -> World:
    registry = ReviewerRegistry(tmp_path / "keys")
    keys = {}
    for name, groups, identities in (("dana", ["dba"], []), ("omar", ["dba", "sre"], []),
                                     ("bob", ["dba"], ["bob.smith@corp.example"]), ("eve", ["finance"], [])):
        keys[name], _ = registry.add_reviewer(name, groups, identities)
    return World(SigningKey.generate(), registry, keys)


WINDOW_RULE = {**REVIEW_RULE, "grant": "window", "grant_window_s": 3600, "grant_resource_prefix": "db/prod/"}
"""A review rule whose approval grants its requester an hour on db/prod/."""


def reviews_topic(w: World, rec: dict[str, Any], *, outcome: str = "approve", closed_at: int = NOW + 20,
                  rule: dict[str, Any] | None = None, voter: str = "dana") -> tuple[list[bytes], dict[str, Any]]:
    """The reviews-topic records of one review of ``rec`` under ``rule`` (default WINDOW_RULE):
    proposal, pending verdict, ``voter``'s vote (``outcome`` approve / deny), then the final verdict
    (``expire``: no vote, an expiry closure). Returns the records and the final verdict."""
    from processors.reviews.desk import final_verdict

    codec = get_codec()
    book, review = w.open(rec, decision(rule=rule or WINDOW_RULE))
    records = [codec.encode("ProposedAction", rec), review.verdict_raw]
    if outcome == "expire":
        final = final_verdict(review, "block", "review_expired", "expired", w.key, "p1", closed_at)
    else:
        raw = w.vote(review, voter, outcome, at=NOW + 10)
        assert book.judge(raw, NOW + 10).decided is not None
        records.append(raw)
        allow = outcome == "approve"
        final = final_verdict(review, "allow" if allow else "block", "review_approved" if allow else "review_denied",
                              outcome, w.key, "p1", closed_at)
    records.append(codec.encode("Verdict", final))
    return records, final
