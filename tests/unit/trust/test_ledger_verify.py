from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import get_codec
from tests.factories.ledger import LedgerBuilder, outcome, unchained, verdict
from trust.chain import Chain, event_hash
from trust.checkpoints import build_checkpoint
from trust.keys import Keyring, SigningKey
from trust.verify import (
    Finding,
    FindingKind,
    reconcile_enforcement,
    verify_chain,
    verify_ledger,
)

KEY = SigningKey.generate()
RING = Keyring([KEY.public()])
K = FindingKind
Event = dict[str, Any]


def _ledger(flows: int = 6) -> LedgerBuilder:
    b = LedgerBuilder(KEY)
    for i in range(flows):
        b.flow(0)
        if i % 2:
            b.flow(1)
    return b


def _rehash(ev: Event) -> Event:
    return dict(ev, hash=event_hash(ev))


def _chain_only(events: list[Event], **kw: Any) -> list[Finding]:
    return verify_chain(events, **kw)[0]


def _p0(b: LedgerBuilder) -> list[Event]:
    return [dict(e) for e in b.partition(0)]


def test_clean_ledger_verifies_in_any_order() -> None:
    b = _ledger()
    cps = [
        build_checkpoint(b.partition(0)[:7], KEY, "p", 1),
        build_checkpoint(b.partition(0)[7:], KEY, "p", 2),
        build_checkpoint(b.partition(1), KEY, "p", 3),
    ]
    shuffled = list(b.events)
    random.Random(4).shuffle(shuffled)
    assert verify_ledger(shuffled, cps, RING) == []
    assert verify_ledger([], [], RING) == []


def test_byte_identical_duplicates_are_collapsed() -> None:
    b = _ledger()
    assert verify_ledger(b.events + [dict(e) for e in b.events[:5]], [], RING) == []


def test_modified_content_names_the_row() -> None:
    evs = _p0(_ledger())
    evs[7]["payload"] = evs[7]["payload"][:-1] + b"!"
    findings = _chain_only(evs)
    assert [(f.kind, f.sequence, f.event_id) for f in findings] == [
        (K.MODIFIED_RECORD, 7, evs[7]["event_id"])
    ]


@pytest.mark.parametrize("field", ["hash", "prev_hash"])
def test_modified_chain_fields_name_the_row(field: str) -> None:
    evs = _p0(_ledger())
    evs[4][field] = bytes(32)
    first = _chain_only(evs)[0]
    assert (first.kind, first.sequence, first.event_id) == (
        K.MODIFIED_RECORD,
        4,
        evs[4]["event_id"],
    )


def test_modified_and_rehashed_row_is_named_through_its_successor() -> None:
    evs = _p0(_ledger())
    evs[6] = _rehash(dict(evs[6], tenant="evil"))
    findings = _chain_only(evs)
    assert [(f.kind, f.sequence, f.event_id) for f in findings] == [
        (K.MODIFIED_RECORD, 6, evs[6]["event_id"])
    ]
    assert "re-hashed" in findings[0].message


def test_deleted_record_is_a_gap() -> None:
    evs = _p0(_ledger())
    del evs[5]
    findings = _chain_only(evs)
    assert [(f.kind, f.sequence, f.event_id) for f in findings] == [(K.DELETED_RECORD, 5, None)]


def test_deleted_first_record() -> None:
    evs = _p0(_ledger())[1:]
    assert [(f.kind, f.sequence) for f in _chain_only(evs)] == [(K.DELETED_RECORD, 0)]


def test_deletion_hidden_by_renumbering_is_still_a_deletion() -> None:
    evs = _p0(_ledger())
    del evs[5]
    for e in evs[5:]:
        e["sequence"] -= 1
    findings = _chain_only(evs)
    assert [(f.kind, f.sequence) for f in findings] == [(K.DELETED_RECORD, 5)]
    assert "renumbered" in findings[0].message


def _forged_at(evs: list[Event], seq: int) -> Event:
    """A self-consistent row at ``seq`` that links to the genuine row before it."""
    template = dict(evs[seq], event_id=str(uuid.uuid4()), detail="forged")
    template["prev_hash"] = evs[seq - 1]["hash"]
    return _rehash(template)


def test_inserted_row_with_duplicate_sequence() -> None:
    evs = _p0(_ledger())
    forged = _forged_at(evs, 7)
    findings = _chain_only([*evs, forged])
    assert [(f.kind, f.sequence, f.event_id) for f in findings] == [
        (K.INSERTED_RECORD, 7, forged["event_id"])
    ]
    # Storage order does not decide which row is genuine.
    assert _chain_only([forged, *evs]) == findings


def test_insertion_hidden_by_renumbering_is_still_an_insertion() -> None:
    evs = _p0(_ledger())
    forged = _forged_at(evs, 7)
    for e in evs[7:]:
        e["sequence"] += 1
    findings = _chain_only([*evs, forged])
    assert [(f.kind, f.sequence, f.event_id) for f in findings] == [
        (K.INSERTED_RECORD, 7, forged["event_id"])
    ]


def test_self_consistent_replacement_linked_from_nowhere_is_modified() -> None:
    evs = _p0(_ledger())
    evs[5] = _rehash(dict(evs[5], event_id="replacement", prev_hash=b"\7" * 32))
    findings = _chain_only(evs)
    # Row 6 still commits to the genuine row 5's hash, so row 5 is the odd one out; the
    # link break 5 -> 6 is explained by it and not reported again.
    assert [(f.kind, f.sequence, f.event_id) for f in findings] == [(K.MODIFIED_RECORD, 5, "replacement")]


def test_tail_link_break_names_the_earlier_candidate_honestly() -> None:
    evs = _p0(_ledger())
    n = len(evs)
    tail = _rehash(dict(evs[-1], event_id="tail", sequence=n, prev_hash=b"\7" * 32))
    findings = _chain_only([*evs, tail])
    assert [(f.kind, f.sequence) for f in findings] == [(K.MODIFIED_RECORD, n - 1)]
    assert f"record {n} was" in findings[0].message  # the alternative is spelled out


@pytest.mark.parametrize(("a", "b"), [(5, 6), (3, 9), (0, 1)])
def test_swapped_sequence_numbers_are_reordering(a: int, b: int) -> None:
    evs = _p0(_ledger())
    evs[a]["sequence"], evs[b]["sequence"] = b, a
    findings = _chain_only(evs)
    assert [(f.kind, f.sequence) for f in findings] == [
        (K.REORDERED_RECORDS, a),
        (K.REORDERED_RECORDS, b),
    ]
    assert findings[0].event_id == evs[b]["event_id"]  # the row now stored at a
    assert f"chained at sequence {b}" in findings[0].message


def test_swapped_content_with_chain_fields_left_in_place_is_reordering() -> None:
    evs = _p0(_ledger())
    chain_fields = ("sequence", "prev_hash", "hash")
    x = {k: evs[4][k] for k in chain_fields}
    y = {k: evs[8][k] for k in chain_fields}
    evs[4], evs[8] = dict(evs[8], **x), dict(evs[4], **y)
    findings = _chain_only(evs)
    assert [(f.kind, f.sequence) for f in findings] == [
        (K.REORDERED_RECORDS, 4),
        (K.REORDERED_RECORDS, 8),
    ]


def test_storage_positions_reveal_rows_stored_out_of_order() -> None:
    evs = _p0(_ledger())
    for pos, e in enumerate(evs):
        e["_pos"] = pos
    assert _chain_only(evs, position_key="_pos") == []
    evs[3]["_pos"] = 100  # re-inserted later (deleted and written back)
    findings = _chain_only(evs, position_key="_pos")
    assert [(f.kind, f.sequence) for f in findings] == [(K.REORDERED_RECORDS, 3)]


def test_malformed_rows_and_anchors() -> None:
    evs = _p0(_ledger())
    junk = {"event_id": "junk", "ledger_partition": 0}
    findings = _chain_only([*evs, junk])
    assert [(f.kind, f.event_id) for f in findings] == [(K.MODIFIED_RECORD, "junk")]
    pruned = evs[4:]
    assert [f.kind for f in _chain_only(pruned)] == [K.DELETED_RECORD]
    anchor = {0: (4, evs[3]["hash"])}
    assert _chain_only(pruned, anchors=anchor) == []
    wrong = {0: (4, b"\1" * 32)}
    assert [f.kind for f in _chain_only(pruned, anchors=wrong)] == [K.MODIFIED_RECORD]


def test_first_finding_per_partition_is_reported_per_partition() -> None:
    b = _ledger()
    evs = [dict(e) for e in b.events]
    p1 = [e for e in evs if e["ledger_partition"] == 1]
    p1[2]["detail"] = "tampered"
    findings = _chain_only(evs)
    assert [(f.kind, f.partition, f.sequence) for f in findings] == [(K.MODIFIED_RECORD, 1, 2)]


# --- checkpoints ----------------------------------------------------------------------


def _with_checkpoints(b: LedgerBuilder) -> tuple[list[Event], list[dict[str, Any]]]:
    evs = _p0(b)
    return evs, [
        build_checkpoint(evs[:8], KEY, "p", 10),
        build_checkpoint(evs[8:], KEY, "p", 20),
    ]


def test_truncated_tail_beyond_the_stored_head() -> None:
    evs, cps = _with_checkpoints(_ledger())
    stored = evs[:-3]
    findings = verify_ledger(stored, cps, RING, enforcement=False)
    assert [(f.kind, f.sequence) for f in findings] == [(K.TRUNCATED_TAIL, len(stored))]
    assert findings[0].checkpoint_id == cps[1]["checkpoint_id"]


def test_whole_partition_missing_is_truncation() -> None:
    _, cps = _with_checkpoints(_ledger())
    findings = verify_ledger([], cps, RING)
    assert [(f.kind, f.partition, f.sequence) for f in findings] == [(K.TRUNCATED_TAIL, 0, 0)]


def test_truncated_then_reappended_tail_mismatches_the_head() -> None:
    evs, cps = _with_checkpoints(_ledger())
    kept = evs[:-4]
    chain = Chain()
    chain.resume_from(kept[-1])
    for e in evs[-4:] + evs[-2:]:  # different content, longer than before
        kept.append(chain.append(dict(e, detail="rewritten"), 0))
    findings = verify_ledger(kept, cps, RING, enforcement=False)
    last = cps[1]["last_sequence"]
    # The re-appended tail reuses the last two event ids: each is chained twice as well.
    repeats = [(K.DUPLICATE_EVENT, e["sequence"]) for e in kept[-2:]]
    assert [(f.kind, f.sequence) for f in findings] == [(K.TRUNCATED_TAIL, last), *repeats]


def test_forged_checkpoint() -> None:
    evs, cps = _with_checkpoints(_ledger())
    other = SigningKey.generate()
    forged = build_checkpoint(evs[:8], other, "p", 10)
    bumped = dict(cps[0], last_sequence=cps[0]["last_sequence"] + 1)
    findings = verify_ledger(evs, [forged, bumped, cps[1]], RING, enforcement=False)
    assert [(f.kind, f.sequence) for f in findings] == [
        (K.FORGED_CHECKPOINT, 0),
        (K.FORGED_CHECKPOINT, 0),
    ]


def test_rehashed_history_is_caught_by_the_checkpoint_only() -> None:
    evs, cps = _with_checkpoints(_ledger())
    rewritten = evs[:3]
    chain = Chain()
    chain.resume_from(rewritten[-1])
    for e in evs[3:]:
        rewritten.append(chain.append(dict(e, tenant="evil"), 0))
    assert _chain_only(rewritten) == []  # a consistent re-chain fools the chain alone
    findings = verify_ledger(rewritten, cps, RING, enforcement=False)
    assert [(f.kind, f.sequence, f.checkpoint_id) for f in findings] == [
        (K.ALTERED_CHECKPOINT, 0, cps[0]["checkpoint_id"]),
        (K.TRUNCATED_TAIL, cps[1]["last_sequence"], cps[1]["checkpoint_id"]),
    ]
    assert findings[0].event_id == evs[0]["event_id"]


def test_content_modification_does_not_alter_the_checkpoint_root() -> None:
    evs, cps = _with_checkpoints(_ledger())
    evs[2]["payload"] = b"x"
    findings = verify_ledger(evs, cps, RING, enforcement=False)
    assert [(f.kind, f.sequence) for f in findings] == [(K.MODIFIED_RECORD, 2)]


# --- enforcement ----------------------------------------------------------------------


def _flow_events(
    b: LedgerBuilder,
    *,
    decision: str = "allow",
    ledger_key: SigningKey | None = KEY,
    embedded: bytes | str | None = "same",
    decided_delta: int = -1000,
) -> str:
    codec = get_codec()
    aid = str(uuid.uuid4())
    t = b.tick()
    v = verdict(aid, decision, t + 1000 + decided_delta, ledger_key or KEY)
    v_bytes = codec.encode("Verdict", v)
    if ledger_key is not None:
        b.append(unchained("verdict", v_bytes, t, aid))
    emb = v_bytes if embedded == "same" else embedded
    assert not isinstance(emb, str)
    b.append(unchained("outcome", codec.encode("ActionOutcome", outcome(aid, t + 1000, emb)), t, aid))
    return aid


def _enf(b: LedgerBuilder) -> list[tuple[FindingKind, str | None]]:
    return [(f.kind, f.action_id) for f in reconcile_enforcement(b.events, RING)]


def test_clean_flows_have_no_enforcement_findings() -> None:
    b = _ledger()
    b.flow(0, decision="block", commit=False)
    _flow_events(b)
    assert _enf(b) == []


def test_commit_under_a_block_verdict() -> None:
    b = _ledger()
    aid = _flow_events(b, decision="block")
    assert _enf(b) == [(K.COMMIT_WITHOUT_ALLOW, aid)]


def test_commit_with_no_verdict_in_the_ledger() -> None:
    b = _ledger()
    codec = get_codec()
    aid = str(uuid.uuid4())
    v = codec.encode("Verdict", verdict(aid, "allow", 1, KEY))
    b.append(unchained("outcome", codec.encode("ActionOutcome", outcome(aid, 2, v)), 2, aid))
    assert _enf(b) == [(K.COMMIT_WITHOUT_ALLOW, aid)]


def test_verdict_issued_after_the_commit() -> None:
    b = _ledger()
    aid = _flow_events(b, decided_delta=+5)
    assert _enf(b) == [(K.VERDICT_AFTER_COMMIT, aid)]


def test_embedded_verdict_for_another_action() -> None:
    b = _ledger()
    other = get_codec().encode("Verdict", verdict("someone-else", "allow", 1, KEY))
    aid = _flow_events(b, embedded=other)
    assert _enf(b) == [(K.VERDICT_FOR_OTHER_ACTION, aid)]


def test_embedded_verdict_signed_by_an_unknown_key() -> None:
    b = _ledger()
    codec = get_codec()
    aid = str(uuid.uuid4())
    good = verdict(aid, "allow", 10, KEY)
    forged = verdict(aid, "allow", 10, SigningKey.generate())
    b.append(unchained("verdict", codec.encode("Verdict", good), 10, aid))
    out = outcome(aid, 20, codec.encode("Verdict", forged))
    b.append(unchained("outcome", codec.encode("ActionOutcome", out), 20, aid))
    assert _enf(b) == [(K.EMBEDDED_VERDICT_FORGED, aid)]


def test_embedded_verdict_differs_from_the_ledger_verdict() -> None:
    b = _ledger()
    codec = get_codec()
    aid = str(uuid.uuid4())
    in_ledger = verdict(aid, "allow", 10, KEY)
    embedded = verdict(aid, "allow", 11, KEY)  # validly signed, but not the one recorded
    b.append(unchained("verdict", codec.encode("Verdict", in_ledger), 10, aid))
    out = outcome(aid, 20, codec.encode("Verdict", embedded))
    b.append(unchained("outcome", codec.encode("ActionOutcome", out), 20, aid))
    assert _enf(b) == [(K.EMBEDDED_VERDICT_MISMATCH, aid)]


def test_forged_ledger_verdict_does_not_count_as_an_allow() -> None:
    b = _ledger()
    impostor = SigningKey.generate()
    aid = _flow_events(b, ledger_key=None)  # no verdict recorded ...
    codec = get_codec()
    fake = verdict(aid, "allow", 1, impostor)  # ... then a forged one is slipped in
    b.append(unchained("verdict", codec.encode("Verdict", fake), 1, aid))
    kinds = _enf(b)
    assert (K.FORGED_VERDICT, aid) in kinds
    assert (K.COMMIT_WITHOUT_ALLOW, aid) in kinds


def test_missing_embedded_verdict_and_undecodable_payload() -> None:
    b = _ledger()
    aid = _flow_events(b, embedded=None)
    b.append(unchained("verdict", b"\xc3\x01garbage", 1, "x"))
    kinds = [k for k, _ in _enf(b)]
    assert sorted(kinds) == sorted([K.EMBEDDED_VERDICT_MISSING, K.UNDECODABLE_PAYLOAD])
    assert (K.EMBEDDED_VERDICT_MISSING, aid) in _enf(b)


def test_failed_outcomes_need_no_allow() -> None:
    b = _ledger()
    codec = get_codec()
    aid = str(uuid.uuid4())
    out = outcome(aid, 5, None, status="failed")
    b.append(unchained("outcome", codec.encode("ActionOutcome", out), 5, aid))
    assert _enf(b) == []


def test_verify_ledger_combines_everything_sorted() -> None:
    b = _ledger()
    aid = _flow_events(b, decision="block")
    evs = [dict(e) for e in b.events]
    p0 = [e for e in evs if e["ledger_partition"] == 0]
    p0[1]["detail"] = "x"
    findings = verify_ledger(evs, [], RING)
    assert findings[0].kind is K.MODIFIED_RECORD and findings[0].sequence == 1
    assert (K.COMMIT_WITHOUT_ALLOW, aid) in [(f.kind, f.action_id) for f in findings]
    assert findings == sorted(findings, key=Finding.sort_key)


# --- property: any single-field tampering is found, at the tampered row ----------------

_BASE = _p0(_ledger(5))
_MUTABLE = [
    "event_id",
    "kind",
    "recorded_at",
    "tenant",
    "action_id",
    "payload",
    "detail",
    "prev_hash",
    "hash",
]


@settings(max_examples=120, deadline=None)
@given(st.integers(0, len(_BASE) - 1), st.sampled_from(_MUTABLE), st.booleans(), st.data())
def test_any_single_field_change_is_found_at_that_row(
    index: int, field: str, rehash: bool, data: st.DataObject
) -> None:
    evs = [dict(e) for e in _BASE]
    value = evs[index][field]
    new: Any
    if isinstance(value, bytes):
        new = data.draw(st.binary(min_size=len(value), max_size=len(value) + 1).filter(lambda v: v != value))
    elif isinstance(value, int):
        new = value + data.draw(st.integers(1, 10**6))
    elif field == "kind":
        new = data.draw(st.sampled_from(["policy", "security", "dead_letter"]))
    else:
        new = data.draw(st.text(max_size=20).filter(lambda v: v != value))
    evs[index][field] = new
    if rehash and field != "hash":
        evs[index] = _rehash(evs[index])
    findings = _chain_only(evs)
    if rehash and field != "prev_hash" and index == len(evs) - 1 and not findings:
        # A re-hashed head is a valid chain: by design only a checkpoint catches it.
        cp = build_checkpoint(_BASE, KEY, "p", 1)
        assert verify_ledger(evs, [cp], RING, enforcement=False)[0].sequence == index
        return
    assert findings, "tampering went unnoticed"
    first = findings[0]
    if rehash and field != "hash" and index >= len(evs) - 2:
        # At the tail nothing arbitrates between "the last row was re-hashed" and "the
        # one before it was": the earlier candidate is named (only a checkpoint can tell).
        assert first.sequence in (index - 1, index)
        return
    assert first.sequence == index
    assert first.kind in (K.MODIFIED_RECORD, K.INSERTED_RECORD)
