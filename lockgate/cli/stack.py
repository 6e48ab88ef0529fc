"""``lockgate up``, ``down``, ``status``, ``smoke``: the local stack."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lockgate.cli.output import EXIT_ERROR, EXIT_OK, emit_json

__all__ = ["register"]


def _stack(**overrides: Any) -> Any:
    from deploy.settings import StackSettings
    from deploy.stack import Stack
    from lockgate.cli.probe import await_first_verdict

    return Stack(StackSettings(**{k: v for k, v in overrides.items() if v is not None}), probe=await_first_verdict)


def cmd_up(args: argparse.Namespace) -> int:
    report = _stack(processors=args.processors, brokers=args.brokers).up()
    if args.json:
        emit_json({"started": report.started, "already_running": report.already_running,
                   "topics_created": report.topics_created, "drifts": [str(d) for d in report.drifts]})
    else:
        for name in report.started:
            print(f"started {name}")
        for name in report.already_running:
            print(f"{name} already running")
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    stopped = _stack().down()
    if args.json:
        emit_json({"stopped": stopped})
    else:
        print("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from lockgate.cli.spool import spool_dir, spool_summary

    status = _stack().status()
    status["spool"] = spool_summary(spool_dir())
    if args.json:
        emit_json(status)
    else:
        print(f"state directory  {status['home']}")
        print(f"bootstrap        {status['bootstrap']}")
        print(f"topic prefix     {status['topic_prefix']}")
        print(f"logs             {status['logs']}")
        print(f"dashboard        {status['dashboard']}  (needs a token: lockgate tokens create --tenant default)")
        spool = status["spool"]
        print(f"spooled outcomes {spool['outcomes']} in {spool['dir']}"
              + (" (lockgate spool list / flush)" if spool["outcomes"] else "")
              + (f"; {spool['quarantined']} quarantined" if spool["quarantined"] else ""))
        from deploy.health import describe

        for c in status["components"]:
            state = describe(c["running"], c["pid"], c.get("health"))
            print(f"  {c['name']:<12} {state:<22} {c['address'] or '':<26} log {c['log']}")
    return EXIT_OK


def cmd_smoke(args: argparse.Namespace) -> int:
    from deploy.smoke import smoke

    result = smoke(args.count)
    if args.json:
        emit_json(result)
    else:
        print(f"smoke: produced and consumed {result['consumed']}/{result['produced']} Avro records "
              f"on {result['topic']} in {result['seconds']:.2f}s")
    return EXIT_OK if result["consumed"] == result["produced"] else EXIT_ERROR


def _between(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def register(sub: argparse._SubParsersAction[Any]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("up", help="start the local stack (idempotent)", formatter_class=fmt,
                       description="Start Apache Kafka (KRaft), create the catalogue's topics, then "
                       "the processor and the sink, each in the background,\nand return once the processor "
                       "has answered a probe action. Running it again while the\nstack is up changes "
                       "nothing. The first run resolves Kafka's jars from Maven Central\nand shows progress.\n\n"
                       "--processors N runs N processor workers in one consumer group (they share the\n"
                       "partitions; a dead worker's partitions move to the others after the session\n"
                       "timeout). --brokers 3 runs a three-node Kafka cluster on this machine:\n"
                       "replication factor 3, min.insync.replicas 2, so one node may die. A home is\n"
                       "formatted once for its cluster size; later runs use that size.",
                       epilog="examples:\n  lockgate up\n  lockgate up --processors 2 --brokers 3\n"
                       "  LOCKGATE_HOME=/tmp/lg LOCKGATE_KAFKA_PORT=29092 lockgate up\n\n"
                       "exit status: 0 started or already running; 2 a component could not start\n"
                       "(the message names it and its log)")
    p.add_argument("--processors", type=_between(1, 16), metavar="N", help="processor workers to run (default 1, "
                   "LOCKGATE_PROCESSORS)")
    p.add_argument("--brokers", type=_between(1, 5), metavar="N", help="Kafka nodes (default: as formatted under "
                   "LOCKGATE_HOME, else 1; LOCKGATE_BROKERS)")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(handler=cmd_up)
    p = sub.add_parser("down", help="stop everything `up` started", formatter_class=fmt,
                       description="Stop the sink, every processor worker and every Kafka node (SIGTERM,\n"
                       "then wait). Topics, ledger and keys stay under $LOCKGATE_HOME.")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(handler=cmd_down)
    p = sub.add_parser("status", help="what runs, where logs are", formatter_class=fmt,
                       description="Show each component's state and pid (every Kafka node, every processor\n"
                       "worker), its address, its log file,\n"
                       "the bootstrap address, the state directory, how many outcomes wait in the\n"
                       "local spool for Kafka (`spool` in --json: dir, outcomes, quarantined), and for\n"
                       "the processor and the sink: consuming, idle, or UP BUT NOT CONSUMING (lag,\n"
                       "no commit, and why).")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_status)
    p = sub.add_parser("smoke", help="produce and consume Avro records through the broker",
                       formatter_class=fmt,
                       description="Round-trip COUNT encoded records through a scratch topic on the\n"
                       "running broker and check each decodes intact. Exit 0 when all came back.")
    p.add_argument("--count", type=int, default=100, help="records to send (default 100)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_smoke)
    register_demo(sub)


def cmd_demo(args: argparse.Namespace) -> int:
    from lockgate.cli.demo import run_demo

    # With --json, stdout carries only the JSON summary; the live verdicts go to stderr.
    report = run_demo(args.count, out=(lambda line: print(line, file=sys.stderr)) if args.json else print)
    if args.json:
        emit_json({"allowed": report.allowed, "blocked": report.blocked, "reviewed": report.reviewed,
                   "dashboard": report.dashboard_url, "review_inbox": report.inbox_url})
    elif report.dashboard_url:
        print(f"dashboard: {report.dashboard_url}")
        if report.inbox_url:
            print(f"review inbox (votes as dana): {report.inbox_url}")
        print("query it:  lockgate audit query --decision block --json   |   stop: lockgate down")
    return EXIT_OK if report.allowed and report.blocked and report.reviewed else EXIT_ERROR


def register_demo(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "demo", help="run the whole pipeline with simulated services",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Bring the stack up, apply the example policy, register three simulated\n"
        "services and stream a mix of actions through real Guards: some commit with\n"
        "before/after changes, some are blocked, some match shadow rules. Then a\n"
        "production DELETE waits for review, reviewer dana (registered on first run)\n"
        "approves it with her own key, and it runs. Prints each verdict live, the\n"
        "dashboard address and dana's review inbox. The stack keeps running afterwards.",
        epilog="exit status: 0 when actions were allowed, blocked and one ran after a review; 2 otherwise")
    p.add_argument("--count", type=int, default=45, help="actions to send (default 45)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead")
    p.set_defaults(handler=cmd_demo)
