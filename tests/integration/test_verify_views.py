"""``verify`` proves what people read, against the real engine (chDB), tampered by hand.

The store is the reader scenario (``tests.factories.ledger.reader_scenario``) written
through the sink's own writer and materialized view. Tampering is real SQL — ALTER TABLE …
UPDATE/DELETE with ``mutations_sync = 1``, INSERT — as an attacker with write access to
the store would do it. The ledger value each finding must name is what the untouched store
held (read back from ClickHouse by the helper before tampering), not a re-derivation.
Setup, tampering and the CLI each run in their own process (chDB: one directory per process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sinks.rows import EXTRACTED_COLUMNS
from sinks.summary import SUMMARY_NAMES
from sinks.tokens import create_token
from tests.conftest import free_port
from tests.integration.chromium import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, needs_chromium
from tests.integration.cli_runner import ROOT, cli, cli_json, env, helper

pytestmark = pytest.mark.integration

HELPER = "tests.integration.views_helper"
# The scenario runs on a 2023 clock and keeps records after its newest checkpoint on purpose;
# coverage (uncovered_event) is tested elsewhere, so judge it only for events older than that.
VERIFY = ("verify", "--checkpoint-interval", "1e9")
Y2001 = "toDateTime64('2001-01-01 00:00:00', 6, 'UTC')"
Y2001_US = 978_307_200_000_000

# (action role, event kind, SET clause, the values readers then see). Together they edit
# every derived column of audit_events; actor_id (a sort-key column) is rewritten apart.
COLUMN_EDITS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("allowed", "action", "decode_error = 'none', actor_roles = ['root'], service = 'shadow', key_id = 'k-x'",
     {"decode_error": "none", "actor_roles": ["root"], "service": "shadow", "key_id": "k-x"}),
    ("allowed", "verdict", "payload_schema = 'Forged', rule_errors = ['boom'], policy_name = 'lax', "
     "policy_version = 999, eval_latency_us = 1",
     {"payload_schema": "Forged", "rule_errors": ["boom"], "policy_name": "lax", "policy_version": 999,
      "eval_latency_us": 1}),
    ("allowed", "outcome", f"outcome_at = {Y2001}", {"outcome_at": Y2001_US}),
    ("blocked", "action", "type = 'db.read', resource = 'db/dev/scratch', attributes = map('sql', 'SELECT 1'), "
     "sql = 'SELECT 1'",
     {"type": "db.read", "resource": "db/dev/scratch", "attributes": {"sql": "SELECT 1"}, "sql": "SELECT 1"}),
    ("blocked", "verdict", "decision = 'allow', basis = 'default', rule_ids = [], rule_effects = ['allow'], "
     "rule_modes = ['shadow'], reason = 'routine'",
     {"decision": "allow", "basis": "default", "rule_ids": [], "rule_effects": ["allow"],
      "rule_modes": ["shadow"], "reason": "routine"}),
    ("failed", "action", f"change_json = '{{}}', proposed_at = {Y2001}",
     {"change_json": "{}", "proposed_at": Y2001_US}),
    ("failed", "verdict", f"decided_at = {Y2001}, processor_id = 'rogue'",
     {"decided_at": Y2001_US, "processor_id": "rogue"}),
    ("failed", "outcome", "correlation_id = 'c-x', before_json = '{}', after_json = '{}', "
     "outcome_status = 'committed', error_type = '', error_message = ''",
     {"correlation_id": "c-x", "before_json": "{}", "after_json": "{}", "outcome_status": "committed",
      "error_type": "", "error_message": ""}),
]

# (action role, SET clause on its action_summary rows, the values readers then see): every column.
SUMMARY_EDITS: list[tuple[str, str, dict[str, Any]]] = [
    ("allowed", f"proposed_at = {Y2001}, has_action = 0, actor_id = 'mallory', actor_roles = ['root'], "
     "service = 'shadow', type = 'db.read', resource = 'db/dev', attributes = map('a', 'b'), sql = 'SELECT 1', "
     "change_json = '{}'",
     {"proposed_at": Y2001_US, "has_action": 0, "actor_id": "mallory", "actor_roles": ["root"],
      "service": "shadow", "type": "db.read", "resource": "db/dev", "attributes": {"a": "b"}, "sql": "SELECT 1",
      "change_json": "{}"}),
    ("blocked", f"decided_at = {Y2001}, has_verdict = 0, decision = 'allow', basis = 'default', rule_ids = [], "
     "rule_effects = ['allow'], rule_modes = ['shadow'], policy_name = 'lax', policy_version = 999, "
     "reason = 'routine', eval_latency_us = 1",
     {"decided_at": Y2001_US, "has_verdict": 0, "decision": "allow", "basis": "default", "rule_ids": [],
      "rule_effects": ["allow"], "rule_modes": ["shadow"], "policy_name": "lax", "policy_version": 999,
      "reason": "routine", "eval_latency_us": 1}),
    ("failed", f"outcome_at = {Y2001}, has_outcome = 0, before_json = '{{}}', after_json = '{{}}', "
     "outcome_status = 'committed', error_type = '', error_message = ''",
     {"outcome_at": Y2001_US, "has_outcome": 0, "before_json": "{}", "after_json": "{}",
      "outcome_status": "committed", "error_type": "", "error_message": ""}),
]


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A fresh home holding the reader scenario (a chDB directory cannot be shared)."""
    home = tmp_path / "home"
    home.mkdir()
    return home, helper(HELPER, home, "setup", str(home))


def _sql(home: Path, *statements: str) -> None:
    helper(HELPER, home, "sql", str(home), *statements)


def _events(info: dict[str, Any], role: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in info["events"] if e["action_id"] == info["ids"][role] and e["kind"] == kind]


def _key(ev: dict[str, Any]) -> str:
    return f"event {ev['event_id']}@{ev['sequence']}"


def _by(findings: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in findings if f["kind"] == kind]


def test_untouched_store_verifies_clean(store: tuple[Path, dict[str, Any]]) -> None:
    """No false positives: two tenants, an outcome after midnight (two summary days), a
    verdict chained twice, a blocked action with a security event, a dead letter, a policy
    change, a proposal whose payload does not decode, records not yet checkpointed."""
    home, info = store
    report = cli_json(home, 0, *VERIFY)
    assert report["findings"] == []
    assert report["views"] == {"rows": 22, "summary_rows": 8, "rechecked": 0}
    days = {k.split("|")[1] for k in info["summary"] if k.endswith(info["ids"]["midnight"])}
    assert days == {"2023-11-14", "2023-11-15"}
    for role in ("blocked", "midnight", "failed", "undecodable"):
        rec = cli_json(home, 0, "audit", "show", info["ids"][role])
        assert rec["integrity"]["ok"] and rec["rendered_from"] == "payload", rec["integrity"]
    undecodable = cli_json(home, 0, "audit", "show", info["ids"]["undecodable"])
    assert undecodable["has_action"] and undecodable["actor_id"] == ""
    assert "TruncatedRecord" in undecodable["events"][0]["decode_error"]


def test_every_derived_column_edit_is_named(store: tuple[Path, dict[str, Any]]) -> None:
    home, info = store
    # actor_id is in the sort key: rewrite that row (insert an edited copy, which the view
    # also summarizes, then delete the original), before the other edits reach it.
    proposal = _events(info, "blocked", "action")[0]
    statements = [
        "INSERT INTO {db}.audit_events SELECT * REPLACE ('mallory' AS actor_id) FROM {db}.audit_events "
        f"WHERE event_id = '{proposal['event_id']}'",
        f"ALTER TABLE {{db}}.audit_events DELETE WHERE event_id = '{proposal['event_id']}' AND actor_id != "
        "'mallory' SETTINGS mutations_sync = 1",
    ]
    expected: dict[tuple[str, int, str], tuple[Any, Any]] = {
        (proposal["event_id"], proposal["sequence"], "actor_id"): (
            "mallory", info["columns"][_key(proposal)]["actor_id"])}
    for role, kind, assignments, readers_see in COLUMN_EDITS:
        rows = _events(info, role, kind)
        assert rows, (role, kind)
        statements.append(f"ALTER TABLE {{db}}.audit_events UPDATE {assignments} WHERE action_id = "
                          f"'{info['ids'][role]}' AND kind = '{kind}' SETTINGS mutations_sync = 1")
        for ev in rows:
            for column, value in readers_see.items():
                expected[(ev["event_id"], ev["sequence"], column)] = (value, info["columns"][_key(ev)][column])
    assert {c for _, _, c in expected} == set(EXTRACTED_COLUMNS)
    _sql(home, *statements)

    report = cli_json(home, 1, *VERIFY)
    got = {(f["event_id"], f["sequence"], f["column"]): f for f in _by(report["findings"], "altered_view")}
    assert got.keys() == expected.keys(), sorted(got.keys() ^ expected.keys())
    for where, (stored, ledger) in expected.items():
        f = got[where]
        assert (f["stored"], f["ledger"], f["table"], f["partition"]) == (stored, ledger, "audit_events", 0), f
        assert f["action_id"] in info["ids"].values()
        assert f"audit_events.{where[2]}" in f["message"]
    # The chain itself is intact; the re-inserted copy also moved the summary's actor.
    assert {f["kind"] for f in report["findings"]} == {"altered_view", "altered_summary"}
    assert [(f["action_id"], f["column"]) for f in _by(report["findings"], "altered_summary")] == [
        (info["ids"]["blocked"], "actor_id")]


def test_summary_edits_inserts_and_deletes_are_named(store: tuple[Path, dict[str, Any]]) -> None:
    home, info = store
    ids = info["ids"]
    statements = [f"ALTER TABLE {{db}}.action_summary UPDATE {sets} WHERE action_id = '{ids[role]}' "
                  "SETTINGS mutations_sync = 1" for role, sets, _ in SUMMARY_EDITS]
    assert {c for _, _, seen in SUMMARY_EDITS for c in seen} == set(SUMMARY_NAMES)
    statements += [
        # an action nobody proposed, shown as allowed
        "INSERT INTO {db}.action_summary (tenant, day, action_id, has_verdict, decision) "
        "VALUES ('acme', '2023-11-14', 'fabricated-action', 1, 'allow')",
        # a real action, on a day it has no event
        "INSERT INTO {db}.action_summary (tenant, day, action_id, has_action, actor_id) "
        f"VALUES ('acme', '2023-11-20', '{ids['allowed']}', 1, 'mallory')",
        # an extra partial row that changes a real action's fold
        "INSERT INTO {db}.action_summary (tenant, day, action_id, reason) "
        f"VALUES ('globex', '2023-11-15', '{ids['globex']}', 'zzz')",
        # an action (two days: its outcome landed after midnight) gone from the summary
        f"ALTER TABLE {{db}}.action_summary DELETE WHERE action_id = '{ids['midnight']}' SETTINGS mutations_sync = 1",
    ]
    _sql(home, *statements)

    report = cli_json(home, 1, *VERIFY)
    assert {f["kind"] for f in report["findings"]} == {"altered_summary", "inserted_summary", "missing_summary"}
    altered = {(f["action_id"], f["column"]): f for f in _by(report["findings"], "altered_summary")}
    for role, _, readers_see in SUMMARY_EDITS:
        group = next(k for k in info["summary"] if k.endswith(ids[role]))
        for column, value in readers_see.items():
            f = altered.pop((ids[role], column))
            assert (f["stored"], f["ledger"], f["table"]) == (value, info["summary"][group][column],
                                                              "action_summary"), f
            assert f["partition"] == 0 and f["sequence"] is not None
    globex = altered.pop((ids["globex"], "reason"))
    assert (globex["stored"], globex["ledger"]) == ("zzz", "rule r1 says allow")
    assert not altered, altered
    inserted = {f["action_id"]: f for f in _by(report["findings"], "inserted_summary")}
    assert inserted.keys() == {"fabricated-action", ids["allowed"]}
    assert inserted["fabricated-action"]["partition"] is None
    assert inserted["fabricated-action"]["stored"]["decision"] == "allow"
    assert "no event of this action" in inserted["fabricated-action"]["message"]
    assert "2023-11-20" in inserted[ids["allowed"]]["message"] and inserted[ids["allowed"]]["partition"] == 0
    missing = _by(report["findings"], "missing_summary")
    assert sorted(f["ledger"]["day"] for f in missing) == ["2023-11-14", "2023-11-15"]
    assert {f["action_id"] for f in missing} == {ids["midnight"]}


def _edit_blocked_decision(home: Path, info: dict[str, Any]) -> None:
    aid = info["ids"]["blocked"]
    _sql(home,
         f"ALTER TABLE {{db}}.audit_events UPDATE decision = 'allow' WHERE action_id = '{aid}' AND kind = "
         "'verdict' SETTINGS mutations_sync = 1",
         f"ALTER TABLE {{db}}.action_summary UPDATE decision = 'allow' WHERE action_id = '{aid}' "
         "SETTINGS mutations_sync = 1")


def _assert_shows_block_and_mismatch(rec: dict[str, Any]) -> None:
    assert rec["decision"] == "block" and rec["rendered_from"] == "payload"  # from the payload
    integrity = rec["integrity"]
    assert integrity["ok"] is False and integrity["chain"]["ok"] and integrity["checkpoint"]["ok"]
    seen = {(m["table"], m["column"], json.dumps(m["stored"]), json.dumps(m["ledger"]))
            for m in integrity["views"]["mismatches"]}
    assert seen == {("audit_events", "decision", '"allow"', '"block"'),
                    ("action_summary", "decision", '"allow"', '"block"')}
    verdict = next(e for e in rec["events"] if e["kind"] == "verdict")
    assert verdict["check"]["stored_matches"] is False and verdict["check"]["hash_ok"]


def test_audit_show_marks_an_edited_record(store: tuple[Path, dict[str, Any]]) -> None:
    home, info = store
    _edit_blocked_decision(home, info)
    rec = cli_json(home, 1, "audit", "show", info["ids"]["blocked"])
    _assert_shows_block_and_mismatch(rec)
    assert rec["integrity"]["checked_by"] == "this command, reading the store"
    text = cli(home, "audit", "show", info["ids"]["blocked"])
    assert text.returncode == 1 and "DO NOT MATCH" in text.stdout and "BLOCK" in text.stdout


@pytest.fixture
def served(store: tuple[Path, dict[str, Any]]) -> Iterator[tuple[Path, dict[str, Any], str, str]]:
    """The tampered store behind the sink's API (the sink owns the directory)."""
    home, info = store
    _edit_blocked_decision(home, info)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", HELPER, "serve", str(home), str(port)], cwd=ROOT,
                            env=env(home), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]
        yield home, info, url, str(port)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)


def _get(url: str, token: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_through_the_running_sinks_api(served: tuple[Path, dict[str, Any], str, str]) -> None:
    home, info, url, port = served
    report = cli_json(home, 1, *VERIFY, LOCKGATE_API_PORT=port)
    assert report["source"].startswith("the sink's API")
    named = {(f["kind"], f["column"], f["stored"], f["ledger"]) for f in report["findings"]}
    assert named == {("altered_view", "decision", "allow", "block"),
                     ("altered_summary", "decision", "allow", "block")}
    rec = cli_json(home, 1, "audit", "show", info["ids"]["blocked"], LOCKGATE_API_PORT=port)
    _assert_shows_block_and_mismatch(rec)
    assert rec["integrity"]["checked_by"].startswith("the sink at")

    # Least privilege: a tenant's token sees its own action, checked, without shared ids;
    # never another tenant's action, nor the all-tenant verify routes.
    _, acme = create_token(home, "acme")
    _, admin = create_token(home, "*")
    status, mine = _get(f"{url}/api/actions/{info['ids']['blocked']}", acme)
    assert status == 200
    _assert_shows_block_and_mismatch(mine)
    assert all("checkpoint_id" not in e["check"]["checkpoint"] for e in mine["events"])
    _, full = _get(f"{url}/api/actions/{info['ids']['blocked']}", admin)
    assert {e["check"]["checkpoint"]["checkpoint_id"] for e in full["events"]} == {"p0:0-5", "p0:6-12"}
    assert _get(f"{url}/api/actions/{info['ids']['globex']}", acme)[0] == 404
    for path in ("/api/verify/events?partition=0", "/api/verify/summary"):
        assert _get(url + path, acme)[0] == 403
        assert _get(url + path, admin)[0] == 200
    status, page = _get(f"{url}/api/verify/summary?limit=3", admin)
    last = page["summary"][-1]
    _, rest = _get(f"{url}/api/verify/summary?limit=100&after_tenant={last['tenant']}&after_day="
                   f"{last['day_iso']}&after_action={last['action_id']}", admin)
    assert len(page["summary"]) + len(rest["summary"]) == 8


def test_rewritten_tail_is_named_against_the_topics(tmp_path: Path, kafka_bootstrap: str) -> None:
    """A tail rewritten after the newest checkpoint is a valid chain; the topics name it."""
    home = tmp_path / "home"
    home.mkdir()
    prefix, group = f"v{uuid.uuid4().hex[:8]}.", f"sink-{uuid.uuid4().hex[:8]}"
    kafka = {"LOCKGATE_BOOTSTRAP_SERVERS": kafka_bootstrap, "LOCKGATE_TOPIC_PREFIX": prefix,
             "LOCKGATE_SINK_GROUP_ID": group}
    info = helper(HELPER, home, "publish", str(home), kafka_bootstrap, prefix, group)
    untouched = cli_json(home, 0, *VERIFY, "--against-topics", **kafka)
    assert untouched["topics"]["pending"] == 2  # produced, not yet consumed by the sink: not a finding

    attack = helper(HELPER, home, "rewrite", str(home))
    assert cli_json(home, 0, *VERIFY, **kafka)["findings"] == []  # the store alone cannot tell

    report = cli_json(home, 1, *VERIFY, "--against-topics", **kafka)
    found = report["findings"]
    assert {f["kind"] for f in found} == {"store_differs_from_topics"}
    first = found[0]  # sorted by partition and sequence: the first place the copies part
    assert (first["partition"], first["sequence"], first["action_id"]) == (0, 13, attack["action"])
    assert first["column"] == "payload, hash" and first["table"] == "audit_events"
    assert set(first["stored"]) == {"payload", "hash"} and first["stored"]["hash"] != first["ledger"]["hash"]
    places = [(f["partition"], f["sequence"]) for f in found]
    assert places == [(0, 13), (0, 14), (0, 15), (1, 4), (1, 5)]
    assert [f["column"] for f in found[1:3]] == ["prev_hash, hash", "prev_hash, hash"]
    assert all("missing in store" in f["message"] for f in found[3:])
    assert report["topics"]["pending"] == 2
    assert info["pending_sequences"] == [6, 7]


@pytest.mark.browser
@needs_chromium
def test_dashboard_detail_marks_an_edited_record(served: tuple[Path, dict[str, Any], str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    home, info, url, _ = served
    _, token = create_token(home, "acme")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{url}/?token={token}#action={info['ids']['blocked']}")
            drill = page.get_by_test_id("drill")
            expect(drill).to_be_visible()
            expect(drill.get_by_test_id("drill-decision")).to_have_text("block")  # the payload, not the edit
            expect(drill.get_by_test_id("drill-integrity")).to_have_attribute("data-ok", "false")
            expect(drill.get_by_test_id("drill-integrity-verdict")).to_have_text("DOES NOT MATCH the ledger")
            expect(drill.get_by_test_id("drill-views")).to_contain_text("DO NOT MATCH")
            expect(drill.get_by_test_id("drill-mismatch")).to_have_count(2)
            expect(drill.get_by_test_id("drill-mismatch").first).to_contain_text('stored "allow", ledger "block"')
            expect(drill.get_by_test_id("drill-chain")).to_contain_text("chain: ok")
            expect(drill.get_by_test_id("drill-checkpoint")).to_contain_text("3 event(s) covered")
        finally:
            browser.close()
