"""What every command needs to find the stack: bootstrap servers, topics, home."""

from __future__ import annotations

import os
from pathlib import Path

from deploy.settings import StackSettings
from schemas.topics import Topics

__all__ = ["bootstrap", "home", "topics"]


def _stack() -> StackSettings:
    return StackSettings()


def bootstrap() -> str:
    """``LOCKGATE_BOOTSTRAP_SERVERS`` (a production cluster) or the local stack's broker."""
    return os.environ.get("LOCKGATE_BOOTSTRAP_SERVERS", "").strip() or _stack().bootstrap


def topics() -> Topics:
    return _stack().topics


def home() -> Path:
    return _stack().home
