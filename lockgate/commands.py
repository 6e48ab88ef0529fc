"""Registry of the CLI's subcommands; each lives in a ``lockgate.cmd_*`` module."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

__all__ = ["COMMAND_MODULES", "register_all"]

COMMAND_MODULES = (
    "lockgate.cmd_stack",
    "lockgate.cmd_keys",
    "lockgate.cmd_policy",
    "lockgate.cmd_submit",
    "lockgate.cmd_audit",
    "lockgate.cmd_verify",
    "lockgate.cmd_spool",
)


def register_all(sub: argparse._SubParsersAction[Any]) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
