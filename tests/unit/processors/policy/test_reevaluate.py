"""verify --decisions: every recorded verdict is re-decided under its recorded policy version; an
allow a leaked processor key signed is named, an honest ledger is not."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from processors.policy.reevaluate import Reevaluator
from schemas.codec import get_codec
from tests.factories.decided import DecidedLedger, now_us
from trust.bindings import record_sha256
from trust.keys import SigningKey
from trust.verify import DecodedLedger, FindingKind
from trust.verify.decisions import DecisionsReport, recheck_decisions

KEY = SigningKey.generate()
CODEC = get_codec()
SAFE = "UPDATE orders SET status = 'x' WHERE id = 1"
DROP = "DROP TABLE orders"


def recheck(ledger: DecidedLedger) -> DecisionsReport:
    return recheck_decisions(DecodedLedger.build(ledger.events), Reevaluator())


def verdict_of(result: Any) -> dict[str, Any]:
    assert result.verdict is not None
    return dict(result.verdict)


def test_an_honest_ledger_reproduces(tmp_path: Path) -> None:
    ledger = DecidedLedger(KEY, tmp_path)
    raw, _ = ledger.propose(SAFE)
    ledger.propose(DROP)
    ledger.propose("SELECT * FROM orders")  # a shadow rule matches
    ledger.submit(raw)  # a replay block
    report = recheck(ledger)
    assert report.findings == []
    assert report.checked == 4 and report.skipped == {}


def test_an_allow_signed_with_a_leaked_processor_key_is_named(tmp_path: Path) -> None:
    ledger = DecidedLedger(KEY, tmp_path)
    drop = ledger.proposal(DROP)
    raw = CODEC.encode("ProposedAction", drop)
    blocked = ledger.submit(raw, chain=False)
    ledger.append(blocked.audit[0])  # the proposal, as the processor recorded it
    assert blocked.audit[0]["kind"] == "action"
    # The attacker signs an allow with the real key, correctly bound to the proposal and policy,
    # with a plausible basis and no rules: every signature and binding check passes.
    forged = ledger.resign(verdict_of(blocked), decision="allow", basis="default", matched_rules=[],
                           reason="no enforced rule matched", proposal_sha256=record_sha256(drop))
    event = ledger.record_verdict(forged)
    report = recheck(ledger)
    assert [(f.kind, f.action_id, f.sequence) for f in report.findings] == [
        (FindingKind.IRREPRODUCIBLE_DECISION, drop["action_id"], event["sequence"])]
    assert "drop-or-truncate" in report.findings[0].message


def test_an_allow_on_a_basis_that_only_blocks_is_named(tmp_path: Path) -> None:
    ledger = DecidedLedger(KEY, tmp_path)
    raw, _ = ledger.propose(SAFE)
    replay = ledger.submit(raw, chain=False)
    ledger.append(replay.audit[0])
    ledger.record_verdict(ledger.resign(verdict_of(replay), decision="allow"))
    report = recheck(ledger)
    assert [f.kind for f in report.findings] == [FindingKind.IRREPRODUCIBLE_DECISION]
    assert "only ever blocks" in report.findings[0].message


def test_time_dependent_rules_are_evaluated_at_the_verdicts_decided_at(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks only after an instant between the two decisions: re-evaluated at "now", both would block.
    cutoff = now_us() + 60_000_000
    rfc3339 = datetime.fromtimestamp(cutoff / 1e6, UTC).isoformat().replace("+00:00", "Z")
    policy = f"""
name: timed
tenant: default
default: allow
on_error: block
rules:
  - id: after-cutoff
    when: now > timestamp("{rfc3339}")
    effect: block
"""
    ledger = DecidedLedger(KEY, tmp_path, policy_yaml=policy)
    clock = [cutoff - 1_000_000]  # the processor's clock, a second before the cutoff, then after it
    monkeypatch.setattr("processors.decider._now_us", lambda: clock[0])
    _, allowed = ledger.propose(SAFE)
    clock[0] = cutoff + 1_000_000
    _, blocked = ledger.propose(SAFE)
    assert (verdict_of(allowed)["decision"], verdict_of(blocked)["decision"]) == ("allow", "block")
    assert verdict_of(allowed)["decided_at"] == cutoff - 1_000_000
    report = recheck(ledger)
    assert report.findings == [] and report.checked == 2


def test_held_and_break_glass_verdicts_reproduce_as_the_decide_stage_holds_them(tmp_path: Path) -> None:
    ledger = DecidedLedger(KEY, tmp_path)
    customers = {"resource": "db/prod/customers"}
    _, no_reason = ledger.propose("DELETE FROM customers WHERE id = 1", **customers)
    _, pending = ledger.propose("DELETE FROM customers WHERE id = 2", justification="GDPR erasure", **customers)
    oncall = {"id": "bob", "roles": ["oncall"], "attributes": {}}
    _, glass = ledger.propose(DROP, actor=oncall, break_glass=True, justification="incident 42")
    assert [(verdict_of(r)["decision"], verdict_of(r)["basis"]) for r in (no_reason, pending, glass)] == [
        ("block", "rule"), ("review", "rule"), ("allow", "break_glass")]
    report = recheck(ledger)
    assert report.findings == [] and report.checked == 3
    # the same break-glass allow for an actor without the role is not what the policy produces
    forged = ledger.resign(verdict_of(glass), action_id=verdict_of(no_reason)["action_id"],
                           proposal_sha256=verdict_of(no_reason)["proposal_sha256"])
    ledger.record_verdict(forged)
    assert [f.kind for f in recheck(ledger).findings] == [FindingKind.IRREPRODUCIBLE_DECISION]
