"""`lockgate keys`: keys are created 0600, exposed keys are refused with the fix named."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCKGATE_HOME": str(home), "LOCKGATE_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=60,
                          check=False)


def test_keys_init_creates_a_private_0600_key_once(tmp_path: Path) -> None:
    first = run(tmp_path, "-m", "lockgate.cli", "keys", "init", "--json")
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    key = Path(out["private_key"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert out["created"] is True
    again = json.loads(run(tmp_path, "-m", "lockgate.cli", "keys", "init", "--json").stdout)
    assert again["created"] is False and again["key_id"] == out["key_id"]


def test_processor_refuses_a_key_readable_by_others(tmp_path: Path) -> None:
    run(tmp_path, "-m", "lockgate.cli", "keys", "init")
    key = tmp_path / "keys" / "processor.pem"
    key.chmod(0o644)
    res = run(tmp_path, "-m", "processors.worker")
    assert res.returncode != 0
    assert "chmod 600" in res.stderr and str(key) in res.stderr


def test_add_service_prints_what_the_service_needs(tmp_path: Path) -> None:
    res = run(tmp_path, "-m", "lockgate.cli", "keys", "add-service", "billing")
    assert res.returncode == 0, res.stderr
    for needed in ("LOCKGATE_SERVICE=billing", "LOCKGATE_SERVICE_KEY=", "LOCKGATE_VERDICT_PUBLIC_KEY="):
        assert needed in res.stdout
    service_key = tmp_path / "keys" / "services" / "billing.pem"
    assert stat.S_IMODE(service_key.stat().st_mode) == 0o600
    dup = run(tmp_path, "-m", "lockgate.cli", "keys", "add-service", "billing")
    assert dup.returncode == 2 and "already registered" in dup.stderr
