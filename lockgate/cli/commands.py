"""Registry of the CLI's subcommands; each lives in a module of :mod:`lockgate.cli`."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

__all__ = ["COMMAND_MODULES", "register_all"]

COMMAND_MODULES = (
    "lockgate.cli.stack",
    "lockgate.cli.keys",
    "lockgate.cli.policy",
    "lockgate.cli.submit",
    "lockgate.cli.reviews",
    "lockgate.cli.audit",
    "lockgate.cli.verify",
    "lockgate.cli.spool",
    "lockgate.cli.proxy",
    "lockgate.cli.witness",
)


def register_all(sub: argparse._SubParsersAction[Any]) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
