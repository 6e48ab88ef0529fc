"""``lockgate reviews``: list pending reviews, approve or deny one with the reviewer's own key,
list the time-boxed grants approvals opened."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.cli import context
from lockgate.cli.output import EXIT_NEGATIVE, EXIT_OK, emit_json
from lockgate.kernel.errors import ConfigError
from lockgate.kernel.home import Home

if TYPE_CHECKING:
    from trust.review_votes import Folded, VoteResult
    from trust.reviewers import ReviewerRegistry

__all__ = ["fold_topic", "register", "vote_on_topic"]


def fold_topic(bootstrap: str, topic: str, registry: ReviewerRegistry, home: Path) -> Folded:
    """Fold the reviews topic like the processor does (:func:`trust.review_votes.fold_records`)."""
    from lockgate.kernel.partition_reader import read_topic
    from trust.keys import PublicKey
    from trust.review_votes import fold_records

    records = [(r.value, r.timestamp_ms * 1000) for r in read_topic(bootstrap, topic, "reviews-cli")]
    return fold_records(records, PublicKey.load(Home(home).processor_public_key), registry)


def vote_on_topic(bootstrap: str, topic: str, home: Path, reviewer: str, ref: str, vote: str,
                  reason: str) -> VoteResult:
    """Vote as ``reviewer`` with its key from ``home`` (what ``reviews approve|deny`` and the demo do)."""
    from lockgate.kernel.keyed_publish import publish_keyed
    from trust.review_votes import cast_vote
    from trust.reviewers import ReviewerRegistry

    registry = ReviewerRegistry(Home(home).keys)

    def append(key: bytes, value: bytes) -> None:
        publish_keyed(bootstrap, topic, key, value)

    return cast_vote(lambda: fold_topic(bootstrap, topic, registry, home), append, registry, reviewer, ref, vote,
                     reason, poll_s=0.2)


def _render(row: dict[str, Any]) -> str:
    what = row["sql"] or f"{row['type']} {row['resource']}"
    kind = "post-hoc (break-glass)" if row["post_hoc"] else row["status"].upper()
    return (f"{row['review_id']}  {kind:<8} {row['requester']} via {row['service']}: {what}\n"
            f"    resource {row['resource']}; justification: {row['justification'] or '-'}\n"
            f"    rule {row['rule_id']}; approvals {row['approvals']}/{row['min_approvals']} from "
            f"{', '.join(row['approver_groups'])}"
            + (f" (by {', '.join(row['approved_by'])})" if row["approved_by"] else ""))


def cmd_list(args: argparse.Namespace) -> int:
    from trust.reviewers import ReviewerRegistry

    registry = ReviewerRegistry(Home(context.home()).keys)
    rows = [r.summary() for r in fold_topic(context.bootstrap(), context.topics().reviews, registry,
                                            context.home()).reviews]
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


def cmd_grants(args: argparse.Namespace) -> int:
    """Approved ``grant: window`` reviews, with the terms today's policy gives them."""
    import time

    from processors.policy.store import current_policies
    from trust.grants import grant_from_review, terms_in_policy
    from trust.reviewers import ReviewerRegistry

    registry = ReviewerRegistry(Home(context.home()).keys)
    folded = fold_topic(context.bootstrap(), context.topics().reviews, registry, context.home())
    policies = current_policies(context.bootstrap(), context.topics())
    now = time.time_ns() // 1000
    rows = []
    for review in folded.reviews:
        grant = grant_from_review(review)
        if grant is None:
            continue
        policy = policies.get(grant.tenant)
        terms = terms_in_policy(policy, grant.rule_id) if policy is not None else None
        active = terms is not None and grant.approved_at <= now <= grant.expires_at(terms)
        rows.append({**grant.summary(terms), "active": active})
    if not args.all:
        rows = [r for r in rows if r["active"]]
    rows.sort(key=lambda r: r["approved_at_us"])
    if args.json:
        emit_json(rows)
    elif not rows:
        print("no active grants" if not args.all else "no grants")
    else:
        for row in rows:
            scope = f"{row['resource_prefix']}*" if "resource_prefix" in row else "(policy gives no window now)"
            until = f"until {row['expires_at_us']} µs" if "expires_at_us" in row else "ended"
            print(f"{row['review_id']}  {'ACTIVE' if row['active'] else 'ENDED':<6} {row['actor']} via "
                  f"{row['service']}: {row['type']} on {scope} {until}\n"
                  f"    rule {row['rule_id']}; tenant {row['tenant']}; approved at {row['approved_at_us']} µs "
                  f"(action {row['action_id']}, {row['resource']})")
    return EXIT_OK


def cmd_vote(args: argparse.Namespace) -> int:
    name = args.reviewer or os.environ.get("LOCKGATE_REVIEWER", "").strip()
    if not name:
        raise ConfigError("say who votes: --as NAME (or LOCKGATE_REVIEWER); register with `lockgate keys add-reviewer`")
    result = vote_on_topic(context.bootstrap(), context.topics().reviews, context.home(), name, args.review_id,
                           args.vote, args.reason)
    if args.json:
        emit_json(result.to_json())
    else:
        print(f"{args.vote} by {name} on review {result.review_id}: {result.outcome} — {result.detail}")
        if result.decided:
            print(f"  the review is {result.decided}; the processor sends the final verdict")
    return EXIT_OK if result.accepted else EXIT_NEGATIVE


def register(sub: argparse._SubParsersAction[Any]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("reviews", help="pending reviews: list, approve, deny; time-boxed grants",
                       formatter_class=fmt,
                       description="Actions matched by a review rule wait for reviewers. Each vote is signed\n"
                       "with the reviewer's own key ($LOCKGATE_HOME/keys/reviewers/NAME.pem) and judged by\n"
                       "the processor: the reviewer must be in an approver group and must not be the\n"
                       "requester; one vote per reviewer; a denial is final; an expired review takes no\n"
                       "votes. Refused votes by ineligible or forged keys become security events.",
                       epilog="exit status (approve/deny): 0 the vote counted, 1 it was refused, 2 error\n\n"
                       "examples:\n  lockgate reviews list\n  lockgate reviews grants --json\n"
                       "  lockgate reviews approve rv-3f2a --as dana --reason 'ticket OPS-42'\n"
                       "  lockgate reviews deny rv-3f2a --as dana --reason 'use the archive job'")
    rsub = p.add_subparsers(dest="reviews_command", metavar="SUBCOMMAND", required=True)
    q = rsub.add_parser("list", help="open reviews (with --all: every review and its status)")
    q.add_argument("--all", action="store_true", help="include decided, expired and post-hoc reviews")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_list)
    q = rsub.add_parser(
        "grants", formatter_class=fmt,
        help="time-boxed grants: approved reviews under grant: window, and whether they still allow",
        description="An approved review under a rule with grant: window lets its requester (service and\n"
        "canonical actor id) run the same action type on resources under the rule's\n"
        "grant_resource_prefix, in the same tenant, without a new review, from the approval\n"
        "until grant_window later. The window and prefix are those of the tenant's current\n"
        "policy. Lists active grants; --all also those that ended.")
    q.add_argument("--all", action="store_true", help="include grants whose window ended")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_grants)
    for verb, helptext in (("approve", "approve a review"), ("deny", "deny a review (final)")):
        q = rsub.add_parser(verb, help=helptext)
        q.add_argument("review_id", metavar="ID", help="review id (or a unique prefix, or the action id)")
        q.add_argument("--reason", required=True, help="why; recorded with the signed vote")
        q.add_argument("--as", dest="reviewer", help="reviewer name (default: $LOCKGATE_REVIEWER)")
        q.add_argument("--json", action="store_true")
        q.set_defaults(handler=cmd_vote, vote=verb)
