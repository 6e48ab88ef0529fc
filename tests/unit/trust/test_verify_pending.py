"""A committed outcome whose verdict is still on its way through audit-intake is pending, not a
finding, for the verdict grace; nothing else is (trust/verify/enforcement.py)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from schemas.codec import get_codec
from tests.factories.decided import DecidedLedger, now_us
from tests.factories.ledger import T0, LedgerBuilder, outcome, unchained, verdict
from trust.keys import Keyring, SigningKey
from trust.verify import FindingKind, PendingVerdicts, VerdictRule, reconcile_enforcement, verify_ledger
from trust.verify.enforcement import FUTURE_SKEW_US

K = FindingKind
KEY = SigningKey.generate()
RING = Keyring([KEY.public()])
CODEC = get_codec()
GRACE = 30_000_000
NOW = T0 + 3_600_000_000


def _outcome_only(b: LedgerBuilder, chained_at: int, *, embedded: str = "allow",
                  recorded_at: int | None = None) -> str:
    """A committed outcome chained at ``chained_at`` with no verdict in the ledger; it embeds a
    validly signed allow (``embedded="allow"``), a block, a verdict signed by another key
    (``"forged"``), or nothing (``"none"``)."""
    aid = str(uuid.uuid4())
    at = chained_at if recorded_at is None else recorded_at
    emb: bytes | None = None
    if embedded != "none":
        decision = "block" if embedded == "block" else "allow"
        key = SigningKey.generate() if embedded == "forged" else KEY
        emb = CODEC.encode("Verdict", verdict(aid, decision, at - 1_000, key))
    b.append(unchained("outcome", CODEC.encode("ActionOutcome", outcome(aid, at, emb)), chained_at, aid))
    return aid


def _judge(b: LedgerBuilder, rule: VerdictRule | None) -> tuple[list[tuple[FindingKind, str | None]], list[str]]:
    pending = PendingVerdicts()
    found = reconcile_enforcement(b.events, RING, rule=rule, pending=pending)
    return [(f.kind, f.action_id) for f in found], pending.action_ids


def test_an_outcome_younger_than_the_grace_is_pending_not_a_finding() -> None:
    b = LedgerBuilder(KEY)
    b.flow()
    aid = _outcome_only(b, NOW - GRACE)  # exactly at the edge of the grace: still young
    assert _judge(b, VerdictRule(GRACE, NOW)) == ([], [aid])


def test_an_outcome_older_than_the_grace_is_commit_without_allow() -> None:
    b = LedgerBuilder(KEY)
    aid = _outcome_only(b, NOW - GRACE - 1)
    pending = PendingVerdicts()
    (found,) = reconcile_enforcement(b.events, RING, rule=VerdictRule(GRACE, NOW), pending=pending)
    assert (found.kind, found.action_id, pending.action_ids) == (K.COMMIT_WITHOUT_ALLOW, aid, [])
    assert "more than the verdict grace of 30s ago" in found.message


def test_grace_zero_and_no_rule_are_strict() -> None:
    b = LedgerBuilder(KEY)
    aid = _outcome_only(b, NOW)
    assert _judge(b, VerdictRule(0, NOW)) == ([(K.COMMIT_WITHOUT_ALLOW, aid)], [])
    assert _judge(b, None) == ([(K.COMMIT_WITHOUT_ALLOW, aid)], [])


def test_the_verdict_landing_later_clears_the_pending_outcome() -> None:
    b = LedgerBuilder(KEY)
    aid = _outcome_only(b, NOW)
    assert _judge(b, VerdictRule(GRACE, NOW)) == ([], [aid])
    out = CODEC.decode_as("ActionOutcome", b.events[-1]["payload"])
    b.append(unchained("verdict", out["verdict"], NOW + 5, aid))  # the verdict event arrives
    assert _judge(b, VerdictRule(GRACE, NOW + 10)) == ([], [])


@pytest.mark.parametrize(("ledger_verdict", "expected"), [
    ("block", {K.COMMIT_WITHOUT_ALLOW, K.EMBEDDED_VERDICT_MISMATCH}),
    ("forged", {K.FORGED_VERDICT, K.COMMIT_WITHOUT_ALLOW, K.EMBEDDED_VERDICT_MISMATCH}),
    ("undecodable", {K.UNDECODABLE_PAYLOAD, K.COMMIT_WITHOUT_ALLOW}),
])
def test_any_verdict_in_the_ledger_is_judged_at_once(ledger_verdict: str, expected: set[FindingKind]) -> None:
    # Pending never hides a wrong verdict: a block, a forgery, or garbage under the action's id.
    b = LedgerBuilder(KEY)
    aid = _outcome_only(b, NOW)
    if ledger_verdict == "undecodable":
        payload = b"\xc3\x01garbage"
    else:
        key = SigningKey.generate() if ledger_verdict == "forged" else KEY
        decision = "block" if ledger_verdict == "block" else "allow"
        payload = CODEC.encode("Verdict", verdict(aid, decision, NOW - 2_000, key))
    b.append(unchained("verdict", payload, NOW, aid))
    found, pending = _judge(b, VerdictRule(GRACE, NOW))
    assert pending == []
    assert {k for k, _ in found} == expected
    assert (K.COMMIT_WITHOUT_ALLOW, aid) in found


@pytest.mark.parametrize(("embedded", "extra"), [
    ("none", K.EMBEDDED_VERDICT_MISSING),
    ("forged", K.EMBEDDED_VERDICT_FORGED),
    ("block", None),
])
def test_a_young_outcome_without_a_valid_embedded_allow_is_judged_at_once(
        embedded: str, extra: FindingKind | None) -> None:
    # The outcome itself must show it ran under an allow; only the ledger's copy may be late.
    b = LedgerBuilder(KEY)
    aid = _outcome_only(b, NOW, embedded=embedded)
    found, pending = _judge(b, VerdictRule(GRACE, NOW))
    assert pending == []
    assert sorted(k for k, _ in found) == sorted(k for k in (K.COMMIT_WITHOUT_ALLOW, extra) if k is not None)
    assert all(a == aid for _, a in found)


def test_an_embedded_allow_decided_after_the_commit_is_judged_at_once() -> None:
    b = LedgerBuilder(KEY)
    aid = str(uuid.uuid4())
    late = CODEC.encode("Verdict", verdict(aid, "allow", NOW + 1, KEY))
    b.append(unchained("outcome", CODEC.encode("ActionOutcome", outcome(aid, NOW, late)), NOW, aid))
    assert _judge(b, VerdictRule(GRACE, NOW)) == ([(K.COMMIT_WITHOUT_ALLOW, aid)], [])


def test_an_inserted_outcome_dated_in_the_future_is_not_pending_forever() -> None:
    # An attacker chains a committed outcome with no verdict (deleting the verdict, or with an
    # allow it obtained for another purpose) and dates it ahead, to stay "young" at every run.
    b = LedgerBuilder(KEY)
    far = NOW + 365 * 86_400_000_000
    aid = _outcome_only(b, far)
    pending = PendingVerdicts()
    (found,) = reconcile_enforcement(b.events, RING, rule=VerdictRule(GRACE, NOW), pending=pending)
    assert (found.kind, found.action_id, pending.action_ids) == (K.COMMIT_WITHOUT_ALLOW, aid, [])
    assert "future timestamp earns no verdict grace" in found.message
    # Just beyond the skew allowance is already a finding; within it (clocks disagree) it waits.
    edge = LedgerBuilder(KEY)
    beyond = _outcome_only(edge, NOW + FUTURE_SKEW_US + 1)
    within = _outcome_only(edge, NOW + FUTURE_SKEW_US)
    assert _judge(edge, VerdictRule(GRACE, NOW)) == ([(K.COMMIT_WITHOUT_ALLOW, beyond)], [within])
    # Whatever date a forger picks, the outcome is a finding from that date + grace on.
    later = VerdictRule(GRACE, NOW + FUTURE_SKEW_US + 1 + GRACE + 1)
    assert _judge(edge, later) == ([(K.COMMIT_WITHOUT_ALLOW, beyond), (K.COMMIT_WITHOUT_ALLOW, within)], [])


def test_an_old_spooled_outcome_chained_just_now_waits_by_its_chaining_time() -> None:
    # The grace runs from when the ledger stage chained the outcome, not from the Guard's clock.
    b = LedgerBuilder(KEY)
    aid = _outcome_only(b, NOW, recorded_at=NOW - 86_400_000_000)
    assert _judge(b, VerdictRule(GRACE, NOW)) == ([], [aid])


def test_a_real_in_flight_action_verifies_with_bindings_and_lands_clean(tmp_path: Path) -> None:
    # The real decide stage and a Guard-built v2 outcome; the verdict event is not chained yet.
    ledger = DecidedLedger(KEY, tmp_path)
    result = ledger.submit(CODEC.encode("ProposedAction", ledger.proposal()), chain=False)
    held: list[dict[str, Any]] = []
    for ev in result.audit:
        if ev["kind"] == "verdict":
            held.append(ev)
        else:
            ledger.append(ev)
    ledger.record_outcome(result)
    aid = result.verdict["action_id"] if result.verdict is not None else ""
    pending = PendingVerdicts()
    assert verify_ledger(ledger.events, [], RING, verdicts=VerdictRule(GRACE, now_us()), pending=pending) == []
    assert pending.action_ids == [aid]
    strict = verify_ledger(ledger.events, [], RING)  # bindings do not complain about the absence
    assert [(f.kind, f.action_id) for f in strict] == [(K.COMMIT_WITHOUT_ALLOW, aid)]
    for ev in held:
        ledger.append(ev)
    pending = PendingVerdicts()
    assert verify_ledger(ledger.events, [], RING, verdicts=VerdictRule(GRACE, now_us()), pending=pending) == []
    assert pending.action_ids == []
