"""Exit codes and the two output shapes of every command: human text and ``--json``."""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["EXIT_ERROR", "EXIT_NEGATIVE", "EXIT_OK", "emit_json", "fail", "progress"]

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_ERROR = 2


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def progress(message: str) -> None:
    """One progress line on stderr (stdout stays clean for ``--json`` and pipes)."""
    print(f"lockgate: {message}", file=sys.stderr, flush=True)


def fail(message: str, *, json_mode: bool = False, kind: str = "error") -> int:
    """Report an error on stderr (and as JSON on stdout with ``--json``); return exit 2."""
    if json_mode:
        emit_json({"error": kind, "message": message})
    print(f"lockgate: {message}", file=sys.stderr)
    return EXIT_ERROR
