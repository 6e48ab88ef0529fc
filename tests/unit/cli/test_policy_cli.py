"""`lockgate policy`: an oversized or broken policy ends with a message and an exit code, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[3] / "processors" / "policies" / "example.yaml"


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No broker at this address: apply must give up before it would need one.
    env = {**os.environ, "LOCKGATE_HOME": str(home), "LOCKGATE_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    return subprocess.run([sys.executable, "-m", "lockgate.cli", "policy", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def oversized(tmp_path: Path) -> Path:
    path = tmp_path / "big.yaml"
    path.write_text("name: big\ndefault: allow\nrules: []\n" + "# padding padding padding\n" * 45_000)
    return path


def test_apply_of_an_oversized_policy_exits_2_with_the_limit(tmp_path: Path) -> None:
    res = run(tmp_path, "apply", str(oversized(tmp_path)))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "a policy may be at most 262,144 bytes (256 KiB)" in res.stderr
    assert "Nothing was parsed or published" in res.stderr and "Make it smaller" in res.stderr


def test_validate_of_an_oversized_policy_exits_1_with_file_and_line(tmp_path: Path) -> None:
    path = oversized(tmp_path)
    res = run(tmp_path, "validate", str(path), "--json")
    assert res.returncode == 1
    [problem] = json.loads(res.stdout)["problems"]
    assert (problem["file"], problem["line"]) == (str(path), 1)


def test_validate_reports_unknown_fields_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ndefault: allow\nrules:\n  - id: r\n    effect: block\n    when: \"'a' in actor.rolez\"\n")
    res = run(tmp_path, "validate", str(path))
    assert res.returncode == 1
    expected = "rule 'r': 'when' is not a valid condition: actor has no field 'rolez'; did you mean 'roles'?"
    assert f"{path}:6: {expected}" in res.stdout


def test_validate_shows_the_dearest_condition(tmp_path: Path) -> None:
    res = run(tmp_path, "validate", str(EXAMPLE), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out["rule_costs"]) >= {"prod-deploy-role", "bulk-export"}
    assert max(out["rule_costs"].values()) <= out["rule_cost_budget"]
