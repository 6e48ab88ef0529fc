"""Run ``lockgate`` and the chDB helper modules in subprocesses, on one scratch home.

chDB allows one data directory per process, so tests that build, tamper with and verify
an embedded store do each step in its own process; these are the shared ways to start them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a command on ``home``'s store; no sink API is reachable unless
    ``LOCKGATE_API_PORT`` names one."""
    out = dict(os.environ)
    out.update({"LOCKGATE_HOME": str(home), "LOCKGATE_CLICKHOUSE_DSN": f"chdb://{home / 'clickhouse'}",
                "LOCKGATE_API_PORT": "1", "LOCKGATE_SINK_HTTP_PORT": "1"})
    out.update(extra)
    return out


def run(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env(home, **extra), capture_output=True,
                          text=True, timeout=180, check=False)


def helper(module: str, home: Path, *args: str, **extra: str) -> Any:
    """Run ``python -m module args``; it must succeed and print JSON."""
    res = run(home, "-m", module, *args, **extra)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def cli(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return run(home, "-m", "lockgate.cli", *args, **extra)


def cli_json(home: Path, expect: int, *args: str, **extra: str) -> Any:
    """``lockgate ARGS --json``, which must exit with ``expect``; its JSON output."""
    res = cli(home, *args, "--json", **extra)
    assert res.returncode == expect, (res.stdout, res.stderr)
    return json.loads(res.stdout)
