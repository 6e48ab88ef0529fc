"""The README's main command, end to end: `lockgate demo`, then status, query, verify, down.

Runs the real CLI in a scratch LOCKGATE_HOME on free ports against the session's broker
binary (its own broker instance: `demo` brings up the whole stack itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration


def test_demo_then_status_query_verify_down(tmp_path: Path) -> None:
    env = {**os.environ, "LOCKGATE_HOME": str(tmp_path / "home"),
           "LOCKGATE_KAFKA_PORT": str(free_port()), "LOCKGATE_CONTROLLER_PORT": str(free_port()),
           "LOCKGATE_API_PORT": str(free_port()), "LOCKGATE_PROCESSOR_PORT": str(free_port()),
           "LOCKGATE_TOPIC_PREFIX": "demo."}
    env.pop("LOCKGATE_BOOTSTRAP_SERVERS", None)

    def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lockgate.cli", *args], capture_output=True, text=True,
                              env=env, timeout=timeout, check=False)

    try:
        demo = cli("demo", "--count", "9", "--json")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        report = json.loads(demo.stdout)
        assert report["allowed"] >= 4 and report["blocked"] >= 4
        assert report["dashboard"].startswith(f"http://127.0.0.1:{env['LOCKGATE_API_PORT']}/?token=lg_")
        assert report["reviewed"] == 1  # a production DELETE waited, dana approved it, it ran
        assert report["review_inbox"].startswith(f"http://127.0.0.1:{env['LOCKGATE_API_PORT']}/reviews?token=lg_")
        assert "WAIT " in demo.stderr and "VOTE   dana approves" in demo.stderr

        status = json.loads(cli("status", "--json").stdout)
        running = {c["name"]: c["running"] for c in status["components"]}
        assert {n for n, up in running.items() if up} == {"kafka", "processor", "sink"}
        assert running.get("witness", False) is False  # optional: LOCKGATE_START_WITNESS

        def blocked_rows() -> list[dict[str, object]]:
            res = cli("audit", "query", "--decision", "block", "--json")
            assert res.returncode == 0, res.stderr
            rows: list[dict[str, object]] = json.loads(res.stdout)["actions"]
            return rows

        from tests.integration.conftest import get_json, wait_for

        rows = wait_for(lambda: len(blocked_rows()) >= 4 and blocked_rows(), 60, "blocked actions queryable")
        assert {"prod-delete-update-without-where", "drop-or-truncate"} <= {
            str(r) for row in rows for r in row["rule_ids"]}

        inbox_token = report["review_inbox"].split("token=", 1)[1]
        # The sink starts following the reviews topic at the first inbox request, so wait for it.
        def inbox_decided() -> Any:
            got = get_json(f"http://127.0.0.1:{env['LOCKGATE_API_PORT']}/api/reviews", inbox_token)
            return got if got and got["decided"] else None

        inbox = wait_for(inbox_decided, 60, "the demo's review in the sink's inbox")
        assert inbox["token"]["reviewer"] == "dana"
        assert [(r["status"], r["approved_by"]) for r in inbox["decided"]] == [("approved", ["dana"])]

        verify = cli("verify", "--json")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert json.loads(verify.stdout)["ok"] is True
    finally:
        down = cli("down", "--json")
    assert down.returncode == 0
    assert set(json.loads(down.stdout)["stopped"]) == {"sink", "processor", "kafka"}
