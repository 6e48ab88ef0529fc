"""``lockgate reviews``: list pending reviews, approve or deny one with the reviewer's own key."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from lockgate.cli import context
from lockgate.cli.output import EXIT_NEGATIVE, EXIT_OK, emit_json
from lockgate.kernel.errors import ConfigError, LockgateError
from lockgate.kernel.home import Home

__all__ = ["register"]


class ReviewNotFound(LockgateError):
    """No review (or more than one) matches the id given."""


def _records(purpose: str) -> list[tuple[bytes | None, int]]:
    from lockgate.kernel.partition_reader import read_topic

    return [(r.value, r.timestamp_ms * 1000)
            for r in read_topic(context.bootstrap(), context.topics().reviews, purpose)]


def _book_and_judgements() -> tuple[Any, dict[str, Any]]:
    """Fold the reviews topic like the processor does; also each vote's judgement by vote id."""
    from trust.keys import PublicKey
    from trust.reviewers import ReviewerRegistry
    from trust.reviews import ReviewBook

    home = Home(context.home())
    book = ReviewBook(PublicKey.load(home.processor_public_key), ReviewerRegistry(home.keys))
    judged: dict[str, Any] = {}
    for value, at_us in _records("reviews-cli"):
        applied = book.apply(value, at_us)
        j = applied.judgement
        if j is not None and j.vote is not None:
            judged[str(j.vote["vote_id"])] = j
    return book, judged


def _render(row: dict[str, Any]) -> str:
    what = row["sql"] or f"{row['type']} {row['resource']}"
    kind = "post-hoc (break-glass)" if row["post_hoc"] else row["status"].upper()
    return (f"{row['review_id']}  {kind:<8} {row['requester']} via {row['service']}: {what}\n"
            f"    resource {row['resource']}; justification: {row['justification'] or '-'}\n"
            f"    rule {row['rule_id']}; approvals {row['approvals']}/{row['min_approvals']} from "
            f"{', '.join(row['approver_groups'])}"
            + (f" (by {', '.join(row['approved_by'])})" if row["approved_by"] else ""))


def cmd_list(args: argparse.Namespace) -> int:
    book, _ = _book_and_judgements()
    rows = [r.summary() for r in book]
    if not args.all:
        rows = [r for r in rows if r["status"] == "open"]
    rows.sort(key=lambda r: r["opened_at_us"])
    if args.json:
        emit_json(rows)
    elif not rows:
        print("no open reviews" if not args.all else "no reviews")
    else:
        for row in rows:
            print(_render(row))
    return EXIT_OK


def cmd_vote(args: argparse.Namespace) -> int:
    from lockgate.kernel.keyed_publish import publish_keyed
    from schemas.codec import get_codec
    from trust.keys import SigningKey, clock_us
    from trust.reviewers import ReviewerRegistry
    from trust.reviews import make_vote

    name = args.reviewer or os.environ.get("LOCKGATE_REVIEWER", "").strip()
    if not name:
        raise ConfigError("say who votes: --as NAME (or LOCKGATE_REVIEWER); register with `lockgate keys add-reviewer`")
    registry = ReviewerRegistry(Home(context.home()).keys)
    if registry.get(name) is None:
        raise ConfigError(f"no reviewer {name!r} is registered; run `lockgate keys add-reviewer {name} --groups ...`")
    key = SigningKey.load(registry.private_key_path(name))
    book, _ = _book_and_judgements()
    found = book.find(args.review_id)
    if len(found) != 1:
        raise ReviewNotFound(f"{'no' if not found else len(found)} review(s) match {args.review_id!r}; "
                             "see `lockgate reviews list --all`")
    review = found[0]
    vote = make_vote(review, name, key, args.vote, args.reason, clock_us())
    publish_keyed(context.bootstrap(), context.topics().reviews, review.review_id.encode(),
                  get_codec().encode("ReviewVote", vote))
    judgement = None
    deadline = time.monotonic() + 10
    while judgement is None and time.monotonic() < deadline:
        judgement = _book_and_judgements()[1].get(vote["vote_id"])
        if judgement is None:
            time.sleep(0.2)  # the broker has acknowledged it; a reader may lag a moment
    out = {"review_id": review.review_id, "action_id": review.action_id, "vote_id": vote["vote_id"],
           "reviewer": name, "vote": args.vote,
           "outcome": judgement.outcome.value if judgement else "unknown",
           "detail": judgement.reason if judgement else "the vote was sent but not read back in 10 s",
           "decided": judgement.decided.value if judgement and judgement.decided else None}
    if args.json:
        emit_json(out)
    else:
        print(f"{args.vote} by {name} on review {review.review_id}: {out['outcome']} — {out['detail']}")
        if out["decided"]:
            print(f"  the review is {out['decided']}; the processor sends the final verdict")
    return EXIT_OK if out["outcome"] == "accepted" else EXIT_NEGATIVE


def register(sub: argparse._SubParsersAction[Any]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("reviews", help="pending reviews: list, approve, deny", formatter_class=fmt,
                       description="Actions matched by a review rule wait for reviewers. Each vote is signed\n"
                       "with the reviewer's own key ($LOCKGATE_HOME/keys/reviewers/NAME.pem) and judged by\n"
                       "the processor: the reviewer must be in an approver group and must not be the\n"
                       "requester; one vote per reviewer; a denial is final; an expired review takes no\n"
                       "votes. Refused votes by ineligible or forged keys become security events.",
                       epilog="exit status (approve/deny): 0 the vote counted, 1 it was refused, 2 error\n\n"
                       "examples:\n  lockgate reviews list\n"
                       "  lockgate reviews approve rv-3f2a --as dana --reason 'ticket OPS-42'\n"
                       "  lockgate reviews deny rv-3f2a --as dana --reason 'use the archive job'")
    rsub = p.add_subparsers(dest="reviews_command", metavar="SUBCOMMAND", required=True)
    q = rsub.add_parser("list", help="open reviews (with --all: every review and its status)")
    q.add_argument("--all", action="store_true", help="include decided, expired and post-hoc reviews")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_list)
    for verb, helptext in (("approve", "approve a review"), ("deny", "deny a review (final)")):
        q = rsub.add_parser(verb, help=helptext)
        q.add_argument("review_id", metavar="ID", help="review id (or a unique prefix, or the action id)")
        q.add_argument("--reason", required=True, help="why; recorded with the signed vote")
        q.add_argument("--as", dest="reviewer", help="reviewer name (default: $LOCKGATE_REVIEWER)")
        q.add_argument("--json", action="store_true")
        q.set_defaults(handler=cmd_vote, vote=verb)
