"""What every command needs to find the stack: bootstrap servers, topics, home."""

from __future__ import annotations

import os
from pathlib import Path

from deploy.settings import StackSettings
from schemas.topics import Topics

__all__ = ["bootstrap", "home", "log_name", "topics"]


def _stack() -> StackSettings:
    return StackSettings()


def bootstrap() -> str:
    """``LOCKGATE_BOOTSTRAP_SERVERS`` (a production cluster) or the local stack's broker."""
    return os.environ.get("LOCKGATE_BOOTSTRAP_SERVERS", "").strip() or _stack().bootstrap


def topics() -> Topics:
    return _stack().topics


def home() -> Path:
    return _stack().home


def log_name() -> str:
    """``LOCKGATE_LOG_NAME``: the log whole-log checkpoints name in their origin (``<name>/p<N>``)."""
    from trust.tlog import DEFAULT_LOG_NAME

    return os.environ.get("LOCKGATE_LOG_NAME", "").strip() or DEFAULT_LOG_NAME
