"""``lockgate submit``: send one proposed action and print the verdict."""

from __future__ import annotations

import argparse
from typing import Any

from lockgate.cli import context
from lockgate.cli.output import EXIT_ERROR, EXIT_NEGATIVE, EXIT_OK, emit_json

__all__ = ["parse_attr", "register"]


def parse_attr(text: str) -> tuple[str, Any]:
    """``K=V`` with V typed: integers and floats as numbers, true/false as booleans, else text."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"attribute {text!r} is not K=V")
    key, raw = text.split("=", 1)
    value: Any = raw
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        for conv in (int, float):
            try:
                value = conv(raw)
                break
            except ValueError:
                continue
    return key, value


def cmd_submit(args: argparse.Namespace) -> int:
    from producers import Action, Actor, Guard, GuardSettings, ReviewPending

    attrs = dict(args.attr)
    if args.sql is not None:
        attrs["sql"] = args.sql
    settings = GuardSettings(bootstrap_servers=context.bootstrap(), topic_prefix=context.topics().prefix,
                             home=context.home(), timeout_s=args.timeout,
                             **({"service": args.service} if args.service else {}),
                             **({"tenant": args.tenant} if args.tenant else {}))
    action = Action(Actor(args.actor, tuple(args.role)), args.type, args.resource, attrs,
                    justification=args.justification, break_glass=args.break_glass)
    with Guard(settings) as guard:
        try:
            verdict = guard.check(action, wait_for_review=args.wait_review)
        except ReviewPending as exc:
            if args.json:
                emit_json({**exc.verdict.to_dict(), "error": str(exc)})
            else:
                print(f"PENDING  action {exc.verdict.action_id}: review {exc.verdict.review_id}")
                print(f"  reason: {exc.verdict.reason}")
            return EXIT_ERROR if args.wait_review else EXIT_NEGATIVE
    if args.json:
        emit_json(verdict.to_dict())
    else:
        print(f"{verdict.decision.upper()}  action {verdict.action_id}")
        print(f"  reason: {verdict.reason}")
        print(f"  policy: {verdict.policy_name} v{verdict.policy_version}  (basis {verdict.basis}, "
              f"{verdict.eval_latency_us} µs)")
        for r in verdict.matched_rules:
            print(f"  rule {r.id}: {r.effect} ({r.mode}){' error: ' + r.error if r.error else ''}")
    if verdict.pending_review and not args.json:  # --json prints one JSON document, nothing else
        print(f"  review {verdict.review_id}: waiting (lockgate reviews list; submit --wait-review SECONDS "
              "waits for the reviewers)")
    if verdict.basis == "review_expired":
        return EXIT_ERROR
    return EXIT_OK if verdict.allowed else EXIT_NEGATIVE


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "submit", help="send one action and print the verdict",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Propose one action through the Guard (as the `cli` service, which `lockgate up`\n"
        "registers) and print the signed verdict. Nothing is executed.",
        epilog="exit status: 0 allowed, 1 blocked, denied, or held for review without --wait-review,\n"
        "  2 error (timeout, stack down, bad verdict) or the review expired / was not decided in time\n\n"
        "examples:\n"
        "  lockgate submit --actor alice --role dba --type db.query --resource db/prod/orders \\\n"
        "      --sql 'DELETE FROM orders'\n"
        "  lockgate submit --actor bob --type export --resource s3/reports --attr rows=50000 --json\n"
        "  lockgate submit --actor bob --type db.query --resource db/prod/customers \\\n"
        "      --sql 'DELETE FROM customers WHERE id = 7' --justification 'GDPR erasure' --wait-review 600\n"
        "  lockgate submit --actor ops --role oncall --type db.query --resource db/prod/customers \\\n"
        "      --sql 'DELETE FROM customers WHERE id = 7' --justification 'incident 42' --break-glass",
    )
    p.add_argument("--actor", required=True, help="who acts (actor id)")
    p.add_argument("--role", action="append", default=[], help="actor role (repeatable)")
    p.add_argument("--type", required=True, help="action type, e.g. db.query, deploy, export")
    p.add_argument("--resource", required=True, help="what is acted on, e.g. db/prod/orders")
    p.add_argument("--attr", action="append", default=[], type=parse_attr, metavar="K=V",
                   help="attribute (repeatable; numbers and true/false are typed)")
    p.add_argument("--sql", help="SQL statement (becomes attributes.sql, parsed for sql.* rules)")
    p.add_argument("--service", help="service identity (default: cli)")
    p.add_argument("--tenant", help="tenant (default: default)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the verdict")
    p.add_argument("--justification", help="why the actor asks (review rules with require_reason; break-glass)")
    p.add_argument("--break-glass", action="store_true",
                   help="override a block or pending review (needs a break-glass role and a justification;\n"
                   "loud: a security event, a webhook, and a post-hoc review)")
    p.add_argument("--wait-review", type=float, default=None, metavar="SECONDS",
                   help="if the action is held for review, wait this long for the final verdict")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.set_defaults(handler=cmd_submit)
