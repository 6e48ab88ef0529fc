"""Store against replay topics: missing, extra, differing records and checkpoints."""

from __future__ import annotations

from typing import Any

from tests.factories.ledger import reader_scenario
from trust.keys import SigningKey
from trust.verify import FindingKind, compare_copies


def _copies() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    lb, cps, _ = reader_scenario(SigningKey.generate())
    replay = [ev | {"_position": (ev["ledger_partition"], ev["sequence"])} for ev in lb.events]
    return [dict(ev) for ev in lb.events], replay, cps


def test_equal_copies_and_duplicates_agree() -> None:
    stored, replay, cps = _copies()
    report = compare_copies(stored + stored[:3], replay + replay[:2], stored_checkpoints=cps,
                            replay_checkpoints=cps + cps[:1])
    assert report.findings == [] and report.records == len(stored) + len(cps) and report.pending == 0


def test_differing_missing_and_extra_records_are_named_in_place() -> None:
    stored, replay, cps = _copies()
    stored[13] = stored[13] | {"payload": b"rewritten", "hash": b"\x01" * 32}
    del stored[15]
    stored.append(stored[0] | {"ledger_partition": 5, "sequence": 0})
    report = compare_copies(stored, replay, stored_checkpoints=cps[:2], replay_checkpoints=cps,
                            landed=lambda rec: rec.get("_position", (0, 0))[1] < 15)
    found = [(f.kind, f.partition, f.sequence, f.column, f.table) for f in report.findings]
    assert found == [
        (FindingKind.STORE_DIFFERS_FROM_TOPICS, 0, 13, "payload, hash", "audit_events"),
        (FindingKind.STORE_DIFFERS_FROM_TOPICS, 1, 0, None, "checkpoints"),
        (FindingKind.STORE_DIFFERS_FROM_TOPICS, 5, 0, None, "audit_events"),
    ]
    assert report.pending == 1  # record 15: beyond what the sink committed
    rewritten = report.findings[0]
    assert rewritten.stored == {"payload": "72657772697474656e", "hash": "01" * 32}
    assert rewritten.ledger is not None and rewritten.ledger["hash"] == replay[13]["hash"].hex()
    assert "missing in store" in report.findings[1].message and report.findings[1].checkpoint_id == cps[2][
        "checkpoint_id"]
    assert "extra in store" in report.findings[2].message
