"""``lockgate spool``: outcomes kept on local disk until Kafka confirms them.

A Guard spools an outcome when Kafka does not confirm it within the outcome timeout (see
:mod:`producers.outcome_recorder`); the spool lives in :mod:`producers.spool`. These
commands list it and redeliver it; they hold no logic of their own.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lockgate.cli import context
from lockgate.cli.output import EXIT_ERROR, EXIT_NEGATIVE, EXIT_OK, emit_json
from lockgate.kernel.errors import ConfigError

__all__ = ["register", "spool_dir", "spool_summary"]


def spool_dir(override: Path | None = None) -> Path:
    """``--dir``, else the directory a Guard on this machine uses (``LOCKGATE_SPOOL_DIR`` or
    ``$LOCKGATE_HOME/spool/outcomes``)."""
    if override is not None:
        return override
    from pydantic import ValidationError

    from producers.settings import GuardSettings

    try:
        return GuardSettings(home=context.home()).resolved_spool_dir()
    except ValidationError as exc:
        raise ConfigError(f"a LOCKGATE_* setting is invalid: {exc}") from None


def spool_summary(directory: Path) -> dict[str, Any]:
    """Counts for ``lockgate status``: entries waiting, and files set aside as corrupt."""
    from producers.spool import OutcomeSpool

    spool = OutcomeSpool(directory)
    return {"dir": str(directory), "outcomes": spool.count(), "quarantined": len(spool.quarantined())}


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ms else ""


@contextlib.contextmanager
def _readable(directory: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise ConfigError(f"cannot use the outcome spool {directory}: {exc}") from exc


def cmd_list(args: argparse.Namespace) -> int:
    with _readable(spool_dir(args.dir)):
        return _list(args)


def cmd_flush(args: argparse.Namespace) -> int:
    with _readable(spool_dir(args.dir)):
        return _flush(args)


def _list(args: argparse.Namespace) -> int:
    from producers.spool import OutcomeSpool

    spool = OutcomeSpool(spool_dir(args.dir))
    rows = [{"outcome_id": s.entry.outcome_id, "action_id": s.entry.action_id, "topic": s.entry.topic,
             "spooled_at": _when(s.entry.spooled_at_ms), "recorded_at": _when(s.entry.timestamp_ms),
             "reason": s.entry.reason, "held": s.held, "bytes": s.size, "path": str(s.path)}
            for s in spool.status()]
    unreadable = [str(p) for p in spool.unreadable()]
    quarantined = [str(p) for p in spool.quarantined()]
    if args.json:
        emit_json({"spool_dir": str(spool.directory), "outcomes": rows, "unreadable": unreadable,
                   "quarantined": quarantined})
    else:
        print(f"spool {spool.directory}: {len(rows)} outcome(s) waiting for Kafka"
              + (f", {len(unreadable)} unreadable" if unreadable else "")
              + (f", {len(quarantined)} quarantined" if quarantined else ""))
        for r in rows:
            held = "  (in flight in a running Guard)" if r["held"] else ""
            print(f"  {r['spooled_at']}  {r['outcome_id']}  action {r['action_id']}  -> {r['topic']}{held}")
            print(f"      {r['reason']}")
        for p in unreadable:
            print(f"  unreadable: {p} (quarantined by the next flush)")
        for p in quarantined:
            print(f"  quarantined: {p}")
    return EXIT_NEGATIVE if rows or unreadable else EXIT_OK


def _flush(args: argparse.Namespace) -> int:
    from producers.outcome_recorder import flush_spool
    from producers.spool import OutcomeSpool

    spool = OutcomeSpool(spool_dir(args.dir))
    bootstrap = context.bootstrap()
    result = flush_spool(bootstrap, spool, args.timeout) if spool.count() else None
    remaining = list(spool.status())
    out: dict[str, Any] = {
        "spool_dir": str(spool.directory),
        "bootstrap": bootstrap,
        "delivered": result.delivered if result else [],
        "already_delivered": result.already_delivered if result else [],
        "failed": result.failed if result else {},
        "problems": result.problems if result else [],
        "remaining": [{"outcome_id": s.entry.outcome_id, "held": s.held} for s in remaining],
        "quarantined": [str(p) for p in spool.quarantined()],
    }
    code = EXIT_OK
    if result is not None and result.unreachable:
        code = EXIT_ERROR
    elif remaining or spool.count():
        code = EXIT_NEGATIVE
    if args.json:
        emit_json(out)
    else:
        print(f"delivered {len(out['delivered'])}, already on Kafka {len(out['already_delivered'])}, "
              f"remaining {len(remaining)} in {spool.directory}")
        held = sum(1 for s in remaining if s.held)
        if held:
            print(f"  {held} held by a running Guard: still in flight there; it removes them once Kafka confirms")
        for oid, err in out["failed"].items():
            print(f"  not delivered {oid}: {err}")
    for problem in out["problems"]:
        print(f"lockgate: {problem}", file=sys.stderr)
    if code == EXIT_ERROR:
        print(f"lockgate: Kafka at {bootstrap} could not be reached; the outcomes stay spooled. Is the "
              "stack up (`lockgate status`), or LOCKGATE_BOOTSTRAP_SERVERS right?", file=sys.stderr)
    return code


FILES = """\
files:
  $LOCKGATE_SPOOL_DIR        the spool (default $LOCKGATE_HOME/spool/outcomes, 0700):
                             one <outcome_id>.outcome file (0600, JSON) per outcome
  <spool>/quarantine/        files that were not valid entries, set aside, never deleted"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    sp = sub.add_parser(
        "spool", help="outcomes waiting on local disk for Kafka: list, flush", formatter_class=fmt,
        description="Once a guarded block has run, its outcome is never lost: a Guard waits up to\n"
        "LOCKGATE_OUTCOME_TIMEOUT_S for Kafka to confirm it and otherwise writes it, fsync'd, to\n"
        "the outcome spool, one 0600 file per outcome. Running Guards redeliver their topic's\n"
        "entries in the background, on close() and at start; these commands show what is\n"
        "waiting and redeliver it from the command line.",
        epilog=FILES)
    ssub = sp.add_subparsers(dest="spool_command", metavar="SUBCOMMAND", required=True)

    p = ssub.add_parser(
        "list", help="outcomes in the spool, and why they are there", formatter_class=fmt,
        description="List every spooled outcome: its id, action, target topic, when and why it was\n"
        "spooled, and whether a running Guard holds it (still in flight there). Also names\n"
        "unreadable and quarantined files. Reads only; changes nothing.",
        epilog="exit status:\n  0  the spool is empty\n  1  outcomes are waiting (or a file is unreadable)\n"
        "  2  error (bad usage, unreadable directory)\n\n"
        "examples:\n  lockgate spool list\n  lockgate spool list --json | jq '.outcomes | length'\n\n" + FILES)
    p.add_argument("--dir", type=Path, help="spool directory (default: the Guards' own; see files)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_list)

    p = ssub.add_parser(
        "flush", help="redeliver spooled outcomes to Kafka now", formatter_class=fmt,
        description="Send every spooled outcome that no running Guard holds to its topic, exactly\n"
        "the bytes that were spooled, and remove each one only after Kafka confirms it in its\n"
        "delivery callback. Before sending, the topic is read back from the outcome's time:\n"
        "an outcome already there is removed without being sent again. Outcomes held by a\n"
        "running Guard are left to it. Corrupt files are moved to quarantine/.",
        epilog="exit status:\n  0  the spool is empty afterwards\n"
        "  1  outcomes remain (held by a running Guard, refused by Kafka, or not confirmed in time)\n"
        "  2  error: Kafka could not be reached, bad usage\n\n"
        "environment:\n  LOCKGATE_BOOTSTRAP_SERVERS   where to deliver (default: the local stack's broker)\n"
        "  LOCKGATE_SPOOL_DIR, LOCKGATE_HOME   which spool\n\n"
        "examples:\n  lockgate spool flush\n"
        "  LOCKGATE_BOOTSTRAP_SERVERS=kafka-1:9092 lockgate spool flush --timeout 60 --json\n\n" + FILES)
    p.add_argument("--dir", type=Path, help="spool directory (default: the Guards' own; see files)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for Kafka's confirmations (default 30)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_flush)
