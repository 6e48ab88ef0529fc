"""verify checks proposal -> verdict -> outcome by hash, policy versions against the ledger's policy
events, and one decision per action id; records signed before v2 stay verifiable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.codec import get_codec
from schemas.records import AuditKind, audit_event
from tests.factories.decided import DecidedLedger
from tests.factories.ledger import LedgerBuilder
from trust.bindings import policy_sha256, record_sha256
from trust.keys import Keyring, SigningKey
from trust.verify import BindingStats, Finding, FindingKind, verify_ledger

KEY = SigningKey.generate()
RING = Keyring([KEY.public()])
CODEC = get_codec()
SAFE = "UPDATE orders SET status = 'x' WHERE id = 1"
DROP = "DROP TABLE orders"


@pytest.fixture
def ledger(tmp_path: Path) -> DecidedLedger:
    return DecidedLedger(KEY, tmp_path)


def verify(ledger: DecidedLedger, stats: BindingStats | None = None) -> list[Finding]:
    return verify_ledger(ledger.events, [], RING, bindings=stats)


def kinds_for(findings: list[Finding], action_id: str) -> set[FindingKind]:
    return {f.kind for f in findings if f.action_id == action_id}


def verdict_of(result: Any) -> dict[str, Any]:
    assert result.verdict is not None
    return dict(result.verdict)


def undecided(ledger: DecidedLedger, sql: str = SAFE) -> Any:
    """Decide a proposal and chain its events except the verdict (the test chains its own)."""
    result = ledger.submit(CODEC.encode("ProposedAction", ledger.proposal(sql)), chain=False)
    for ev in result.audit:
        if ev["kind"] != "verdict":
            ledger.append(ev)
    return result


def test_an_honest_ledger_with_replays_verifies_and_is_bound(ledger: DecidedLedger) -> None:
    raw, allowed = ledger.propose(SAFE)
    ledger.record_outcome(allowed)
    ledger.propose(DROP)
    ledger.submit(raw)
    ledger.submit(raw)
    stats = BindingStats()
    assert verify(ledger, stats) == []
    assert (stats.bound_verdicts, stats.unbound_verdicts, stats.bound_outcomes) == (4, 0, 1)
    v = verdict_of(allowed)
    assert v["policy_sha256"] == policy_sha256(ledger.policy_bytes)
    assert v["proposal_sha256"] == record_sha256(CODEC.decode_as("ProposedAction", raw))


def test_a_verdict_paired_with_another_proposal_under_the_same_id_is_named(ledger: DecidedLedger) -> None:
    # The attacker holds a leaked processor key: the ledger's proposal is a DROP; the verdict is an
    # allow honestly made for a harmless proposal, moved to the DROP's action id and re-signed.
    _, harmless = ledger.propose(SAFE)
    drop = ledger.proposal(DROP)
    drop_raw = CODEC.encode("ProposedAction", drop)
    ledger.append(audit_event(AuditKind.ACTION, "default", drop["action_id"], drop_raw))
    forged = ledger.resign(verdict_of(harmless), action_id=drop["action_id"],
                           correlation_id=drop["correlation_id"])
    event = ledger.record_verdict(forged)
    found = [f for f in verify(ledger) if f.action_id == drop["action_id"]]
    assert [f.kind for f in found] == [FindingKind.VERDICT_PROPOSAL_MISMATCH]
    assert (found[0].partition, found[0].sequence, found[0].event_id) == (0, event["sequence"], event["event_id"])
    assert "another proposal under the same id" in found[0].message


def test_an_allow_for_an_action_the_ledger_never_saw_is_named(ledger: DecidedLedger) -> None:
    _, harmless = ledger.propose(SAFE)
    forged = ledger.resign(verdict_of(harmless), action_id="never-proposed")
    ledger.record_verdict(forged)
    assert kinds_for(verify(ledger), "never-proposed") == {FindingKind.VERDICT_PROPOSAL_MISMATCH}


def test_a_verdict_naming_an_unrecorded_or_other_policy_version_is_named(ledger: DecidedLedger) -> None:
    first, second, third = (undecided(ledger) for _ in range(3))
    a, b, c = (verdict_of(r)["action_id"] for r in (first, second, third))
    unrecorded = b"\x07" * 32
    ledger.record_verdict(ledger.resign(verdict_of(first), policy_sha256=unrecorded))
    ledger.record_verdict(ledger.resign(verdict_of(second), policy_version=2))
    ledger.record_verdict(verdict_of(third))
    found = verify(ledger)
    assert kinds_for(found, a) == {FindingKind.VERDICT_POLICY_MISMATCH}
    assert "no policy event" in next(f.message for f in found if f.action_id == a)
    assert kinds_for(found, b) == {FindingKind.VERDICT_POLICY_MISMATCH}
    assert "v2" in next(f.message for f in found if f.action_id == b)
    assert kinds_for(found, c) == set()


def test_a_policy_published_after_the_verdict_is_named(ledger: DecidedLedger) -> None:
    record = CODEC.decode_as("PolicySet", ledger.policy_bytes)
    later = CODEC.encode("PolicySet", {**record, "published_at": record["published_at"] + 10 * 3_600_000_000})
    ledger.append(audit_event(AuditKind.POLICY, "default", None, later))
    allowed = undecided(ledger)
    aid = verdict_of(allowed)["action_id"]
    ledger.record_verdict(ledger.resign(verdict_of(allowed), policy_sha256=policy_sha256(later),
                                        decided_at=verdict_of(allowed)["decided_at"] + 1))
    found = [f for f in verify(ledger) if f.action_id == aid and f.kind is FindingKind.VERDICT_POLICY_MISMATCH]
    assert len(found) == 1 and "published at" in found[0].message


def test_an_outcome_bound_to_another_verdict_is_named(ledger: DecidedLedger) -> None:
    _, first = ledger.propose(SAFE)
    _, second = ledger.propose(SAFE)
    aid = verdict_of(first)["action_id"]
    other_hash = record_sha256(verdict_of(second))
    rec = ledger.outcome_record(first)
    ledger.record_outcome(first, {**rec, "verdict_sha256": other_hash})
    found = [f for f in verify(ledger) if f.action_id == aid]
    assert [f.kind for f in found] == [FindingKind.OUTCOME_VERDICT_MISMATCH]
    assert "embeds" in found[0].message


def test_null_bindings_on_v2_records_are_findings(ledger: DecidedLedger) -> None:
    allowed = undecided(ledger)
    aid = verdict_of(allowed)["action_id"]
    unbound_verdict = ledger.resign(verdict_of(allowed), proposal_sha256=None, policy_sha256=None)
    ledger.record_verdict(unbound_verdict)
    rec = ledger.outcome_record(allowed)
    embedded = CODEC.encode("Verdict", unbound_verdict)
    ledger.record_outcome(allowed, {**rec, "verdict": embedded, "verdict_sha256": None})
    found = [f for f in verify(ledger) if f.action_id == aid]
    unbound = [f for f in found if f.kind is FindingKind.UNBOUND_RECORD]
    assert len(unbound) == 3  # the verdict's two hashes and the outcome's
    assert {f.kind for f in found} == {FindingKind.UNBOUND_RECORD}


def test_v1_records_verify_and_are_counted_unbound() -> None:
    b = LedgerBuilder(KEY)
    for _ in range(3):
        b.flow()
    stats = BindingStats()
    assert verify_ledger(b.events, [], RING, bindings=stats) == []
    assert (stats.unbound_verdicts, stats.unbound_outcomes, stats.bound_verdicts) == (3, 3, 0)


def test_a_second_allow_or_a_second_proposal_for_one_action_id_is_named(ledger: DecidedLedger) -> None:
    raw, allowed = ledger.propose(SAFE)
    aid = verdict_of(allowed)["action_id"]
    # a second allow, validly signed and bound to the right proposal and policy
    again = ledger.resign(verdict_of(allowed), decided_at=verdict_of(allowed)["decided_at"] + 5)
    event = ledger.record_verdict(again)
    second = ledger.append(audit_event(AuditKind.ACTION, "default", aid, raw))
    found = [f for f in verify(ledger) if f.action_id == aid]
    assert {(f.kind, f.sequence) for f in found} == {
        (FindingKind.DUPLICATE_DECISION, event["sequence"]), (FindingKind.DUPLICATE_PROPOSAL, second["sequence"])}


def test_one_verdict_chained_twice_under_two_event_ids_is_one_decision(ledger: DecidedLedger) -> None:
    # What the at-least-once ledger before the exactly-once stage could hold: the same bytes twice.
    ledger.propose(SAFE)
    verdict_event = next(e for e in ledger.events if e["kind"] == "verdict")
    ledger.append(audit_event(AuditKind.VERDICT, "default", verdict_event["action_id"], verdict_event["payload"]))
    assert verify(ledger) == []
