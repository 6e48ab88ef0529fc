"""Reviews as a pure fold: the rules a vote must pass, and the state of every review.

The reviews topic (:mod:`schemas.topics`) is the log of everything that happens to a
review, keyed by review id so one review's records are in order on one partition:

* the **proposal** (the ProposedAction bytes as the service signed them) and the
  **pending verdict** (a processor-signed Verdict with decision ``review`` and its
  :class:`ReviewState <schemas>`), written by the decide stage — they open the review;
  a break-glass ``allow`` (basis ``break_glass``, grant ``post_hoc``) opens a post-hoc review;
* **votes** (ReviewVote, signed by a reviewer's key), written by ``lockgate reviews
  approve|deny`` and the dashboard;
* the **closure** (the processor-signed final Verdict: allow ``review_approved``, block
  ``review_denied`` or ``review_expired``), written by the processor once the votes
  decided the review or it expired.

:class:`ReviewBook` folds these records, in log order, into :class:`Review` states. The
processor, ``lockgate reviews list`` and the dashboard all run this same fold, so they
agree on every review without sharing anything but the topic. A vote is judged at the
record's broker timestamp (the topic uses ``LogAppendTime``; a reviewer cannot backdate).

Rules a vote must pass (:meth:`ReviewBook.judge`), in order; the first failure names it:

=============================================================  ===========
the vote decodes as a ReviewVote                                 security
its key is a registered reviewer's, valid at the vote's time     security
the name it claims is that key's reviewer (identity = the key)   security
its signature verifies                                           security
it names this review's action, tenant and proposal hash          security
the reviewer is in one of the review's approver groups           security
the reviewer is not the requester (canonical identity)           security
the review exists                                                refused
the review is still open (a denial is final; expired is final)   refused
the vote arrived before the review expired                       refused
the reviewer has not voted on this review already                refused
=============================================================  ===========

``security`` refusals become ``security`` ledger events; ``refused`` ones ``review``
events that say why; accepted votes ``review`` events. The same identity, eligibility and
binding checks back ``verify`` (:mod:`trust.verify.reviews`).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import Codec, get_codec
from schemas.errors import CodecError
from trust.bindings import record_sha256
from trust.keys import Keyring, PublicKey, SigningKey
from trust.reviewers import Reviewer, ReviewerRegistry
from trust.signatures import sign_record, verify_record

__all__ = [
    "POST_HOC",
    "Judgement",
    "Review",
    "ReviewBook",
    "ReviewStatus",
    "VoteOutcome",
    "fold",
    "make_vote",
    "vote_problem",
]

POST_HOC = "post_hoc"
"""The ReviewState ``grant`` of a break-glass action's after-the-fact review."""


class ReviewStatus(enum.StrEnum):
    OPEN = "open"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


class VoteOutcome(enum.StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    SECURITY = "security"


@dataclass
class Review:
    """One review as the fold sees it."""

    review_id: str
    action_id: str
    tenant: str
    requester: str
    proposal: dict[str, Any]
    proposal_raw: bytes
    verdict: dict[str, Any]  # the pending (or break-glass) verdict that opened it
    verdict_raw: bytes
    opened_at: int
    approvals: list[bytes] = field(default_factory=list)  # accepted approve votes, as received
    approvers: list[str] = field(default_factory=list)  # their reviewers' names
    voters: set[str] = field(default_factory=set)  # every reviewer whose vote counted
    status: ReviewStatus = ReviewStatus.OPEN
    denial: bytes | None = None
    closure: dict[str, Any] | None = None
    closure_raw: bytes | None = None

    @property
    def state(self) -> dict[str, Any]:
        """The ReviewState record of the opening verdict."""
        review: dict[str, Any] = self.verdict["review"]
        return review

    @property
    def post_hoc(self) -> bool:
        return self.state.get("grant") == POST_HOC

    @property
    def expires_at(self) -> int:
        return int(self.state["expires_at"])

    @property
    def min_approvals(self) -> int:
        return max(1, int(self.state.get("min_approvals", 1)))

    @property
    def decided(self) -> bool:
        return self.status is not ReviewStatus.OPEN

    def summary(self) -> dict[str, Any]:
        """JSON-safe view for ``reviews list`` and the dashboard."""
        p = self.proposal
        return {
            "review_id": self.review_id, "action_id": self.action_id, "tenant": self.tenant,
            "status": self.status.value, "post_hoc": self.post_hoc, "closed": self.closure is not None,
            "requester": self.requester, "roles": list(p["actor"].get("roles") or []),
            "service": p["service"], "type": p["type"], "resource": p["resource"],
            "sql": (p.get("attributes") or {}).get("sql"), "justification": p.get("justification"),
            "rule_id": self.state["rule_id"], "approver_groups": list(self.state["approver_groups"]),
            "min_approvals": self.min_approvals, "approvals": len(self.approvals),
            "approved_by": list(self.approvers), "reason": self.verdict.get("reason", ""),
            "opened_at_us": self.opened_at, "expires_at_us": self.expires_at,
        }


@dataclass(frozen=True)
class Judgement:
    """What the fold made of one vote."""

    outcome: VoteOutcome
    reason: str
    vote: dict[str, Any] | None = None
    review: Review | None = None
    reviewer: Reviewer | None = None
    decided: ReviewStatus | None = None  # set when this vote decided the review


@dataclass(frozen=True)
class Applied:
    """What one reviews-topic record did to the book."""

    kind: str  # proposal | open | vote | closure | ignored
    review: Review | None = None
    judgement: Judgement | None = None
    first: bool = False  # open/closure: the first such record for its review
    note: str = ""


def vote_problem(vote: dict[str, Any], registry: ReviewerRegistry, *, review_id: str, action_id: str,
                 tenant: str, proposal_sha256: bytes | None, approver_groups: list[str], requester: str,
                 at_us: int) -> tuple[str | None, Reviewer | None]:
    """The security problem of ``vote`` for this review (``None``: it passes), and its reviewer.

    Checks the first seven rules of the module's table: key, claimed name, signature,
    binding to the review's action and proposal, eligibility, and no self-approval.
    """
    reviewer = registry.by_key(str(vote.get("key_id")))
    if reviewer is None:
        return (f"vote {vote.get('vote_id')!r} is signed by key {vote.get('key_id')!r}, which is no "
                "registered reviewer's (lockgate keys add-reviewer)"), None
    if vote.get("reviewer") != reviewer.name:
        return (f"vote names reviewer {vote.get('reviewer')!r} but is signed by {reviewer.name!r}'s key; "
                "a vote is attributed to its key, never to the name it claims"), reviewer
    entry = reviewer.key(str(vote["key_id"]))
    ring = Keyring([(entry.public_key, entry.not_after_us)]) if entry is not None else Keyring()
    if not verify_record(vote, "signature", b"", ring, at_us=at_us):
        return f"vote {vote.get('vote_id')!r} by {reviewer.name!r} has a signature that does not verify", reviewer
    if vote.get("review_id") != review_id or vote.get("action_id") != action_id or vote.get("tenant") != tenant:
        return (f"vote by {reviewer.name!r} is for review {vote.get('review_id')!r} / action "
                f"{vote.get('action_id')!r}, not review {review_id!r} of action {action_id!r}"), reviewer
    if proposal_sha256 is not None and vote.get("proposal_sha256") != proposal_sha256:
        return (f"vote by {reviewer.name!r} approves a different proposal than the one under review "
                "(proposal hash differs)"), reviewer
    if not reviewer.eligible(approver_groups):
        return (f"reviewer {reviewer.name!r} (groups {', '.join(reviewer.groups)}) is in none of the approver "
                f"groups {', '.join(approver_groups)}"), reviewer
    if reviewer.is_requester(requester):
        return (f"self-approval refused: reviewer {reviewer.name!r} is the requester {requester!r} "
                "(same identity)"), reviewer
    return None, reviewer


class ReviewBook:
    """Every review folded from the reviews topic (see the module docstring).

    ``processor_keys`` verify the verdicts that open and close reviews; ``registry`` the
    votes. Not thread-safe; feed it one partition's records in log order (records of
    different partitions never share a review).
    """

    def __init__(self, processor_keys: Keyring | PublicKey, registry: ReviewerRegistry,
                 codec: Codec | None = None) -> None:
        self.keys = processor_keys
        self.registry = registry
        self.codec = codec or get_codec()
        self._reviews: dict[str, Review] = {}
        self._proposals: dict[str, tuple[dict[str, Any], bytes]] = {}

    def __iter__(self) -> Iterator[Review]:
        return iter(self._reviews.values())

    def get(self, review_id: str) -> Review | None:
        return self._reviews.get(review_id)

    def apply(self, raw: bytes | None, at_us: int) -> Applied:
        """Fold one record of the reviews topic, written at broker time ``at_us``."""
        if not raw:
            return Applied("ignored", note="empty record")
        try:
            name = self.codec.peek_schema(raw)
        except CodecError as exc:
            return Applied("vote", judgement=Judgement(VoteOutcome.SECURITY, f"undecodable record: {exc}"))
        if name == "ReviewVote":
            judgement = self.judge(raw, at_us)
            return Applied("vote", review=judgement.review, judgement=judgement)
        try:
            rec = self.codec.decode_as(name, raw)
        except CodecError as exc:
            return Applied("ignored", note=f"undecodable {name}: {exc}")
        if name == "ProposedAction":
            self._proposals[rec["action_id"]] = (rec, bytes(raw))
            return Applied("proposal")
        if name == "Verdict":
            return self._verdict(rec, bytes(raw))
        return Applied("ignored", note=f"a {name} record has no place on the reviews topic")

    def _verdict(self, rec: dict[str, Any], raw: bytes) -> Applied:
        state = rec.get("review")
        if state is None:
            return Applied("ignored", note="a verdict without review state")
        if not verify_record(rec, "signature", b"", self.keys, at_us=rec["decided_at"]):
            return Applied("ignored", note=f"verdict for review {state['review_id']!r} is not processor-signed")
        review_id = state["review_id"]
        known = self._reviews.get(review_id)
        opening = rec["decision"] == "review" or (rec["basis"] == "break_glass" and state.get("grant") == POST_HOC)
        if opening:
            if known is not None:
                return Applied("open", review=known, first=False)
            proposal = self._proposals.get(rec["action_id"])
            if proposal is None or record_sha256(proposal[0]) != rec.get("proposal_sha256"):
                return Applied("ignored", note=f"review {review_id!r} opened without its proposal")
            review = Review(review_id, rec["action_id"], rec["tenant"], str(proposal[0]["actor"]["id"]),
                            proposal[0], proposal[1], rec, raw, rec["decided_at"])
            self._reviews[review_id] = review
            return Applied("open", review=review, first=True)
        if known is None:
            return Applied("ignored", note=f"closure of unknown review {review_id!r}")
        if known.closure is not None:
            return Applied("closure", review=known, first=False)
        known.closure, known.closure_raw = rec, raw
        if rec["basis"] == "review_expired":
            known.status = ReviewStatus.EXPIRED
        elif rec["basis"] == "review_denied":
            known.status = ReviewStatus.DENIED
        elif rec["basis"] == "review_approved":
            known.status = ReviewStatus.APPROVED
        return Applied("closure", review=known, first=True)

    def judge(self, raw: bytes, at_us: int) -> Judgement:
        """Judge one vote against the book and, if accepted, count it."""
        try:
            vote = self.codec.decode_as("ReviewVote", raw)
        except CodecError as exc:
            return Judgement(VoteOutcome.SECURITY, f"a vote that does not decode: {exc}")
        review = self._reviews.get(vote["review_id"])
        if review is None:
            reviewer = self.registry.by_key(str(vote.get("key_id")))
            return Judgement(VoteOutcome.REFUSED, f"no review {vote['review_id']!r} is known", vote, None, reviewer)
        problem, reviewer = vote_problem(
            vote, self.registry, review_id=review.review_id, action_id=review.action_id, tenant=review.tenant,
            proposal_sha256=review.verdict.get("proposal_sha256"),
            approver_groups=list(review.state["approver_groups"]),
            requester=review.requester, at_us=at_us)
        if problem is not None or reviewer is None:
            return Judgement(VoteOutcome.SECURITY, problem or "no reviewer", vote, review, reviewer)
        if review.decided:
            final = "a denial is final" if review.status is ReviewStatus.DENIED else "it is final"
            return Judgement(VoteOutcome.REFUSED,
                             f"review {review.review_id} is already {review.status.value}; {final}",
                             vote, review, reviewer)
        if at_us > review.expires_at:
            return Judgement(VoteOutcome.REFUSED, f"review {review.review_id} expired at {review.expires_at} µs; "
                             "a late vote is not counted", vote, review, reviewer)
        if reviewer.name in review.voters:
            return Judgement(VoteOutcome.REFUSED, f"{reviewer.name} already voted on review {review.review_id}; "
                             "one vote per reviewer", vote, review, reviewer)
        review.voters.add(reviewer.name)
        decided: ReviewStatus | None = None
        if vote["vote"] == "deny":
            review.status = decided = ReviewStatus.DENIED
            review.denial = bytes(raw)
            reason = f"denied by {reviewer.name}: {vote.get('reason', '')}"
        else:
            review.approvals.append(bytes(raw))
            review.approvers.append(reviewer.name)
            reason = f"approved by {reviewer.name} ({len(review.approvals)} of {review.min_approvals})"
            if len(review.approvals) >= review.min_approvals:
                review.status = decided = ReviewStatus.APPROVED
        return Judgement(VoteOutcome.ACCEPTED, reason, vote, review, reviewer, decided)

    def due(self, now_us: int) -> list[Review]:
        """Open, non-post-hoc reviews past their expiry (the processor closes them)."""
        return [r for r in self._reviews.values()
                if r.status is ReviewStatus.OPEN and not r.post_hoc and now_us > r.expires_at]


def make_vote(review: Review, reviewer: str, key: SigningKey, vote: str, reason: str, now_us: int) -> dict[str, Any]:
    """A ReviewVote on ``review`` by ``reviewer``, signed with ``key`` (the reviewer's own)."""
    if vote not in ("approve", "deny"):
        raise ValueError(f"a vote is approve or deny, not {vote!r}")
    record = {
        "vote_id": str(uuid.uuid4()), "review_id": review.review_id, "action_id": review.action_id,
        "tenant": review.tenant, "reviewer": reviewer, "vote": vote, "reason": reason, "voted_at": now_us,
        "proposal_sha256": review.verdict.get("proposal_sha256") or b"", "key_id": "", "signature": b"",
    }
    return sign_record(record, "signature", b"", key)


def fold(records: Iterable[tuple[bytes | None, int]], processor_keys: Keyring | PublicKey,
         registry: ReviewerRegistry) -> ReviewBook:
    """A book of every review in ``records`` (``(value, broker timestamp µs)``, log order per partition)."""
    book = ReviewBook(processor_keys, registry)
    for value, at_us in records:
        book.apply(value, at_us)
    return book
