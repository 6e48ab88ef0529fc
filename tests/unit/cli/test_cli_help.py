"""Every command documents itself: description, and for the main page exit status and env."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lockgate.cli.main import build_parser


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lockgate.cli", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_main_help_reads_like_a_man_page() -> None:
    res = run("--help")
    assert res.returncode == 0
    for section in ("exit status:", "environment:", "files:", "LOCKGATE_HOME", "lockgate up"):
        assert section in res.stdout


COMMANDS = [["up"], ["down"], ["status"], ["smoke"], ["demo"], ["submit"], ["keys", "init"],
            ["keys", "add-service"], ["policy", "validate"], ["policy", "apply"], ["policy", "test"],
            ["policy", "list"], ["audit", "query"], ["audit", "show"], ["tokens", "create"], ["verify"], ["prove"],
            ["verify-proof"], ["checkpoints", "export"], ["history"], ["policy", "replay"], ["spool", "list"],
            ["spool", "flush"], ["proxy", "postgres"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit) as info:
        parser.parse_args([*command, "--help"])
    assert info.value.code == 0


def test_usage_error_exits_2() -> None:
    res = run("submit", "--actor", "a")
    assert res.returncode == 2
    assert "required" in res.stderr


def test_policy_validate_reports_file_and_line(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "bad.yaml"
    bad.write_text("name: p\ndefault: allow\nrules:\n  - id: r1\n    when: 'action.type =='\n    effect: block\n")
    res = run("policy", "validate", str(bad))
    assert res.returncode == 1
    assert f"{bad}:5:" in res.stdout


def test_policy_test_runs_offline_on_the_example() -> None:
    res = run("policy", "test", "processors/policies/example.yaml", "processors/policies/example_cases.yaml")
    assert res.returncode == 0, res.stdout
    assert "0 failed" in res.stdout


def test_spool_help_documents_exit_status_environment_and_files() -> None:
    res = run("spool", "flush", "--help")
    assert res.returncode == 0
    for section in ("exit status:", "environment:", "files:", "LOCKGATE_SPOOL_DIR", "examples:"):
        assert section in res.stdout


def test_spool_list_of_an_empty_spool_exits_0_and_of_a_waiting_outcome_exits_1(tmp_path: object) -> None:
    import json
    from pathlib import Path

    from producers.spool import OutcomeSpool, SpoolEntry

    spool = OutcomeSpool(Path(str(tmp_path)) / "spool")
    res = run("spool", "list", "--dir", str(spool.directory), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["outcomes"] == []
    spool.ensure()
    spool.write(SpoolEntry("o-1", "a-1", "t.outcomes", b"a-1", b"bytes", 1, 2, "not confirmed"))
    res = run("spool", "list", "--dir", str(spool.directory))
    assert res.returncode == 1
    assert "o-1" in res.stdout and "not confirmed" in res.stdout


def test_proxy_reports_a_bad_config_with_exit_2(tmp_path: object) -> None:
    from pathlib import Path

    cfg = Path(str(tmp_path)) / "proxy.yaml"
    cfg.write_text("upstream: nowhere\nlisten: 127.0.0.1:6432\n")
    res = run("proxy", "postgres", "--config", str(cfg))
    assert res.returncode == 2
    assert "upstream" in res.stderr and "HOST:PORT" in res.stderr


def test_verify_help_names_every_view_it_checks() -> None:
    from lockgate.cli.verify import _VERIFY_DESC
    from sinks.rows import EXTRACTED_COLUMNS
    from trust.verify import FindingKind

    text = " ".join(_VERIFY_DESC.split())
    for column in EXTRACTED_COLUMNS:
        assert column in text, column
    for kind in FindingKind:
        assert kind.value in text, kind
    assert "action_summary" in text and "--against-topics" in text
