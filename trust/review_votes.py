"""Casting a review vote: find the review, sign with the reviewer's own key, append, read back.

``lockgate reviews approve|deny`` and the dashboard's review inbox both vote through
:func:`cast_vote`; they differ only in how they read the reviews topic (the CLI folds it
afresh, the sink keeps a live fold, :mod:`sinks.review_inbox`) and share how they append
to it (a keyed publish). Both are handed in as callables, so this module does no I/O.

The vote is signed with the private key of the reviewer it names
(``<keys>/reviewers/NAME.pem``): a caller can vote only as a reviewer whose key it holds.
The judgement read back is the fold's — the same rules the processor applies
(:meth:`trust.reviews.ReviewBook.judge`), so what the caller reports is what the ledger
records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from schemas.codec import get_codec
from trust.errors import KeyMissing, RegistryError, ReviewNotFound
from trust.keys import Keyring, PublicKey, SigningKey, clock_us
from trust.review_fold import judge_record
from trust.reviewers import ReviewerRegistry
from trust.reviews import Judgement, Review, ReviewBook, make_vote

__all__ = ["VOTES", "Folded", "VoteResult", "cast_vote", "find_review", "fold_records", "reviewer_key"]

VOTES = ("approve", "deny")


@dataclass(frozen=True)
class Folded:
    """The reviews topic folded so far: every review, and each vote's judgement by vote id."""

    reviews: tuple[Review, ...]
    judgements: dict[str, Judgement]


def fold_records(records: Iterable[tuple[bytes | None, int]], processor_keys: Keyring | PublicKey,
                 registry: ReviewerRegistry) -> Folded:
    """Fold ``(value, broker timestamp µs)`` records, in log order per partition."""
    book = ReviewBook(processor_keys, registry)
    judged: dict[str, Judgement] = {}
    for value, at_us in records:
        judge_record(book, value, at_us, judged)
    return Folded(tuple(book), judged)


def find_review(reviews: Iterable[Review], ref: str) -> Review:
    """The one review whose id is ``ref``, starts with it, or whose action id is ``ref``."""
    reviews = tuple(reviews)
    found = [r for r in reviews if r.review_id == ref]
    if not found:
        found = [r for r in reviews if r.review_id.startswith(ref) or r.action_id == ref] if ref else []
    if len(found) != 1:
        raise ReviewNotFound(f"{'no' if not found else len(found)} review(s) match {ref!r}; "
                             "see `lockgate reviews list --all`")
    return found[0]


@dataclass(frozen=True)
class VoteResult:
    """What became of a vote: ``outcome`` is accepted, refused, security or unknown (not read back)."""

    review_id: str
    action_id: str
    vote_id: str
    reviewer: str
    vote: str
    outcome: str
    detail: str
    decided: str | None

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"

    def to_json(self) -> dict[str, Any]:
        return {"review_id": self.review_id, "action_id": self.action_id, "vote_id": self.vote_id,
                "reviewer": self.reviewer, "vote": self.vote, "outcome": self.outcome, "detail": self.detail,
                "decided": self.decided}


def reviewer_key(registry: ReviewerRegistry, name: str) -> SigningKey:
    """``name``'s private key; :class:`RegistryError` when no such reviewer or key is here."""
    if registry.get(name) is None:
        raise RegistryError(f"no reviewer {name!r} is registered; run `lockgate keys add-reviewer {name} --groups ...`")
    path = registry.private_key_path(name)
    try:
        return SigningKey.load(path)
    except KeyMissing:
        raise RegistryError(f"reviewer {name!r} is registered but its private key is not at {path} on this host; "
                            "votes as that reviewer are signed where that key is") from None


def cast_vote(read: Callable[[], Folded], append: Callable[[bytes, bytes], None], registry: ReviewerRegistry,
              reviewer: str, ref: str, vote: str, reason: str, *, visible: Callable[[Review], bool] | None = None,
              wait_s: float = 10.0, poll_s: float = 0.1) -> VoteResult:
    """Vote ``vote`` on the review ``ref`` as ``reviewer``, signed with its own key.

    ``read`` returns the current fold; ``append(key, value)`` publishes one record to the
    reviews topic keyed by review id. ``visible`` hides reviews the caller may not see
    (as if they did not exist). Waits up to ``wait_s`` for the vote's judgement to be
    read back. Raises :class:`RegistryError` (unknown reviewer), :class:`ReviewNotFound`,
    :class:`ValueError` (a vote other than approve/deny).
    """
    if vote not in VOTES:
        raise ValueError(f"a vote is approve or deny, not {vote!r}")
    key = reviewer_key(registry, reviewer)
    reviews = [r for r in read().reviews if visible is None or visible(r)]
    review = find_review(reviews, ref)
    record = make_vote(review, reviewer, key, vote, reason, clock_us())
    append(review.review_id.encode(), get_codec().encode("ReviewVote", record))
    vote_id = str(record["vote_id"])
    judgement = read().judgements.get(vote_id)
    deadline = time.monotonic() + wait_s
    while judgement is None and time.monotonic() < deadline:
        time.sleep(poll_s)  # the broker has acknowledged it; a reader may lag a moment
        judgement = read().judgements.get(vote_id)
    return VoteResult(
        review.review_id, review.action_id, vote_id, reviewer, vote,
        judgement.outcome.value if judgement else "unknown",
        judgement.reason if judgement else f"the vote was sent but not read back in {wait_s:g} s",
        judgement.decided.value if judgement and judgement.decided else None)
