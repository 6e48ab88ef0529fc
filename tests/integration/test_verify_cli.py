"""`lockgate verify` / `prove` / `verify-proof` against a real embedded ClickHouse (chDB).

chDB allows one data directory per process, so setup, tampering and the CLI each run in
their own subprocess (tests/integration/verify_cli_helper.py); no Kafka is needed.
Tampering is real SQL (ALTER ... UPDATE/DELETE with mutations_sync, INSERT ... SELECT).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_runner import cli, helper, run

pytestmark = pytest.mark.integration



def _helper(home: Path, *args: str) -> Any:
    return helper("tests.integration.verify_cli_helper", home, *args)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(home, *args)


@pytest.fixture
def ledger(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A fresh home with a clean, signed ledger (a chDB directory cannot be copied)."""
    home = tmp_path / "home"
    home.mkdir()
    return home, _helper(home, "setup", str(home))


def _eid(info: dict[str, Any], part: int, seq: int) -> str:
    return str(info["events"][str(part)][seq]["event_id"])


def _verify(home: Path, expect: int) -> dict[str, Any]:
    res = _cli(home, "verify", "--json")
    assert res.returncode == expect, (res.stdout, res.stderr)
    report: dict[str, Any] = json.loads(res.stdout)
    return report


def _has(report: dict[str, Any], kind: str, part: int, seq: int | None, eid: str | None) -> None:
    got = [(f["kind"], f["partition"], f["sequence"], f["event_id"]) for f in report["findings"]]
    assert (kind, part, seq, eid) in got, got


def test_clean_ledger_verifies(ledger: tuple[Path, dict[str, Any]]) -> None:
    home, _ = ledger
    report = _verify(home, 0)
    assert report["ok"] and report["events"] == 15 and report["checkpoints"] == 3
    assert report["partitions"] == [0, 1]
    assert report["pending_verdicts"] == {"count": 0, "grace_s": 30.0, "action_ids": [], "listed": 0}


def test_an_outcome_without_its_verdict_is_pending_only_within_the_verdict_grace(
        ledger: tuple[Path, dict[str, Any]]) -> None:
    # The ledger is from 2023: its outcomes are far older than the default grace of 30s, so a
    # missing verdict is commit_without_allow; a grace reaching back to 2023 makes it pending.
    home, info = ledger
    aid = info["actions"][2]
    _helper(home, "sql", str(home), "ALTER TABLE {db}.audit_events DELETE "
            f"WHERE event_id = '{_eid(info, 0, 7)}' SETTINGS mutations_sync = 1")  # its verdict

    def enforcement(*extra: str) -> tuple[set[tuple[str, Any]], dict[str, Any]]:
        res = _cli(home, "verify", "--json", *extra)
        assert res.returncode == 1, (res.stdout, res.stderr)  # the deletion is a finding anyway
        report = json.loads(res.stdout)
        return {(f["kind"], f["action_id"]) for f in report["findings"]}, report["pending_verdicts"]

    found, pending = enforcement()
    assert ("commit_without_allow", aid) in found and pending["count"] == 0
    found, pending = enforcement("--verdict-grace", "0")
    assert ("commit_without_allow", aid) in found and pending["count"] == 0
    found, pending = enforcement("--verdict-grace", "999999w")
    assert ("commit_without_allow", aid) not in found and ("deleted_record", None) in found
    assert pending == {"count": 1, "grace_s": 999999 * 7 * 86400.0, "action_ids": [aid], "listed": 1}
    res = _cli(home, "verify", "--verdict-grace", "999999w")
    assert "pending: 1 committed outcome(s) whose verdict has not reached the ledger yet" in res.stdout
    assert aid in res.stdout and "a later run will judge them" in res.stdout
    bad = _cli(home, "verify", "--verdict-grace", "soon")
    assert bad.returncode == 2 and "--verdict-grace" in bad.stderr


def test_modified_field(ledger: tuple[Path, dict[str, Any]]) -> None:
    home, info = ledger
    eid = _eid(info, 0, 2)
    _helper(home, "sql", str(home), "ALTER TABLE {db}.audit_events UPDATE detail = 'edited' "
            f"WHERE event_id = '{eid}' SETTINGS mutations_sync = 1")
    _has(_verify(home, 1), "modified_record", 0, 2, eid)


def test_deleted_row(ledger: tuple[Path, dict[str, Any]]) -> None:
    home, info = ledger
    _helper(home, "sql", str(home), "ALTER TABLE {db}.audit_events DELETE "
            f"WHERE event_id = '{_eid(info, 0, 4)}' SETTINGS mutations_sync = 1")
    _has(_verify(home, 1), "deleted_record", 0, 4, None)


def test_inserted_row(ledger: tuple[Path, dict[str, Any]]) -> None:
    home, _info = ledger
    forged = "00000000-0000-4000-8000-00000000f0f0"
    res = _helper(home, "sql", str(home),
                  "INSERT INTO {db}.audit_events SELECT * REPLACE ("
                  f"toUUID('{forged}') AS event_id, 'fabricated' AS detail) FROM {{db}}.audit_events "
                  "WHERE ledger_partition = 0 AND sequence = 2",
                  "SELECT count() FROM {db}.audit_events")
    assert res["results"][-1] == "16", res
    report = _verify(home, 1)
    kinds = {(f["kind"], f["partition"], f["sequence"], f["event_id"]) for f in report["findings"]}
    assert ("inserted_record", 0, 2, forged) in kinds, kinds


def test_swapped_sequences(ledger: tuple[Path, dict[str, Any]]) -> None:
    home, info = ledger
    _helper(home, "sql", str(home), "ALTER TABLE {db}.audit_events UPDATE sequence = "
            "if(sequence = 3, 4, 3) WHERE ledger_partition = 0 AND sequence IN (3, 4) "
            "SETTINGS mutations_sync = 1")
    report = _verify(home, 1)
    _has(report, "reordered_records", 0, 3, _eid(info, 0, 4))
    _has(report, "reordered_records", 0, 4, _eid(info, 0, 3))


def test_truncated_tail(ledger: tuple[Path, dict[str, Any]]) -> None:
    home, info = ledger
    _helper(home, "sql", str(home), "ALTER TABLE {db}.audit_events DELETE "
            "WHERE ledger_partition = 0 AND sequence >= 7 SETTINGS mutations_sync = 1")
    report = _verify(home, 1)
    chain = [f for f in report["findings"] if f["table"] != "action_summary"]
    assert {f["kind"] for f in chain} == {"truncated_tail"}, chain
    assert all(f["partition"] == 0 for f in report["findings"])
    # The summary still shows the cut records' verdicts and outcomes: readers see what the
    # stored ledger no longer holds, and verify says so per action.
    cut = {f["action_id"] for f in report["findings"] if f["table"] == "action_summary"}
    assert cut == {info["actions"][2]}, report["findings"]  # its verdict (7) and outcome (8)


def test_edited_checkpoint(ledger: tuple[Path, dict[str, Any]]) -> None:
    home, _ = ledger
    _helper(home, "sql", str(home), "ALTER TABLE {db}.checkpoints UPDATE merkle_root = "
            "unhex(repeat('00', 32)) WHERE checkpoint_id = 'p0:0-5' SETTINGS mutations_sync = 1")
    report = _verify(home, 1)
    _has(report, "forged_checkpoint", 0, 0, None)
    # A checkpoint that no longer verifies covers nothing: its events cannot be proven now.
    assert [(f["kind"], f["checkpoint_id"]) for f in report["findings"]] == [
        ("forged_checkpoint", "p0:0-5"), ("uncovered_event", None)]
    assert "sequences 0..5 (6 events)" in report["findings"][1]["message"]


def test_an_added_edited_copy_of_a_checkpoint_is_forged_and_the_genuine_one_still_covers(
        ledger: tuple[Path, dict[str, Any]]) -> None:
    # An attacker with write access to the store adds a copy of checkpoint p0:0-5 that keeps its
    # checkpoint_id and signature but says last_sequence 2: the table's ORDER BY (and verify's
    # read) puts it before the genuine row. Exactly that row is forged; the genuine one still
    # covers 0..5, so nothing is uncovered.
    home, _ = ledger
    res = _helper(home, "sql", str(home),
                  "INSERT INTO {db}.checkpoints SELECT * REPLACE (toInt64(2) AS last_sequence) "
                  "FROM {db}.checkpoints WHERE checkpoint_id = 'p0:0-5'",
                  "SELECT groupArray(last_sequence) FROM (SELECT last_sequence FROM {db}.checkpoints "
                  "WHERE checkpoint_id = 'p0:0-5' ORDER BY ledger_partition, last_sequence, created_at)")
    assert res["results"][-1] == "[2,5]", res
    report = _verify(home, 1)
    assert report["checkpoints"] == 4
    assert [(f["kind"], f["partition"], f["sequence"], f["checkpoint_id"], f["column"], f["stored"], f["ledger"])
            for f in report["findings"]] == [
        ("forged_checkpoint", 0, 0, "p0:0-5", "last_sequence", {"last_sequence": 2}, {"last_sequence": 5})]
    assert "same checkpoint_id and signature" in report["findings"][0]["message"]


def test_witness_copy_reports_the_edited_checkpoint(ledger: tuple[Path, dict[str, Any]],
                                                    tmp_path: Path) -> None:
    home, _ = ledger
    witness = tmp_path / "witness.jsonl"
    res = _cli(home, "checkpoints", "export", str(witness))
    assert res.returncode == 0, res.stderr
    assert len(witness.read_text().splitlines()) == 3
    assert _cli(home, "verify", "--checkpoints", str(witness)).returncode == 0
    _helper(home, "sql", str(home), "ALTER TABLE {db}.checkpoints UPDATE merkle_root = "
            "unhex(repeat('00', 32)) WHERE checkpoint_id = 'p1:0-5' SETTINGS mutations_sync = 1")
    res = _cli(home, "verify", "--json", "--checkpoints", str(witness))
    assert res.returncode == 1, res.stderr
    kinds = {(f["kind"], f["checkpoint_id"]) for f in json.loads(res.stdout)["findings"]}
    assert ("witness_checkpoint_differs", "p1:0-5") in kinds
    assert ("forged_checkpoint", "p1:0-5") in kinds


def test_prove_and_verify_proof(ledger: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    home, info = ledger
    out = tmp_path / "proof.json"
    res = _cli(home, "prove", info["actions"][1], "--out", str(out))
    assert res.returncode == 0, res.stderr
    bundle = json.loads(out.read_text())
    assert len(bundle["proofs"]) == 3 and not bundle["unproven"]
    assert _cli(home, "verify-proof", str(out)).returncode == 0
    # One byte of the proven record changed: the proof no longer verifies.
    ev = bundle["proofs"][0]["event"]
    ev["tenant"] = "acmf"
    out.write_text(json.dumps(bundle))
    res = _cli(home, "verify-proof", str(out))
    assert res.returncode == 1, res.stdout
    assert "event record altered" in res.stdout


def test_verify_proof_with_explicit_public_key(ledger: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    home, info = ledger
    out = tmp_path / "proof.json"
    assert _cli(home, "prove", info["actions"][3], "--out", str(out)).returncode == 0
    single = tmp_path / "single.json"
    single.write_text(json.dumps(json.loads(out.read_text())["proofs"][2]))
    other = tmp_path / "elsewhere"
    other.mkdir()
    res = run(other, "-m", "lockgate.cli", "verify-proof", str(single), "--public-key",
               str(home / "keys" / "processor.pub.pem"), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["ok"] is True
