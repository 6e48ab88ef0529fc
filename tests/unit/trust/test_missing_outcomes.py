"""``outcome_missing``: an old allow with no outcome is named; nothing else is."""

from __future__ import annotations

from tests.factories.ledger import T0, LedgerBuilder
from trust.keys import Keyring, SigningKey
from trust.verify import FindingKind, OutcomeRule, verify_ledger
from trust.verify.outcomes import missing_outcomes

HOUR_US = 3_600_000_000


def _ledger() -> tuple[LedgerBuilder, SigningKey]:
    key = SigningKey.generate()
    return LedgerBuilder(key), key


def test_an_old_allow_without_an_outcome_is_named_at_its_verdict() -> None:
    ledger, key = _ledger()
    done = ledger.flow(commit=True)
    lost = ledger.flow(commit=False)
    found = missing_outcomes(ledger.events, Keyring([key.public()]), OutcomeRule(HOUR_US, T0 + 2 * HOUR_US))
    assert [(f.kind, f.action_id) for f in found] == [(FindingKind.OUTCOME_MISSING, lost)]
    verdict = next(e for e in ledger.events if e["action_id"] == lost and e["kind"] == "verdict")
    assert (found[0].partition, found[0].sequence, found[0].event_id) == (0, verdict["sequence"], verdict["event_id"])
    assert done not in {f.action_id for f in found}


def test_within_the_grace_a_block_or_a_forged_allow_is_not_named() -> None:
    ledger, key = _ledger()
    ledger.flow(commit=False)
    ring = Keyring([key.public()])
    assert missing_outcomes(ledger.events, ring, OutcomeRule(HOUR_US, T0 + HOUR_US // 2)) == []  # still in grace
    blocked, _ = _ledger()
    blocked.key = key
    blocked.flow(decision="block", commit=False)
    assert missing_outcomes(blocked.events, ring, OutcomeRule(HOUR_US, T0 + 2 * HOUR_US)) == []
    forged, _ = _ledger()
    forged.flow(commit=False, verdict_key=SigningKey.generate())  # the enforcement pass names it
    assert missing_outcomes(forged.events, ring, OutcomeRule(HOUR_US, T0 + 2 * HOUR_US)) == []


def test_verify_reports_it_only_when_asked() -> None:
    ledger, key = _ledger()
    ledger.flow(commit=False)
    ring = Keyring([key.public()])
    assert [f for f in verify_ledger(ledger.events, [], ring) if f.kind is FindingKind.OUTCOME_MISSING] == []
    kinds = {f.kind for f in verify_ledger(ledger.events, [], ring, outcomes=OutcomeRule(HOUR_US, T0 + 2 * HOUR_US))}
    assert FindingKind.OUTCOME_MISSING in kinds
