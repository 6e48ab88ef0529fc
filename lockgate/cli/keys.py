"""``lockgate keys``: the processor key and per-service identities."""

from __future__ import annotations

import argparse
from typing import Any

from lockgate.cli import context
from lockgate.cli.output import EXIT_OK, emit_json
from lockgate.kernel.home import Home

__all__ = ["register"]


def cmd_init(args: argparse.Namespace) -> int:
    from deploy.identity import ensure_processor_key, processor_key_path

    key, created = ensure_processor_key(context.home())
    path = processor_key_path(context.home())
    out = {"key_id": key.key_id, "private_key": str(path), "public_key": str(path.with_suffix(".pub.pem")),
           "created": created}
    if args.json:
        emit_json(out)
    else:
        verb = "created" if created else "exists:"
        print(f"processor key {verb} {path} (0600), key id {key.key_id}")
        print(f"public key {out['public_key']} — give it to every Guard (LOCKGATE_VERDICT_PUBLIC_KEY)")
    return EXIT_OK


def cmd_add_service(args: argparse.Namespace) -> int:
    from trust.registry import ServiceRegistry

    registry = ServiceRegistry(Home(context.home()).keys)
    if args.rotate:
        key, _entry = registry.rotate(args.name, int(args.overlap * 1_000_000))
    else:
        key, _entry = registry.add_service(args.name)
    out = {"service": args.name, "key_id": key.key_id, "private_key": str(registry.private_key_path(args.name)),
           "verdict_public_key": str(Home(context.home()).processor_public_key),
           "bootstrap_servers": context.bootstrap(), "rotated": bool(args.rotate)}
    if args.json:
        emit_json(out)
    else:
        rotated = f" (rotated; old key valid for {args.overlap:g}s)" if args.rotate else ""
        print(f"service {args.name}: key id {key.key_id}{rotated}")
        print("configure the service's Guard with:")
        print(f"  LOCKGATE_SERVICE={args.name}")
        print(f"  LOCKGATE_SERVICE_KEY={out['private_key']}        (0600; keep it secret)")
        print(f"  LOCKGATE_VERDICT_PUBLIC_KEY={out['verdict_public_key']}")
        print(f"  LOCKGATE_BOOTSTRAP_SERVERS={out['bootstrap_servers']}")
    return EXIT_OK


def cmd_add_reviewer(args: argparse.Namespace) -> int:
    from trust.reviewers import ReviewerRegistry

    registry = ReviewerRegistry(Home(context.home()).keys)
    key, reviewer = registry.add_reviewer(args.name, args.groups, args.identity)
    out = {"reviewer": reviewer.name, "groups": list(reviewer.groups), "identities": list(reviewer.identities),
           "key_id": key.key_id, "private_key": str(registry.private_key_path(args.name))}
    if args.json:
        emit_json(out)
    else:
        print(f"reviewer {reviewer.name} (groups {', '.join(reviewer.groups)}): key id {key.key_id}")
        print(f"  private key {out['private_key']} (0600; the reviewer's own — keep it secret)")
        print(f"  vote with: lockgate reviews approve REVIEW_ID --as {reviewer.name} --reason TEXT")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from trust.registry import ServiceRegistry

    registry = ServiceRegistry(Home(context.home()).keys)
    rows = [{"service": name, "key_id": k.key_id, "added_at_us": k.added_at_us, "not_after_us": k.not_after_us}
            for name in registry.services() for k in registry.keys(name)]
    if args.json:
        emit_json(rows)
    else:
        for r in rows:
            until = f"valid until {r['not_after_us']}" if r["not_after_us"] else "valid"
            print(f"{r['service']:<24} {r['key_id']}  {until}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction[Any]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    keys = sub.add_parser("keys", help="processor key and service identities", formatter_class=fmt,
                          description="Manage Ed25519 keys under $LOCKGATE_HOME/keys (files are 0600;\n"
                          "a private key readable by others is refused).")
    ksub = keys.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)
    p = ksub.add_parser("init", help="create the processor's verdict-signing key (idempotent)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_init)
    p = ksub.add_parser("add-service", help="register a service and print what it needs", formatter_class=fmt,
                        description="Create a per-service signing key and register its public key with\n"
                        "the processor. With --rotate, issue a new key and keep the old one valid\n"
                        "for --overlap seconds, so running producers keep working during rollout.",
                        epilog="examples:\n  lockgate keys add-service billing\n"
                        "  lockgate keys add-service billing --rotate --overlap 3600")
    p.add_argument("name", help="service name (letters, digits, . _ -)")
    p.add_argument("--rotate", action="store_true", help="rotate an existing service's key")
    p.add_argument("--overlap", type=float, default=3600.0, help="seconds the old key stays valid (default 3600)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_add_service)
    p = ksub.add_parser("add-reviewer", help="register a reviewer with its own signing key", formatter_class=fmt,
                        description="Create a reviewer's Ed25519 key (0600) and register it with its groups.\n"
                        "Review rules name groups (approvers: [dba]); any member of one may approve.\n"
                        "A reviewer is one identity: its name and every --identity (the actor ids\n"
                        "services know the person by) are compared case- and width-insensitively, and\n"
                        "a reviewer can never approve an action it requested.",
                        epilog="examples:\n"
                        "  lockgate keys add-reviewer dana --groups dba sre --identity dana@corp.example")
    p.add_argument("name", help="reviewer name (letters, digits, . _ - @)")
    p.add_argument("--groups", nargs="+", required=True, metavar="GROUP", help="groups the reviewer belongs to")
    p.add_argument("--identity", action="append", default=[], metavar="ACTOR_ID",
                   help="an actor id the same person acts as (repeatable)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_add_reviewer)
    p = ksub.add_parser("list", help="registered services and their keys")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_list)
