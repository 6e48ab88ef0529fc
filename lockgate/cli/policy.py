"""``lockgate policy``: validate, test, apply and list policy-as-code files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lockgate.cli import context
from lockgate.cli.output import EXIT_NEGATIVE, EXIT_OK, emit_json, progress

__all__ = ["register"]


def cmd_validate(args: argparse.Namespace) -> int:
    from processors.errors import PolicyInvalid
    from processors.policy.engine import CompiledPolicy
    from processors.policy.files import load_policy_file
    from processors.policy.limits import DEFAULT_LIMITS

    try:
        rec = load_policy_file(args.file)
    except PolicyInvalid as exc:
        if args.json:
            emit_json({"valid": False, "problems": [
                {"file": p.file, "line": p.line, "rule_id": p.rule_id, "message": p.message}
                for p in exc.problems]})
        else:
            for p in exc.problems:
                print(str(p))
        return EXIT_NEGATIVE
    costs = CompiledPolicy.from_record(rec).rule_costs
    budget = DEFAULT_LIMITS.rule_cost_budget
    if args.json:
        emit_json({"valid": True, "name": rec["name"], "tenant": rec["tenant"], "rules": len(rec["rules"]),
                   "rule_costs": costs, "rule_cost_budget": budget})
    else:
        print(f"{args.file}: policy {rec['name']} (tenant {rec['tenant']}) is valid: {len(rec['rules'])} rules")
        if costs:
            dearest = max(costs, key=lambda rule: costs[rule])
            print(f"  dearest condition: rule {dearest!r}, worst case {costs[dearest]:,} of {budget:,} cost units")
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    from processors.policy.cases import run_case_file

    results = run_case_file(args.file, args.cases)
    failed = [r for r in results if not r.passed]
    if args.json:
        emit_json({"passed": len(results) - len(failed), "failed": len(failed),
                   "results": [{"name": r.case.name, "passed": r.passed, "detail": str(r)} for r in results]})
    else:
        for r in results:
            print(str(r))
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return EXIT_NEGATIVE if failed else EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from processors.policy.files import load_policy_file
    from processors.policy.store import publish_policy

    rec = load_policy_file(args.file)
    published = publish_policy(rec, context.bootstrap(), context.topics())
    out = {"tenant": published.tenant, "name": published.name, "version": published.version,
           "rules": published.rules, "source_sha256": published.source_sha256}
    if args.json:
        emit_json(out)
    else:
        print(f"applied policy {published.name} v{published.version} for tenant {published.tenant} "
              f"({published.rules} rules); running processors pick it up within a second")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from processors.policy.store import current_policies

    rows = [{"tenant": t, "name": r["name"], "version": r["version"], "rules": len(r["rules"]),
             "default": r["default"], "on_error": r["on_error"], "published_by": r["published_by"],
             "published_at_us": r["published_at"]}
            for t, r in sorted(current_policies(context.bootstrap(), context.topics()).items())]
    if args.json:
        emit_json(rows)
    elif not rows:
        print("no policy applied yet: every action is blocked (fail-closed); run `lockgate policy apply FILE`")
    else:
        for r in rows:
            print(f"{r['tenant']:<16} {r['name']:<24} v{r['version']:<5} {r['rules']} rules  "
                  f"default {r['default']}, on_error {r['on_error']}, by {r['published_by']}")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:

    from lockgate.cli.sources import open_source
    from processors.policy.engine import CompiledPolicy
    from processors.policy.files import load_policy_file
    from processors.policy.replay import replay

    policy = CompiledPolicy.from_record(load_policy_file(args.file))
    source = open_source(progress)
    try:
        report = replay(source.events(), policy)
    finally:
        source.close()
    if args.json:
        emit_json(report.to_dict())
    else:
        print(f"{report.actions} recorded actions replayed against {args.file}: "
              f"{report.unchanged} unchanged, {len(report.changes)} would change "
              f"({', '.join(f'{k}: {v}' for k, v in sorted(report.transitions.items())) or 'none'})")
        for c in report.changes[: args.show]:
            print(f"  {c.recorded:>5} -> {c.candidate:<5} {c.actor:<12} {c.type:<10} {c.resource:<24} "
                  f"{','.join(c.candidate_rules) or c.candidate_reason[:60]}")
    return EXIT_NEGATIVE if report.changes and args.fail_on_change else EXIT_OK


def register(sub: argparse._SubParsersAction[Any]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    pol = sub.add_parser("policy", help="policy as code: validate, test, apply, list", formatter_class=fmt,
                         description="Policies are YAML files: name, tenant, default, on_error, and rules\n"
                         "(id, description, match {types, resources, services}, when (CEL), effect,\n"
                         "mode, message, and for effect review a review block: approvers,\n"
                         "min_approvals, require_reason, expires_after, grant: action | window; a\n"
                         "window grant also needs grant_window (e.g. 2h) and grant_resource_prefix\n"
                         "(e.g. db/prod/, ending with '/'): one approval then lets the same requester\n"
                         "run the same action type under that prefix without a new review until the\n"
                         "window ends). See processors/policies/example.yaml and processors/policy/files.py.")
    psub = pol.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)
    p = psub.add_parser("validate", help="compile every expression; report file:line problems",
                        formatter_class=fmt,
                        description="Checks every rule: CEL that compiles, known variables, fields and functions,\n"
                        "a boolean result, and a worst-case cost within the per-rule budget; and the policy's\n"
                        "size (256 KiB, 2000 rules). Exit 0 if valid, 1 if problems were found.")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_validate)
    p = psub.add_parser("test", help="run example actions against a policy, offline", formatter_class=fmt,
                        description="CASES is a YAML list of {name, action, expect, expect_rules?}.\n"
                        "Exit 0 when every case passes, 1 otherwise. Needs no running stack.",
                        epilog="example:\n  lockgate policy test processors/policies/example.yaml "
                        "processors/policies/example_cases.yaml")
    p.add_argument("file", type=Path)
    p.add_argument("cases", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_test)
    p = psub.add_parser("apply", help="validate, then publish as the tenant's next version",
                        formatter_class=fmt, description="Validates FILE as `validate` does and publishes it.",
                        epilog="exit status: 0 applied, 2 invalid or oversized policy, or Kafka unavailable")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_apply)
    p = psub.add_parser("replay", help="what would FILE have decided on recorded history?",
                        formatter_class=fmt,
                        description="Re-run every recorded action in the audit trail against the candidate\n"
                        "policy FILE and list the decisions that would change (allow->block and\n"
                        "block->allow). Nothing is published. Use before `policy apply`.",
                        epilog="exit status: 0 done (1 with --fail-on-change when anything would change), 2 error")
    p.add_argument("file", type=Path)
    p.add_argument("--show", type=int, default=20, help="changed actions to list (default 20)")
    p.add_argument("--fail-on-change", action="store_true", help="exit 1 if any decision would change")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_replay)
    p = psub.add_parser("list", help="the active policy of each tenant")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_list)
