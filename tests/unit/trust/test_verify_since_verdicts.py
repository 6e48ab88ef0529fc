"""A ledger verified from an anchor (``verify --since``): an outcome in the window whose verdict
was chained before it is judged against that verdict, read as context; a verdict that is in
neither the window nor the context is still ``commit_without_allow`` (trust/verify/enforcement.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from schemas.codec import get_codec
from tests.factories.ledger import LedgerBuilder, outcome, proposed_action, unchained, verdict
from trust.keys import Keyring, SigningKey
from trust.verify import DecodedLedger, FindingKind, unanswered_actions, verify_ledger

K = FindingKind
KEY = SigningKey.generate()
RING = Keyring([KEY.public()])
CODEC = get_codec()


def _split(decision: str = "allow", *, key: SigningKey = KEY, verdict_for: str | None = None,
           decided_late: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, dict[int, Any]]:
    """Partition 0: a whole flow, then an action and its verdict, the anchor, then that
    action's committed outcome and another whole flow. Returns the events before the
    anchor, those from it (the window), the split action's id and the anchors.

    ``decision``/``key`` shape the verdict before the window; ``verdict_for`` makes it a
    verdict for another action; ``decided_late`` dates it after the outcome's commit. The
    outcome always embeds a validly signed allow for its own action.
    """
    b = LedgerBuilder(KEY)
    b.flow()
    aid = str(uuid.uuid4())
    b.append(unchained("action", CODEC.encode("ProposedAction", proposed_action(aid, b.tick())), b.clock, aid))
    decided = b.tick()
    committed = b.tick()
    ledger_verdict = verdict(verdict_for or aid, decision, committed + 5 if decided_late else decided, key)
    b.append(unchained("verdict", CODEC.encode("Verdict", ledger_verdict), decided, aid))
    anchor = len(b.events)
    embedded = ledger_verdict if (decision, key, verdict_for, decided_late) == ("allow", KEY, None, False) \
        else verdict(aid, "allow", decided, KEY)
    out = CODEC.encode("ActionOutcome", outcome(aid, committed, CODEC.encode("Verdict", embedded)))
    b.append(unchained("outcome", out, committed, aid))
    b.flow()
    before, window = b.events[:anchor], b.events[anchor:]
    return before, window, aid, {0: (anchor, before[-1]["hash"])}


def _context(before: list[dict[str, Any]], window: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the CLI reads: verdict events before the window for the window's unanswered outcomes."""
    wanted = set(unanswered_actions(DecodedLedger.build(window)))
    return [e for e in before if e["kind"] == "verdict" and e["action_id"] in wanted]


def _verify(window: list[dict[str, Any]], anchors: dict[int, Any],
            context: list[dict[str, Any]]) -> list[tuple[FindingKind, int | None, str | None]]:
    found = verify_ledger(window, [], RING, anchors=anchors, context_verdicts=context)
    return [(f.kind, f.sequence, f.action_id) for f in found]


def test_only_the_outcome_whose_verdict_lies_before_the_window_is_unanswered() -> None:
    before, window, aid, _ = _split()
    assert unanswered_actions(DecodedLedger.build(window)) == [aid]
    assert unanswered_actions(DecodedLedger.build(before + window)) == []


def test_without_the_earlier_verdict_the_window_alone_names_the_outcome() -> None:
    # What `verify --since` reported before it read context verdicts: the false finding.
    _, window, aid, anchors = _split()
    assert _verify(window, anchors, []) == [(K.COMMIT_WITHOUT_ALLOW, anchors[0][0], aid)]


def test_a_valid_allow_before_the_window_answers_the_outcome_and_is_not_reported() -> None:
    before, window, _, anchors = _split()
    context = _context(before, window)
    assert len(context) == 1
    assert _verify(window, anchors, context) == []


def test_a_deleted_verdict_is_still_commit_without_allow() -> None:
    # The verdict row is gone from the store: nothing to read before the window either.
    before, window, aid, anchors = _split()
    deleted = [e for e in before if e["kind"] != "verdict"]
    assert _context(deleted, window) == []
    assert _verify(window, anchors, []) == [(K.COMMIT_WITHOUT_ALLOW, anchors[0][0], aid)]


def test_a_forged_verdict_before_the_window_is_named_where_it_lies_and_answers_nothing() -> None:
    before, window, aid, anchors = _split(key=SigningKey.generate())
    context = _context(before, window)
    verdict_seq = context[0]["sequence"]
    found = verify_ledger(window, [], RING, anchors=anchors, context_verdicts=context)
    assert [(f.kind, f.sequence, f.action_id) for f in found] == [
        (K.FORGED_VERDICT, verdict_seq, aid),
        (K.COMMIT_WITHOUT_ALLOW, anchors[0][0], aid),
        (K.EMBEDDED_VERDICT_MISMATCH, anchors[0][0], aid),
    ]
    assert "before the verified window" in found[0].message


def test_an_undecodable_verdict_before_the_window_is_named_and_answers_nothing() -> None:
    before, window, _, anchors = _split()
    context = [dict(e, payload=b"\xc3\x01garbage") for e in _context(before, window)]
    found = verify_ledger(window, [], RING, anchors=anchors, context_verdicts=context)
    assert [(f.kind, f.sequence) for f in found] == [
        (K.UNDECODABLE_PAYLOAD, context[0]["sequence"]), (K.COMMIT_WITHOUT_ALLOW, anchors[0][0])]
    assert "before the verified window" in found[0].message


def test_a_block_before_the_window_is_commit_without_allow() -> None:
    before, window, aid, anchors = _split("block")
    assert _verify(window, anchors, _context(before, window)) == [
        (K.COMMIT_WITHOUT_ALLOW, anchors[0][0], aid), (K.EMBEDDED_VERDICT_MISMATCH, anchors[0][0], aid)]


def test_an_allow_for_another_action_stored_under_this_one_answers_nothing() -> None:
    # A genuine, validly signed allow of some other action, its row's action_id set to this one.
    before, window, aid, anchors = _split(verdict_for=str(uuid.uuid4()))
    context = _context(before, window)
    assert len(context) == 1
    assert _verify(window, anchors, context) == [(K.COMMIT_WITHOUT_ALLOW, anchors[0][0], aid)]


def test_an_allow_before_the_window_decided_after_the_commit_is_verdict_after_commit() -> None:
    before, window, aid, anchors = _split(decided_late=True)
    assert _verify(window, anchors, _context(before, window)) == [
        (K.VERDICT_AFTER_COMMIT, anchors[0][0], aid), (K.EMBEDDED_VERDICT_MISMATCH, anchors[0][0], aid)]


def test_context_events_are_not_chain_checked_and_other_kinds_are_ignored() -> None:
    # The context is outside the window: its hashes are not recomputed, and only verdicts count.
    before, window, _, anchors = _split()
    context = [dict(e, hash=b"\0" * 32) for e in _context(before, window)]
    assert _verify(window, anchors, [*context, before[0]]) == []
