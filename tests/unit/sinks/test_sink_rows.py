"""Row building: lossless ledger columns, extraction per kind, never raising on bad payloads."""

from __future__ import annotations

import pytest

from sinks.errors import RowError
from sinks.rows import AUDIT_COLUMNS, CHECKPOINT_COLUMNS, audit_event_row, checkpoint_row
from tests.integration.sinks.sink_fixtures import Events

SRC = ("lockgate.audit", 3, 99)


def _as_dict(row: list[object]) -> dict[str, object]:
    return dict(zip(AUDIT_COLUMNS, row, strict=True))


def test_action_row_extracts_who_and_what() -> None:
    ev = Events()
    aid, act = ev.action(sql="UPDATE t SET a = 1")
    row = _as_dict(audit_event_row(act, SRC))
    assert row["payload"] == act["payload"] and row["hash"] == act["hash"]
    assert row["action_id"] == aid and row["detail"] is None
    assert (row["src_topic"], row["src_partition"], row["src_offset"]) == SRC
    assert row["actor_id"] == "alice" and row["actor_roles"] == ["dba", "oncall"]
    assert row["sql"] == "UPDATE t SET a = 1"
    assert row["attributes"] == {"sql": "UPDATE t SET a = 1", "rows": "1", "dry": "false",
                                 "ratio": "0.5", "none": ""}
    assert row["payload_schema"] == "ProposedAction" and row["decode_error"] == ""


def test_verdict_outcome_policy_rows() -> None:
    ev = Events()
    v = _as_dict(audit_event_row(ev.verdict("a1"), SRC))
    assert v["decision"] == "block" and v["rule_modes"] == ["enforce", "shadow"]
    assert v["policy_name"] == "prod" and v["policy_version"] == 7 and v["eval_latency_us"] == 42
    o = _as_dict(audit_event_row(ev.outcome("a1", status="failed"), SRC))
    assert o["outcome_status"] == "failed" and o["after_json"] == '{"qty":2}'
    p = _as_dict(audit_event_row(ev.policy(), SRC))
    assert p["rule_ids"] == ["no-unbounded-delete"] and p["actor_id"] == "root"


def test_bad_payload_keeps_raw_row() -> None:
    ev = Events()
    bad = ev.wrap("action", "acme", b"not avro at all", "a1")
    row = _as_dict(audit_event_row(bad, SRC))
    assert row["payload"] == b"not avro at all"
    assert "MalformedRecord" in str(row["decode_error"]) and row["actor_id"] == ""
    wrong = ev.wrap("action", "acme", ev.verdict("a1")["payload"], "a1")
    assert "expected a ProposedAction" in str(_as_dict(audit_event_row(wrong, SRC))["decode_error"])


def test_dead_letter_and_security_keep_raw_and_detail() -> None:
    ev = Events()
    row = _as_dict(audit_event_row(ev.wrap("security", "acme", b"\x00raw", None,
                                           detail="bad signature"), SRC))
    assert row["payload"] == b"\x00raw" and row["detail"] == "bad signature"
    assert row["payload_schema"] == "" and row["decode_error"] == ""


def test_not_an_audit_event_raises() -> None:
    with pytest.raises(RowError, match="sequence"):
        audit_event_row({"event_id": "e", "kind": "action", "recorded_at": 1, "tenant": "t",
                         "payload": b"", "ledger_partition": 0, "sequence": None,
                         "prev_hash": b"", "hash": b""}, SRC)


def test_checkpoint_row_keeps_every_field() -> None:
    cp = Events().checkpoint()
    row = dict(zip(CHECKPOINT_COLUMNS, checkpoint_row(cp, SRC), strict=True))
    for key, value in cp.items():
        assert row[key] == value
