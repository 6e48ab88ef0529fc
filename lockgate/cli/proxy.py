"""``lockgate proxy postgres``: run the PostgreSQL guard proxy (the logic is in producers.pgproxy)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from lockgate.cli import context
from lockgate.cli.output import EXIT_OK, progress

__all__ = ["register"]


def cmd_proxy_postgres(args: argparse.Namespace) -> int:
    from producers import GuardSettings
    from producers.pgproxy import load_config, run_proxy

    config = load_config(args.config, listen=args.listen, upstream=args.upstream, resource=args.resource,
                         service=args.service, timeout_s=args.timeout)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {"bootstrap_servers": context.bootstrap(), "topic_prefix": context.topics().prefix,
                                 "home": context.home()}
    if config.service:
        overrides["service"] = config.service
    if config.timeout_s:
        overrides["timeout_s"] = config.timeout_s
    settings = GuardSettings(**overrides)

    def ready(host: str, port: int) -> None:
        progress(f"PostgreSQL guard proxy listening on {host}:{port} -> upstream {config.upstream} "
                 f"(service {settings.service}, resource {config.resource})")

    asyncio.run(run_proxy(config, settings, ready=ready))
    return EXIT_OK


def register(sub: argparse._SubParsersAction[Any]) -> None:
    group = sub.add_parser("proxy", help="guard proxies for clients that cannot use the SDK",
                           description="Guard proxies: put Lockgate in front of clients you cannot change.")
    proxies = group.add_subparsers(dest="proxy", metavar="PROXY", required=True)
    p = proxies.add_parser(
        "postgres", help="PostgreSQL wire-protocol guard proxy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Listen for PostgreSQL clients (psql, drivers, applications) and forward them to the\n"
        "upstream server. Every statement is proposed as an action first (type db.query, the SQL in\n"
        "attributes.sql, the PostgreSQL user as the actor) and runs only on a signed allow; a\n"
        "blocked statement gets SQLSTATE 42501 and the session stays usable. Each executed\n"
        "statement's outcome (command tag, row count, optional before/after images) is recorded\n"
        "when its transaction ends. Runs until SIGINT/SIGTERM.",
        epilog="exit status: 0 stopped by a signal, 2 an error (bad config, Kafka unreachable)\n\n"
        "examples:\n"
        "  lockgate proxy postgres --listen 127.0.0.1:6432 --upstream 127.0.0.1:5432\n"
        "  lockgate proxy postgres --config pgproxy.yaml\n"
        "  psql 'host=127.0.0.1 port=6432 dbname=shop user=alice'\n\n"
        "the config file (YAML, or TOML by its .toml suffix) takes listen, upstream, resource,\n"
        "action_type, service, timeout_s, roles, default_roles, tls {cert, key, required},\n"
        "images {tables, max_rows, max_columns, max_bytes}, blast_radius {tables, rules};\n"
        "options given here override it. See README.md, 'PostgreSQL guard proxy'.",
    )
    p.add_argument("--config", type=Path, help="proxy configuration file (YAML or .toml)")
    p.add_argument("--listen", metavar="HOST:PORT", help="address clients connect to (default 127.0.0.1:6432)")
    p.add_argument("--upstream", metavar="HOST:PORT", help="the PostgreSQL server to guard")
    p.add_argument("--resource", metavar="TEMPLATE",
                   help="resource of each proposal; {database} and {user} are filled in (default db/{database})")
    p.add_argument("--service", help="service identity of the proxy's Guard (its key signs proposals)")
    p.add_argument("--timeout", type=float, help="seconds to wait for a verdict before refusing (fail-closed)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(handler=cmd_proxy_postgres)
