"""``lockgate audit query`` and ``lockgate tokens``: reading the audit trail.

While the sink runs it owns the embedded ClickHouse directory, so queries go through its
HTTP API (with a short-lived operator token, revoked afterwards; ``--tenant`` narrows the
rows); when it is stopped, the command opens the store itself. Both paths are
:mod:`sinks.ledger_source`'s, shared with ``verify``. Every filter value travels as a
query parameter, never as SQL text.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from typing import Any

from lockgate.cli.output import EXIT_NEGATIVE, EXIT_OK, emit_json, progress
from lockgate.kernel.errors import LockgateError

__all__ = ["fetch_actions", "register"]

FILTERS = ("actor", "service", "resource", "type", "decision", "rule", "outcome", "text", "tenant",
           "since", "from", "to", "limit", "offset", "cursor")


def _params(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in FILTERS:
        value = getattr(args, name.replace("from", "from_"), None)
        if value is not None:
            out[name] = str(value)
    return out


def fetch_actions(params: dict[str, str]) -> dict[str, Any]:
    """Run an action query where the store can be read now (see :func:`sinks.ledger_source.open_source`)."""
    from lockgate.cli.sources import open_source

    source = open_source()
    try:
        return source.actions(params)
    finally:
        source.close()


def _when(us: Any) -> str:
    if not us:
        return ""
    return dt.datetime.fromtimestamp(int(us) / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _rules(row: dict[str, Any]) -> str:
    ids, modes = row.get("rule_ids") or [], row.get("rule_modes") or []
    return ",".join(f"{i}{'(shadow)' if m == 'shadow' else ''}" for i, m in zip(ids, modes, strict=False))


def cmd_query(args: argparse.Namespace) -> int:
    result = fetch_actions(_params(args))
    rows: list[dict[str, Any]] = result.get("actions", [])
    if args.json:
        emit_json(result)
    elif args.csv:
        fields = sorted({k for r in rows for k in r})
        writer = csv.DictWriter(sys.stdout, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()})
    else:
        print(f"{'proposed (UTC)':<19} {'decision':<8} {'actor':<12} {'service':<10} {'type':<10} "
              f"{'resource':<22} {'outcome':<9} rules / reason")
        for r in rows:
            print(f"{_when(r.get('proposed_at')):<19} {r.get('decision') or '?':<8} {r.get('actor_id', ''):<12} "
                  f"{r.get('service', ''):<10} {r.get('type', ''):<10} {r.get('resource', ''):<22} "
                  f"{r.get('outcome_status') or '-':<9} {_rules(r) or '-'}  {(r.get('reason') or '')[:60]}")
        if result.get("next_cursor"):
            print(f"more: --cursor {result['next_cursor']}", file=sys.stderr)
    return EXIT_OK


def _keyring() -> Any:
    """The processor's public key as a keyring, or None when this home has none."""
    from lockgate.cli.context import home
    from lockgate.kernel.home import Home
    from trust.keys import Keyring, PublicKey

    path = Home(home()).processor_public_key
    return Keyring([PublicKey.load(path)]) if path.exists() else None


def _show_text(rec: dict[str, Any]) -> None:
    integ = rec.get("integrity", {})
    print(f"action {rec['action_id']} (tenant {rec.get('tenant')}), rendered from its chained payloads")
    attrs = ", ".join(f"{k}={v}" for k, v in (rec.get("attributes") or {}).items())
    lines = [
        ("who", f"{rec.get('actor_id') or '?'} (roles: {', '.join(rec.get('actor_roles') or []) or '-'}) "
                f"via {rec.get('service') or '?'}"),
        ("what", f"{rec.get('type') or '?'} on {rec.get('resource') or '?'}"),
        ("sql", rec.get("sql") or ""),
        ("attributes", attrs),
        ("intended", rec.get("change_json") or ""),
        ("before", rec.get("before_json") or ""),
        ("after", rec.get("after_json") or ""),
        ("decision", f"{(rec.get('decision') or 'none').upper()} ({rec.get('basis') or '-'}) under policy "
                     f"{rec.get('policy_name') or '-'} v{rec.get('policy_version')}: {rec.get('reason') or ''}"),
        ("rules", ", ".join(f"{i} ({e}, {m})" for i, e, m in zip(
            rec.get("rule_ids") or [], rec.get("rule_effects") or [], rec.get("rule_modes") or [], strict=False))),
        ("outcome", " ".join(x for x in (rec.get("outcome_status") or "none", rec.get("error_type") or "",
                                         rec.get("error_message") or "") if x)),
        ("times", f"proposed {_when(rec.get('proposed_at')) or '-'}, decided {_when(rec.get('decided_at')) or '-'} "
                  f"(eval {rec.get('eval_latency_us')} us), outcome {_when(rec.get('outcome_at')) or '-'}"),
    ]
    for label, value in lines:
        if value:
            print(f"  {label:<11} {value}")
    print("events")
    for e in rec.get("events", []):
        chk = e.get("check", {})
        cp = chk.get("checkpoint", {})
        link = {True: "links ok", False: "LINK BROKEN", None: "link not checkable"}[chk.get("link_ok")]
        cp_text = cp.get("state", "?") + (f" by {cp['checkpoint_id']}" if cp.get("checkpoint_id") else "")
        print(f"  {e.get('kind', '?'):<11} p{e.get('ledger_partition')} #{e.get('sequence')}  "
              f"{'hash ok' if chk.get('hash_ok') else 'HASH MISMATCH'}, {link}, checkpoint {cp_text}"
              f"{'' if chk.get('stored_matches', True) else ', STORED COLUMNS DIFFER'}")
    chain, cps, views = integ.get("chain", {}), integ.get("checkpoint", {}), integ.get("views", {})
    print("integrity: " + ("OK" if integ.get("ok") else "NOT OK"))
    print(f"  chain       {'ok' if chain.get('ok') else 'BROKEN'}: {chain.get('hashes_recomputed')} hashes "
          f"recomputed, links {'ok' if chain.get('links_ok') else 'broken'}")
    state = {True: "ok", False: "INVALID", None: "not checked (no processor public key)"}[cps.get("ok")]
    print(f"  checkpoint  {state}: {cps.get('covered')} covered by a valid signed checkpoint, "
          f"{cps.get('pending')} not yet checkpointed")
    print(f"  views       {'stored columns and summary match the payloads' if views.get('ok') else 'DO NOT MATCH'}")
    for m in views.get("mismatches", []):
        print(f"    {m['table']}.{m.get('column') or '*'}"
              f"{'' if m.get('sequence') is None else ' (record ' + str(m['sequence']) + ')'}: "
              f"stored {json.dumps(m.get('stored'))}, ledger {json.dumps(m.get('ledger'))}")
    if integ.get("checked_by"):
        print(f"  checked by  {integ['checked_by']}")


def cmd_show(args: argparse.Namespace) -> int:
    from lockgate.cli.sources import open_source

    source = open_source(progress)
    try:
        rec = source.action_record(args.action_id, _keyring())
    finally:
        source.close()
    if rec is None:
        raise LockgateError(f"no audit event of action {args.action_id!r} in the store")
    if args.json:
        emit_json(rec)
    else:
        _show_text(rec)
    return EXIT_OK if rec.get("integrity", {}).get("ok") else EXIT_NEGATIVE


def cmd_history(args: argparse.Namespace) -> int:
    from lockgate.cli.context import bootstrap, topics
    from lockgate.cli.sources import open_source
    from sinks.ledger_source import load_from_topics
    from trust.history import resource_history

    if args.from_topics:
        events, _cps = load_from_topics(bootstrap(), topics().prefix, progress)
    else:
        source = open_source(progress)
        try:
            events = source.events()
        finally:
            source.close()
    steps = resource_history(events, args.resource)
    if args.json:
        emit_json(steps)
        return EXIT_OK
    if not steps:
        print(f"no recorded action on a resource starting with {args.resource!r}")
    for st in steps:
        verdict = (st["decision"] or "no verdict").upper()
        print(f"{_when(st['proposed_at_us'])}  {verdict:<10} {st['actor']:<12} {st['type']:<10} {st['resource']}")
        if st["sql"]:
            print(f"    sql: {st['sql']}")
        if st["rules"]:
            print(f"    rules: {', '.join(st['rules'])}")
        if st["outcome"]:
            print(f"    {st['outcome']}: {json.dumps(st['before'])} -> {json.dumps(st['after'])}")
    return EXIT_OK


def cmd_tokens_create(args: argparse.Namespace) -> int:
    from lockgate.cli.context import home
    from sinks.tokens import create_token

    if args.reviewer:
        from lockgate.kernel.home import Home
        from trust.review_votes import reviewer_key
        from trust.reviewers import ReviewerRegistry

        reviewer_key(ReviewerRegistry(Home(home()).keys), args.reviewer)  # registered, and its key is here
    info, secret = create_token(home(), args.tenant, label=args.label, reviewer=args.reviewer or "")
    if args.json:
        emit_json({"token_id": info.token_id, "tenant": info.tenant, "label": info.label,
                   "reviewer": info.reviewer or None, "token": secret})
    else:
        who = f", votes as reviewer {info.reviewer}" if info.reviewer else ""
        print(f"token {info.token_id} for tenant {info.tenant}{who} (shown once, keep it secret):")
        print(secret)
        if info.reviewer:
            from lockgate.cli.locate import locate

            print(f"review inbox: {locate().api_urls[-1]}/reviews?token={secret}")
    return EXIT_OK


def cmd_tokens_list(args: argparse.Namespace) -> int:
    from lockgate.cli.context import home
    from sinks.tokens import list_tokens

    rows = [{"token_id": t.token_id, "tenant": t.tenant, "label": t.label, "created_at": t.created_at,
             "reviewer": t.reviewer or None} for t in list_tokens(home())]
    if args.json:
        emit_json(rows)
    else:
        for r in rows:
            who = f"  reviewer {r['reviewer']}" if r["reviewer"] else ""
            print(f"{r['token_id']}  {r['tenant']:<16} {r['created_at']}  {r['label']}{who}")
    return EXIT_OK


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    from lockgate.cli.context import home
    from sinks.tokens import revoke_token

    if not revoke_token(home(), args.token_id):
        raise LockgateError(f"no token {args.token_id}; see `lockgate tokens list`")
    print(f"revoked {args.token_id}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction[Any]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    audit = sub.add_parser("audit", help="query the audit trail", formatter_class=fmt,
                           description="Read the audit trail: one row per action with who acted, what\n"
                           "changed, which rules applied, the decision and the outcome.")
    asub = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    q = asub.add_parser(
        "query", help="filter actions", formatter_class=fmt,
        description="List actions, newest first. Filters combine with AND. Time defaults to the\n"
        "last 24 hours. Output: a table, --json (the API's shape), or --csv.",
        epilog="examples:\n  lockgate audit query --decision block --since 1h\n"
        "  lockgate audit query --actor alice --json\n"
        "  lockgate audit query --resource db/prod/ --rule prod-delete-update-without-where --csv\n\n"
        "exit status: 0 success (also when nothing matched), 2 error")
    q.add_argument("--actor", help="actor id (exact)")
    q.add_argument("--service", help="service name (exact)")
    q.add_argument("--resource", help="resource prefix, e.g. db/prod/")
    q.add_argument("--type", help="action type (exact)")
    q.add_argument("--decision", choices=("allow", "block"))
    q.add_argument("--rule", help="a matched rule id (enforced or shadow)")
    q.add_argument("--outcome", choices=("committed", "failed"))
    q.add_argument("--text", help="text contained in the verdict's reason")
    q.add_argument("--tenant", help="only this tenant (default: all tenants you can read)")
    q.add_argument("--since", help="relative window: 30m, 1h, 7d")
    q.add_argument("--from", dest="from_", metavar="ISO", help="start (ISO 8601, UTC)")
    q.add_argument("--to", metavar="ISO", help="end (ISO 8601, UTC)")
    q.add_argument("--limit", type=int, help="rows per page (default 50)")
    q.add_argument("--offset", type=int, help="skip rows")
    q.add_argument("--cursor", help="continue after the previous page (printed on stderr)")
    out = q.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON output")
    out.add_argument("--csv", action="store_true", help="CSV output")
    q.set_defaults(handler=cmd_query)

    sh = asub.add_parser(
        "show", help="one action, rendered from its chained payloads and checked", formatter_class=fmt,
        description="Show one action: who acted, what changed, which rules applied, the decision\n"
        "and the outcome — rendered from the action's chained events (decoded payloads), not\n"
        "from the store's derived columns. Then what was checked: every event's hash recomputed\n"
        "and linked to its neighbours, its coverage by a validly signed checkpoint (processor\n"
        "key from $LOCKGATE_HOME/keys/processor.pub.pem), and whether the stored columns and\n"
        "summary rows readers see match the payloads (each mismatch: table, column, stored and\n"
        "ledger value). Reads the store directly, or the running sink's /api/actions/ID (then\n"
        "the sink checks, with its key; `lockgate verify` is the independent check).",
        epilog="examples:\n  lockgate audit show 6f1c...-action-id\n  lockgate audit show 6f1c... --json\n\n"
        "exit status: 0 everything checked agrees, 1 something does not (printed),\n"
        "2 error (no such action, store unreachable)")
    sh.add_argument("action_id", metavar="ACTION_ID")
    sh.add_argument("--json", action="store_true", help="JSON output (the API's shape)")
    sh.set_defaults(handler=cmd_show)

    h = sub.add_parser(
        "history", help="reconstruct what happened to a resource", formatter_class=fmt,
        description="Rebuild a resource's history from the ledger: every action on a resource\n"
        "starting with PREFIX, oldest first, with who acted, the verdict and its rules, and\n"
        "what changed. --from-topics rebuilds it from the Kafka replay topics alone, without\n"
        "ClickHouse (run `lockgate verify --from-topics` to check those first).",
        epilog="examples:\n  lockgate history db/prod/orders\n  lockgate history env/prod --from-topics --json")
    h.add_argument("resource", metavar="PREFIX", help="resource name or prefix")
    h.add_argument("--from-topics", action="store_true", help="read the replay topics, not ClickHouse")
    h.add_argument("--json", action="store_true", help="JSON output")
    h.set_defaults(handler=cmd_history)

    tokens = sub.add_parser("tokens", help="API bearer tokens, each scoped to one tenant", formatter_class=fmt,
                            description="Tokens for the audit API and dashboard. Only their SHA-256 is stored\n"
                            "(0600); a token sees only its tenant's rows (`*` = operator, all tenants).\n"
                            "A reviewer token (--reviewer NAME) reaches only the review inbox (/reviews)\n"
                            "and votes as that reviewer: the sink signs with NAME's key from\n"
                            "$LOCKGATE_HOME/keys/reviewers/NAME.pem, so the token is as powerful as the key.",
                            epilog="examples:\n  lockgate tokens create --tenant default --label grafana\n"
                            "  lockgate tokens create --tenant default --reviewer dana --label 'dana inbox'")
    tsub = tokens.add_subparsers(dest="tokens_command", metavar="SUBCOMMAND", required=True)
    c = tsub.add_parser("create", help="create a token (printed once)")
    c.add_argument("--tenant", required=True, help="tenant the token may read, or * for all")
    c.add_argument("--label", default="", help="what the token is for")
    c.add_argument("--reviewer", metavar="NAME", help="a reviewer token: votes as registered reviewer NAME "
                   "from the dashboard's review inbox, and reads nothing else")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=cmd_tokens_create)
    ls = tsub.add_parser("list", help="list tokens (never their secrets)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_tokens_list)
    rv = tsub.add_parser("revoke", help="revoke a token by id")
    rv.add_argument("token_id")
    rv.set_defaults(handler=cmd_tokens_revoke)
