"""`lockgate verify --since`: an outcome in the window whose verdict was chained before it.

The helper (tests/integration/verify_cli_helper.py ``setup-split``) builds a partition whose
legacy interval checkpoint from 2023 ends right after an action's verdict, and whose next
checkpoint (created now) covers that action's outcome: ``--since 1h`` starts the partition at
the outcome. From a real embedded ClickHouse (chDB) the verdict is read by action id, and
deleting its row by hand must turn the run into ``commit_without_allow``. From the replay
topics of the real broker (``--from-topics``, which reads from the beginning anyway) the
same ledger, and the same ledger produced without that verdict record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas.codec import get_codec
from schemas.topics import Topics
from tests.integration.cli_runner import cli, helper
from tests.integration.sink_process import produce
from tests.integration.verify_cli_helper import split_ledger

pytestmark = pytest.mark.integration


def _helper(home: Path, *args: str) -> Any:
    return helper("tests.integration.verify_cli_helper", home, *args)


def _verify(home: Path, expect: int, *extra: str) -> dict[str, Any]:
    res = cli(home, "verify", "--json", *extra)
    assert res.returncode == expect, (res.stdout, res.stderr)
    report: dict[str, Any] = json.loads(res.stdout)
    return report


def test_a_verdict_older_than_the_window_answers_its_outcome_and_a_deleted_one_does_not(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    info = _helper(home, "setup-split", str(home))

    report = _verify(home, 0, "--since", "1h")
    assert report["events"] == 1 and report["findings"] == []  # the window is the outcome alone
    assert report["earlier_verdicts"]["actions"] == 1 and report["earlier_verdicts"]["found"] == 1
    text = cli(home, "verify", "--since", "1h")
    assert text.returncode == 0 and "1 outcome(s) judged against verdicts from before the window (1 found)" \
        in text.stdout, (text.stdout, text.stderr)

    res = _helper(home, "sql", str(home),
                  f"ALTER TABLE {{db}}.audit_events DELETE WHERE event_id = '{info['verdict_event_id']}' "
                  "SETTINGS mutations_sync = 1",
                  f"SELECT count() FROM {{db}}.audit_events WHERE action_id = '{info['action']}'")
    assert res["results"][-1] == "2", res  # its proposal and its outcome are left

    report = _verify(home, 1, "--since", "1h")
    assert [(f["kind"], f["partition"], f["sequence"], f["event_id"], f["action_id"])
            for f in report["findings"]] == [
        ("commit_without_allow", 0, info["anchor"], info["outcome_event_id"], info["action"])]
    assert report["earlier_verdicts"] == {**report["earlier_verdicts"], "actions": 1, "found": 0}
    # The full run sees the deletion itself, too.
    full = _verify(home, 1)
    assert ("deleted_record", 0, info["anchor"] - 1) in [(f["kind"], f["partition"], f["sequence"])
                                                         for f in full["findings"]]


def test_a_forged_verdict_older_than_the_window_is_named_where_it_is_stored(tmp_path: Path) -> None:
    # The verdict row's signature (the last 64 bytes of its payload) is zeroed in the store:
    # it still decodes, it no longer verifies.
    home = tmp_path / "home"
    home.mkdir()
    info = _helper(home, "setup-split", str(home))
    _helper(home, "sql", str(home),
            "ALTER TABLE {db}.audit_events UPDATE payload = concat(substring(payload, 1, length(payload) - 64), "
            f"repeat('\\0', 64)) WHERE event_id = '{info['verdict_event_id']}' SETTINGS mutations_sync = 1")
    report = _verify(home, 1, "--since", "1h")
    got = {(f["kind"], f["sequence"], f["action_id"]) for f in report["findings"]}
    assert ("forged_verdict", info["anchor"] - 1, info["action"]) in got
    assert ("commit_without_allow", info["anchor"], info["action"]) in got


@pytest.mark.parametrize("drop_verdict", [False, True], ids=["verdict-on-topic", "verdict-not-on-topic"])
def test_from_topics_judges_the_outcome_against_the_verdict_before_the_window(
        tmp_path: Path, kafka_bootstrap: str, topics: Topics, drop_verdict: bool) -> None:
    home = tmp_path / "home"
    home.mkdir()
    events, cps, info = split_ledger(home)
    codec = get_codec()
    audit = [(0, codec.encode("AuditEvent", e)) for part in sorted(events) for e in events[part]
             if not (drop_verdict and e["event_id"] == info["verdict_event_id"])]
    produce(kafka_bootstrap, topics.audit, audit)
    produce(kafka_bootstrap, topics.checkpoints, [(0, codec.encode("Checkpoint", c)) for c in cps])
    env = {"LOCKGATE_BOOTSTRAP_SERVERS": kafka_bootstrap, "LOCKGATE_TOPIC_PREFIX": topics.prefix}

    res = cli(home, "verify", "--json", "--from-topics", "--since", "1h", **env)
    assert res.returncode == (1 if drop_verdict else 0), (res.stdout, res.stderr)
    report = json.loads(res.stdout)
    assert report["events"] == 1
    assert report["earlier_verdicts"]["actions"] == 1
    assert report["earlier_verdicts"]["found"] == (0 if drop_verdict else 1)
    assert [(f["kind"], f["sequence"], f["action_id"]) for f in report["findings"]] == (
        [("commit_without_allow", info["anchor"], info["action"])] if drop_verdict else [])
