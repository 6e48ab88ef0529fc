"""The ``lockgate`` command: the user's door to every component.

Commands only wire components together; the logic lives in the rooms. Each command module
registers itself through :func:`lockgate.cli.commands.register`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lockgate.cli import commands
from lockgate.cli.output import EXIT_OK, fail
from lockgate.kernel.errors import LockgateError

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
Lockgate puts an action-level guardrail in front of every change a service makes.
Services publish a proposed action; the policy processor answers with a signed
allow/block verdict; the change runs only on a valid allow; every proposal, verdict,
outcome and policy change lands in a hash-chained audit ledger in ClickHouse.
"""

EPILOG = """\
local stack:
  lockgate up                     start Kafka, the processor and the sink (idempotent)
  lockgate status [--json]        what runs, logs, bootstrap address, state directory
  lockgate down                   stop everything `up` started; data is kept

exit status:
  0  success (for `submit`: allowed; for `verify`: no findings)
  1  a negative answer: the action was blocked, a check found problems
  2  an error: bad usage, bad input, a component unavailable

environment:
  LOCKGATE_HOME            state directory (default ~/.lockgate)
  LOCKGATE_KAFKA_PORT      broker port of the local stack (default 9092)
  LOCKGATE_TOPIC_PREFIX    prefix of every topic (default "lockgate.")
  see README.md for the full table.

files:
  $LOCKGATE_HOME/logs/     logs of every stack process
  $LOCKGATE_HOME/keys/     processor and service keys (0600)

Run `lockgate COMMAND --help` for a command's options and examples.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockgate",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.register_all(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except LockgateError as exc:
        return fail(str(exc), json_mode=getattr(args, "json", False), kind=type(exc).__name__)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return code if code is not None else EXIT_OK


