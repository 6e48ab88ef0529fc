"""Several stored copies of one checkpoint: every copy is checked, whatever order they come in.

An attacker who can write the checkpoints store adds a copy of a genuine checkpoint that
keeps its ``checkpoint_id`` and ``signature`` but edits another field (a lowered
``last_sequence``, another root). The edited copy must be a ``forged_checkpoint`` naming
what differs, never skipped, and the genuine copy must still cover its events — before or
after the edited one. Identical copies (redelivery) and the witnesses' cosigned copies are
legitimate and report nothing. A whole-log copy that edits only ``head_hash`` (which the note
does not sign) is still named, by the stored chain that reproduces the signed root.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories.ledger import T0, LedgerBuilder
from trust.checkpoints import build_checkpoint
from trust.cosignature import CosignatureV1Signer
from trust.keys import Keyring, SigningKey
from trust.note import NoteSignature, parse_note
from trust.partition_log import PartitionLog
from trust.tlog_witness import with_cosignatures
from trust.verify import CoverageRule, Finding, FindingKind, verify_ledger

KEY = SigningKey.generate()
RING = Keyring([KEY.public()])
W1 = CosignatureV1Signer("witness.example/w1", SigningKey.generate())
K = FindingKind
LATE = CoverageRule(5_000_000, T0 + 10**12)
"""Judged long after every event was recorded: an uncovered event is a finding."""


def _events(flows: int = 6) -> list[dict[str, Any]]:
    b = LedgerBuilder(KEY)
    for _ in range(flows):
        b.flow(0)
    return b.events


def _log_checkpoint(events: list[dict[str, Any]]) -> dict[str, Any]:
    log = PartitionLog(0)
    for ev in events:
        log.append(ev["hash"])
    return log.checkpoint(KEY, "proc-1", T0 + 5)


def _cosign(cp: dict[str, Any]) -> dict[str, Any]:
    text = parse_note(bytes(cp["signature"]).decode()).text.encode()
    return with_cosignatures(cp, [W1.cosign(text, 1_700_000_000)])


def _verify(events: list[dict[str, Any]], cps: list[dict[str, Any]], **kw: Any) -> list[Finding]:
    return verify_ledger(events, cps, RING, coverage=LATE, enforcement=False, **kw)


def _kinds(findings: list[Finding]) -> list[tuple[FindingKind, int | None, str | None]]:
    return [(f.kind, f.sequence, f.checkpoint_id) for f in findings]


def _genuine(fmt: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    return build_checkpoint(events, KEY, "proc-1", T0 + 5) if fmt == "interval" else _log_checkpoint(events)


@pytest.mark.parametrize("fmt", ["interval", "whole-log"])
@pytest.mark.parametrize("edit", [{"last_sequence": 3}, {"merkle_root": b"\x07" * 32}])
@pytest.mark.parametrize("edited_first", [True, False], ids=["edited-first", "genuine-first"])
def test_an_edited_copy_is_forged_and_the_genuine_one_still_covers(
    fmt: str, edit: dict[str, Any], edited_first: bool
) -> None:
    events = _events()
    genuine = _genuine(fmt, events)
    edited = {**genuine, **edit}  # same checkpoint_id and signature
    cps = [edited, genuine] if edited_first else [genuine, edited]
    findings = _verify(events, cps)
    assert _kinds(findings) == [(K.FORGED_CHECKPOINT, 0, genuine["checkpoint_id"])]
    (f,) = findings
    (name,) = edit
    assert f.column == name and f"differs from it in {name}" in f.message
    assert "same checkpoint_id and signature" in f.message
    value = edit[name]
    assert f.stored == {name: value.hex() if isinstance(value, bytes) else value}
    assert f.ledger == {name: genuine[name].hex() if isinstance(genuine[name], bytes) else genuine[name]}


@pytest.mark.parametrize("fmt", ["interval", "whole-log"])
def test_the_edited_copy_alone_covers_nothing(fmt: str) -> None:
    events = _events()
    edited = {**_genuine(fmt, events), "last_sequence": 3}
    kinds = [f.kind for f in _verify(events, [edited])]
    assert kinds == [K.FORGED_CHECKPOINT, K.UNCOVERED_EVENT]


def test_identical_copies_are_one_checkpoint_whatever_buffer_or_format_default() -> None:
    events = _events()
    interval = build_checkpoint(events[:9], KEY, "proc-1", T0 + 5)
    whole = _log_checkpoint(events)
    copies = [
        interval, dict(interval), {**interval, "signature_format": "interval/v1"},
        {**interval, "signature": bytearray(interval["signature"])},
        whole, dict(whole), {**whole, "head_hash": memoryview(whole["head_hash"])},
    ]
    assert _verify(events, copies) == []
    assert _verify(events, copies[::-1]) == []


def test_an_interval_checkpoint_signed_twice_is_two_valid_copies() -> None:
    """A re-issue (after a crash) keeps the deterministic id; its own signature covers every field."""
    events = _events()
    first = build_checkpoint(events, KEY, "proc-1", T0 + 5)
    again = build_checkpoint(events, KEY, "proc-2", T0 + 9)
    assert first["checkpoint_id"] == again["checkpoint_id"]
    assert _verify(events, [again, first]) == []


@pytest.mark.parametrize("cosigned_first", [True, False])
def test_a_cosigned_copy_is_a_legitimate_copy(cosigned_first: bool) -> None:
    events = _events()
    plain = _log_checkpoint(events)
    cosigned = _cosign(plain)
    cps = [cosigned, plain] if cosigned_first else [plain, cosigned]
    assert _verify(events, cps) == []
    assert _verify(events, cps, witnesses=[W1.verifier]) == []


@pytest.mark.parametrize("edited_first", [True, False], ids=["edited-first", "genuine-first"])
def test_an_edited_cosigned_copy_is_forged_and_the_cosignature_still_counts(edited_first: bool) -> None:
    events = _events()
    cosigned = _cosign(_log_checkpoint(events))
    edited = {**cosigned, "last_sequence": 3}
    cps = [edited, cosigned] if edited_first else [cosigned, edited]
    findings = _verify(events, cps, witnesses=[W1.verifier])
    assert _kinds(findings) == [(K.FORGED_CHECKPOINT, 0, cosigned["checkpoint_id"])]
    assert findings[0].column == "last_sequence"


def test_a_cosigned_copy_with_an_edited_cosignature_is_reported_by_the_cosignature_pass() -> None:
    events = _events()
    plain = _log_checkpoint(events)
    cosigned = _cosign(plain)
    line = parse_note(bytes(cosigned["signature"]).decode()).signatures[-1]
    bad_sig = bytes([line.signature[0]]) + bytes(b ^ 1 for b in line.signature[1:])
    forged_line = NoteSignature(line.name, line.key_id, bad_sig)
    edited = {**plain, "signature": bytes(plain["signature"]) + forged_line.line().encode()}
    findings = _verify(events, [plain, edited, cosigned], witnesses=[W1.verifier])
    assert _kinds(findings) == [(K.FORGED_COSIGNATURE, len(events) - 1, plain["checkpoint_id"])]
    # without the witness's key nothing trusts the line: it proves nothing, and harms nothing
    assert _verify(events, [plain, edited]) == []


@pytest.mark.parametrize("edit", [{"created_at": T0 - 1}, {"processor_id": "evil"},
                                  {"created_at": T0 - 1, "processor_id": "evil"}])
def test_whole_log_copies_differing_in_unsigned_fields_are_named_in_any_order(edit: dict[str, Any]) -> None:
    """The note does not sign ``created_at`` or ``processor_id`` and nothing else signed covers
    them: both copies verify and cover the same events, and one finding names the fields they
    disagree on and every copy's values, blaming neither."""
    events = _events()
    genuine = _cosign(_log_checkpoint(events))
    edited = {**genuine, **edit}
    for cps in ([edited, genuine], [genuine, edited]):
        findings = _verify(events, cps)
        assert _kinds(findings) == [(K.FORGED_CHECKPOINT, 0, genuine["checkpoint_id"])]
        assert findings[0].column == ", ".join(sorted(edit, key=list(genuine).index))
        assert "no signature says which" in findings[0].message
        assert len(findings[0].stored) == 2
    assert _verify(events, [edited, genuine])[0] == _verify(events, [genuine, edited])[0]


@pytest.mark.parametrize("edit", [{"head_hash": b"\x01" * 32}, {"head_hash": b"\x01" * 32, "processor_id": "evil"}])
@pytest.mark.parametrize("edited_first", [True, False], ids=["edited-first", "genuine-first"])
def test_a_whole_log_copy_with_an_edited_head_hash_is_named_by_the_chain(
    edit: dict[str, Any], edited_first: bool
) -> None:
    """The note does not sign ``head_hash``, but its root commits to every leaf: where the stored
    chain reproduces the root, the hash of event ``size - 1`` is the genuine head, and the copy
    that carries another one is the edited copy; the genuine copy is not blamed."""
    events = _events()
    genuine = _cosign(_log_checkpoint(events))
    assert genuine["head_hash"] == events[-1]["hash"]
    edited = {**genuine, **edit}
    findings = _verify(events, [edited, genuine] if edited_first else [genuine, edited])
    assert _kinds(findings) == [(K.FORGED_CHECKPOINT, 0, genuine["checkpoint_id"])]
    (f,) = findings
    names = sorted(edit, key=list(genuine).index)
    assert f.column == ", ".join(names)
    assert f.stored == {n: edit[n].hex() if isinstance(edit[n], bytes) else edit[n] for n in names}
    assert f.ledger == {n: genuine[n].hex() if isinstance(genuine[n], bytes) else genuine[n] for n in names}
    assert "this copy was edited in the store" in f.message
    assert "no signature says which" not in f.message


def test_every_whole_log_copy_with_a_wrong_head_hash_is_named_even_with_no_genuine_copy() -> None:
    events = _events()
    genuine = _log_checkpoint(events)
    one, two = {**genuine, "head_hash": b"\x01" * 32}, {**genuine, "head_hash": b"\x02" * 32}
    findings = _verify(events, [two, one])
    assert _kinds(findings) == [(K.FORGED_CHECKPOINT, 0, genuine["checkpoint_id"])] * 2
    assert sorted(f.stored["head_hash"] for f in findings) == [(b"\x01" * 32).hex(), (b"\x02" * 32).hex()]
    assert {f.ledger["head_hash"] for f in findings} == {events[-1]["hash"].hex()}
    assert _verify(events, [one, two]) == findings


def test_a_head_hash_edit_is_named_and_the_genuine_copies_unsigned_edits_still_reported() -> None:
    """Three copies: two with the genuine head_hash that differ in created_at (undecidable), one
    with another head_hash (decided by the chain): two findings, the second blaming neither."""
    events = _events()
    genuine = _log_checkpoint(events)
    later, edited = {**genuine, "created_at": T0 + 99}, {**genuine, "head_hash": b"\x01" * 32}
    findings = _verify(events, [later, edited, genuine])
    assert _kinds(findings) == [(K.FORGED_CHECKPOINT, 0, genuine["checkpoint_id"])] * 2
    by_column = {f.column: f for f in findings}
    assert by_column["head_hash"].stored == {"head_hash": (b"\x01" * 32).hex()}
    assert "no signature says which" in by_column["created_at"].message
    assert by_column["created_at"].stored == [{"created_at": T0 + 5}, {"created_at": T0 + 99}]


@pytest.mark.parametrize("chain", ["absent", "last-hash-edited", "anchored"])
def test_when_the_chain_cannot_decide_a_head_hash_edit_blames_no_copy(chain: str) -> None:
    """No stored chain, a chain that no longer reproduces the root (its own finding), or a chain
    verified from an anchor (no events from 0): nothing says which head_hash is genuine."""
    events = _events()
    genuine = _log_checkpoint(events)
    edited = {**genuine, "head_hash": b"\x01" * 32}
    kw: dict[str, Any] = {}
    if chain == "absent":
        events = []
    elif chain == "last-hash-edited":
        events = [*events[:-1], {**events[-1], "hash": b"\x01" * 32}]
    else:
        kw["anchors"] = {0: (2, events[1]["hash"])}
        events = events[2:]
    forged = [f for f in _verify(events, [edited, genuine], **kw) if f.kind is K.FORGED_CHECKPOINT]
    assert [(f.column, len(f.stored)) for f in forged] == [("head_hash", 2)]
    assert "no signature says which" in forged[0].message
