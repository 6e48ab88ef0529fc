"""Whole-log checkpoints through the CLI, on a real embedded ClickHouse and a real witness.

The helper (tests/integration/verify_cli_helper.py, one subprocess per chDB directory)
writes a ledger whose whole-log checkpoints were cosigned by a witness over HTTP, exactly
as the ledger writer will; then ``verify``, ``prove``, ``prove --consistency`` and
``verify-proof`` run as a user would. No Kafka.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_verify_cli import _cli, _helper

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    home = tmp_path / "home"
    home.mkdir()
    return home, _helper(home, "setup-tlog", str(home))


def _verify(home: Path, expect: int, *extra: str) -> dict[str, Any]:
    res = _cli(home, "verify", "--json", *extra)
    assert res.returncode == expect, (res.stdout, res.stderr)
    report: dict[str, Any] = json.loads(res.stdout)
    return report


# The fork rewrites audit_events by hand but not the summary the materialized view folded
# from the old rows, so the views check names that too; these tests are about the log.
VIEW_KINDS = frozenset({"altered_view", "altered_summary", "inserted_summary", "missing_summary"})


def _kinds(report: dict[str, Any]) -> list[tuple[str, int, str | None]]:
    return sorted((f["kind"], f["partition"], f["checkpoint_id"]) for f in report["findings"]
                  if f["kind"] not in VIEW_KINDS)


def _view_kinds(report: dict[str, Any]) -> set[str]:
    return {f["kind"] for f in report["findings"] if f["kind"] in VIEW_KINDS}


def test_a_witnessed_ledger_verifies(ledger: tuple[Path, dict[str, Any]]) -> None:
    home, info = ledger
    report = _verify(home, 0, "--witness-key", info["witness_vkey"])
    assert report["checkpoints"] == 3 and report["witnesses"] == ["witness.example/w1"]


def test_an_added_edited_copy_of_a_cosigned_checkpoint_is_forged_and_the_cosigned_one_still_counts(
        ledger: tuple[Path, dict[str, Any]]) -> None:
    # A copy of the newest (cosigned) checkpoint p0@9 with the same id and note but
    # last_sequence 3, sorted before the genuine row: exactly that copy is forged; the genuine
    # one still covers 0..8 and still carries the witness's cosignature.
    home, info = ledger
    res = _helper(home, "sql", str(home),
                  "INSERT INTO {db}.checkpoints SELECT * REPLACE (toInt64(3) AS last_sequence) "
                  "FROM {db}.checkpoints WHERE checkpoint_id = 'p0@9'",
                  "SELECT count() FROM {db}.checkpoints WHERE checkpoint_id = 'p0@9'")
    assert res["results"][-1] == "2", res
    report = _verify(home, 1, "--witness-key", info["witness_vkey"])
    assert [(f["kind"], f["partition"], f["checkpoint_id"], f["column"], f["stored"], f["ledger"])
            for f in report["findings"]] == [
        ("forged_checkpoint", 0, "p0@9", "last_sequence", {"last_sequence": 3}, {"last_sequence": 8})]


@pytest.mark.parametrize(("replace", "attributed"), [
    ("unhex(repeat('01', 32)) AS head_hash", True),
    ("created_at - 1 AS created_at", False),
], ids=["head_hash", "created_at"])
def test_an_added_copy_differing_in_a_field_the_note_does_not_sign(
        ledger: tuple[Path, dict[str, Any]], replace: str, attributed: bool) -> None:
    # Same note, another head_hash: the stored chain reproduces the root, whose last leaf is the
    # genuine head, so exactly the added copy is named. Another created_at: nothing signed
    # covers it, so one finding lists both copies' values and blames neither.
    home, info = ledger
    res = _helper(home, "sql", str(home),
                  f"INSERT INTO {{db}}.checkpoints SELECT * REPLACE ({replace}) "
                  "FROM {db}.checkpoints WHERE checkpoint_id = 'p0@9'",
                  "SELECT count() FROM {db}.checkpoints WHERE checkpoint_id = 'p0@9'")
    assert res["results"][-1] == "2", res
    report = _verify(home, 1, "--witness-key", info["witness_vkey"])
    (f,) = report["findings"]
    assert (f["kind"], f["partition"], f["checkpoint_id"]) == ("forged_checkpoint", 0, "p0@9")
    if attributed:
        assert f["column"] == "head_hash" and f["stored"] == {"head_hash": "01" * 32}
        assert len(f["ledger"]["head_hash"]) == 64 and f["ledger"] != f["stored"]
        assert "this copy was edited in the store" in f["message"]
    else:
        assert f["column"] == "created_at" and len(f["stored"]) == 2 and f["ledger"] is None
        assert "no signature says which" in f["message"]


def test_inclusion_proofs_against_whole_log_checkpoints(ledger: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    home, info = ledger
    out = tmp_path / "proof.json"
    res = _cli(home, "prove", info["actions"][0], "--out", str(out))
    assert res.returncode == 0, res.stderr
    bundle = json.loads(out.read_text())
    assert [p["version"] for p in bundle["proofs"]] == [2, 2, 2]
    assert "\nindex 0\n" in bundle["proofs"][0]["tlog_proof"]
    res = _cli(home, "verify-proof", str(out), "--witness-key", info["witness_vkey"],
               "--log-name", "lockgate.example/ledger")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "cosigned by witness.example/w1" in res.stdout


def test_consistency_proof_round_trip(ledger: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    home, info = ledger
    out = tmp_path / "consistency.json"
    res = _cli(home, "prove", "--consistency", "6", "9", "--partition", "0", "--out", str(out))
    assert res.returncode == 0, res.stderr
    res = _cli(home, "verify-proof", str(out), "--witness-key", info["witness_vkey"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "size 9 extends size 6" in res.stdout
    doc = json.loads(out.read_text())
    doc["proof"] = doc["proof"][::-1]
    out.write_text(json.dumps(doc))
    res = _cli(home, "verify-proof", str(out))
    assert res.returncode == 1 and "not an extension" in res.stdout
    res = _cli(home, "prove", "--consistency", "5", "9", "--partition", "0")
    assert res.returncode == 2 and "sizes signed: 6, 9" in res.stderr


def test_a_forked_history_is_refused_by_the_witness_and_reported_by_verify(
        ledger: tuple[Path, dict[str, Any]]) -> None:
    home, info = ledger
    forked = _helper(home, "fork", str(home))
    assert forked["witness"] == ["WitnessRefused 400"]  # old size 9 > the forked 8: no cosignature
    report = _verify(home, 1, "--witness-key", info["witness_vkey"])
    assert _kinds(report) == [("inconsistent_checkpoints", 0, "p0@6"), ("truncated_tail", 0, "p0@9")]
    # The attacker also deletes the checkpoints the rewrite contradicts: the newest checkpoint
    # left has no cosignature, because the witness refused it.
    _helper(home, "sql", str(home), "ALTER TABLE {db}.checkpoints DELETE WHERE checkpoint_id IN "
            "('p0@6', 'p0@9') SETTINGS mutations_sync = 1")
    report = _verify(home, 1, "--witness-key", info["witness_vkey"])
    assert _kinds(report) == [("missing_cosignature", 0, "p0@8")]
    # Without witnesses, the re-signed log itself verifies; only the stale summary betrays it.
    report = _verify(home, 1)
    assert _kinds(report) == [] and _view_kinds(report), report["findings"][:5]
