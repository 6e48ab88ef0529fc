"""``verify`` over whole-log checkpoints: consistency between them, the stored chain against
them, legacy interval checkpoints beside them, and witness cosignatures."""

from __future__ import annotations

from typing import Any

from tests.factories.ledger import LedgerBuilder
from trust.chain import Chain
from trust.checkpoints import build_checkpoint
from trust.cosignature import CosignatureV1Signer
from trust.keys import Keyring, SigningKey
from trust.merkle import merkle_root
from trust.note import parse_note
from trust.partition_log import PartitionLog
from trust.tlog import CheckpointBody, build_log_checkpoint, log_signer, origin_for
from trust.tlog_witness import with_cosignatures
from trust.verify import FindingKind, verify_ledger

KEY = SigningKey.generate()
RING = Keyring([KEY.public()])
W1 = CosignatureV1Signer("witness.example/w1", SigningKey.generate())
W2 = CosignatureV1Signer("witness.example/w2", SigningKey.generate())


def _events(flows: int = 8, partitions: tuple[int, ...] = (0,)) -> list[dict[str, Any]]:
    b = LedgerBuilder(KEY)
    for _ in range(flows):
        for p in partitions:
            b.flow(p)
    return b.events


def _checkpoints(events: list[dict[str, Any]], sizes: list[int], partition: int = 0) -> list[dict[str, Any]]:
    mine = [e for e in events if e["ledger_partition"] == partition]
    log = PartitionLog(partition)
    out = []
    for ev in mine[: max(sizes)]:
        log.append(ev["hash"])
        if log.size in sizes:
            out.append(log.checkpoint(KEY, "proc-1", 1_700_000_000_000_000 + log.size))
    return out


def _cosign(cp: dict[str, Any], *witnesses: CosignatureV1Signer) -> dict[str, Any]:
    text = parse_note(bytes(cp["signature"]).decode()).text.encode()
    return with_cosignatures(cp, [w.cosign(text, 1_700_000_000) for w in witnesses])


def _kinds(findings: list[Any]) -> list[tuple[str, int | None]]:
    return [(str(f.kind), f.sequence) for f in findings]


def test_a_clean_ledger_with_whole_log_and_legacy_checkpoints_verifies() -> None:
    events = _events()
    legacy = [build_checkpoint(events[:6], KEY, "proc-1", 1)]
    cps = legacy + _checkpoints(events, [3, 6, 7, 15, 24])
    assert verify_ledger(events, cps, RING, log_name="lockgate.example/ledger") == []
    assert verify_ledger(events, cps + cps, RING) == []  # stored twice: deduplicated


def test_a_rewritten_and_resigned_history_is_inconsistent_with_the_older_checkpoint() -> None:
    events = _events()
    old = _checkpoints(events, [2, 10, 20])
    # Delete record 3, re-chain everything after it, re-sign a checkpoint over the result
    # (a compromised processor key, or the processor itself told to), and drop the
    # checkpoint that covered the lost tail.
    chain = Chain()
    rewritten = [chain.append(e, 0) for i, e in enumerate(events) if i != 3]
    new = _checkpoints(rewritten, [19])
    findings = verify_ledger(rewritten, old[:2] + new, RING, enforcement=False)
    assert _kinds(findings) == [("inconsistent_checkpoints", 9)]
    assert "p0@10" in findings[0].message and "p0@19" in findings[0].message
    assert findings[0].checkpoint_id == "p0@10"
    # with the covering checkpoint kept, the cut tail is reported as well
    findings = verify_ledger(rewritten, old + new, RING, enforcement=False)
    assert _kinds(findings) == [("inconsistent_checkpoints", 9), ("truncated_tail", 19)]


def test_two_checkpoints_of_one_size_with_different_roots_are_a_fork() -> None:
    events = _events()
    good = _checkpoints(events, [12])
    fork = build_log_checkpoint(partition=0, size=12, root=b"\x07" * 32, head_hash=events[11]["hash"], key=KEY,
                                processor_id="proc-1", now_us=1_800_000_000_000_000)
    findings = verify_ledger(events, [*good, fork], RING, enforcement=False)
    assert _kinds(findings) == [("inconsistent_checkpoints", 11)]
    assert "a fork" in findings[0].message


def test_history_rehashed_under_a_whole_log_checkpoint_is_altered() -> None:
    events = _events()
    cps = _checkpoints(events, [9, 24])
    chain = Chain()
    edited = [dict(e) for e in events]
    edited[4]["detail"] = "nothing to see"
    rehashed = [chain.append(e, 0) for e in edited]
    findings = verify_ledger(rehashed, cps, RING, enforcement=False)
    assert _kinds(findings) == [("altered_checkpoint", 0), ("truncated_tail", 23)]


def test_a_truncated_tail_and_an_empty_partition_are_reported() -> None:
    events = _events()
    cps = _checkpoints(events, [24])
    assert _kinds(verify_ledger(events[:20], cps, RING, enforcement=False)) == [("truncated_tail", 20)]
    assert _kinds(verify_ledger([], cps, RING, enforcement=False)) == [("truncated_tail", 0)]


def test_forged_whole_log_checkpoints() -> None:
    events = _events()
    (cp,) = _checkpoints(events, [12])
    other = SigningKey.generate()
    by_other = build_log_checkpoint(partition=0, size=12, root=cp["merkle_root"], head_hash=cp["head_hash"],
                                    key=other, processor_id="x", now_us=1)
    origin = origin_for("lockgate.example/ledger", 0)
    with_ext = CheckpointBody(origin, 12, cp["merkle_root"], ("note: extension",)).text()
    from trust.note import sign_note

    ext = {**cp, "signature": sign_note(with_ext, [log_signer(origin, KEY)]).encode()}
    altered = {**cp, "signature": bytes(cp["signature"]).replace(b"\n12\n", b"\n11\n")}
    for bad in (by_other, ext, altered):
        findings = verify_ledger(events, [bad], RING, enforcement=False)
        assert [f.kind for f in findings] == [FindingKind.FORGED_CHECKPOINT], bad
    findings = verify_ledger(events, [cp], RING, enforcement=False, log_name="elsewhere.example/log")
    assert [f.kind for f in findings] == [FindingKind.FORGED_CHECKPOINT]


def test_the_newest_checkpoint_must_carry_every_witness_cosignature() -> None:
    events = _events(partitions=(0, 1))
    cps0 = _checkpoints(events, [6, 24], 0)
    cps1 = _checkpoints(events, [24], 1)
    cosigned = [cps0[0], _cosign(cps0[1], W1, W2), _cosign(cps1[0], W1, W2)]
    witnesses = [W1.verifier, W2.verifier]
    assert verify_ledger(events, cosigned, RING, witnesses=witnesses, enforcement=False) == []
    # W2 did not cosign partition 1's newest checkpoint (it refused a fork, or was down)
    partial = [cps0[0], _cosign(cps0[1], W1, W2), _cosign(cps1[0], W1)]
    findings = verify_ledger(events, partial, RING, witnesses=witnesses, enforcement=False)
    assert [(f.kind, f.partition) for f in findings] == [(FindingKind.MISSING_COSIGNATURE, 1)]
    assert "witness.example/w2" in findings[0].message
    # the cosignature arrives in a second stored copy of the same checkpoint: it counts
    copies = [*partial, _cosign(cps1[0], W2)]
    assert verify_ledger(events, copies, RING, witnesses=witnesses, enforcement=False) == []


def test_an_older_cosigned_checkpoint_does_not_cover_the_newest() -> None:
    events = _events()
    cps = _checkpoints(events, [6, 24])
    findings = verify_ledger(events, [_cosign(cps[0], W1), cps[1]], RING, witnesses=[W1.verifier],
                             enforcement=False)
    assert [(f.kind, f.sequence) for f in findings] == [(FindingKind.MISSING_COSIGNATURE, 23)]


def test_a_forged_cosignature_is_reported() -> None:
    events = _events()
    (cp,) = _checkpoints(events, [24])
    wrong_body = b"lockgate.example/ledger/p0\n24\n" + b"AAAA" * 10 + b"AAAA\n"
    forged = with_cosignatures(cp, [W1.cosign(wrong_body, 5)])
    kinds = [f.kind for f in verify_ledger(events, [forged], RING, witnesses=[W1.verifier], enforcement=False)]
    assert kinds == [FindingKind.MISSING_COSIGNATURE, FindingKind.FORGED_COSIGNATURE]


def test_a_partition_with_only_legacy_checkpoints_has_no_cosignature() -> None:
    events = _events()
    cps = [build_checkpoint(events, KEY, "proc-1", 1)]
    findings = verify_ledger(events, cps, RING, witnesses=[W1.verifier], enforcement=False)
    assert [f.kind for f in findings] == [FindingKind.MISSING_COSIGNATURE]


def test_an_anchored_partition_checks_truncation_not_roots() -> None:
    events = _events()
    cps = _checkpoints(events, [9, 24])
    anchors = {0: (10, events[10]["prev_hash"])}
    assert verify_ledger(events[10:], cps, RING, anchors=anchors, enforcement=False) == []
    findings = verify_ledger(events[10:20], cps, RING, anchors=anchors, enforcement=False)
    assert [f.kind for f in findings] == [FindingKind.TRUNCATED_TAIL]


def test_root_of_the_whole_log_is_checked_once_per_checkpoint() -> None:
    events = _events(20)
    sizes = list(range(1, 61))
    cps = _checkpoints(events, sizes)
    assert verify_ledger(events, cps, RING, enforcement=False) == []
    assert cps[-1]["merkle_root"] == merkle_root([e["hash"] for e in events[:60]])


def test_a_log_rolled_back_and_checkpointed_again_is_a_truncated_tail() -> None:
    """The store is cut back to 10 events and a fresh (smaller) checkpoint signed over them:
    the larger checkpoint signed before still attests what was cut."""
    events = _events()
    before = _checkpoints(events, [20])
    after = _checkpoints(events, [10])
    after[0]["created_at"] = before[0]["created_at"] + 10**9  # signed later, smaller: a size regression
    findings = verify_ledger(events[:10], before + after, RING, enforcement=False)
    assert _kinds(findings) == [("truncated_tail", 10)]


def test_the_witness_file_carries_both_formats(tmp_path: Any) -> None:
    """``checkpoints export`` lines keep signature_format; old lines without it are intervals;
    whole-log checkpoints never anchor ``--since`` (their head hash is not signed)."""
    import json

    from trust.witness import checkpoint_to_json, load_checkpoint_file, since_anchors, witness_findings

    events = _events()
    interval = build_checkpoint(events[:6], KEY, "proc-1", 5)
    (whole,) = _checkpoints(events, [12])
    old_line = checkpoint_to_json(interval)
    del old_line["signature_format"]  # as an export written before the field existed
    path = tmp_path / "cps.jsonl"
    path.write_text(json.dumps(old_line) + "\n" + json.dumps(checkpoint_to_json(whole)) + "\n")
    loaded = load_checkpoint_file(path)
    assert [c["signature_format"] for c in loaded] == ["interval/v1", "tlog-checkpoint/v1"]
    assert loaded[1] == whole
    assert witness_findings([interval, whole], loaded) == []
    altered = {**whole, "signature_format": "interval/v1"}
    assert [f["kind"] for f in witness_findings([interval, altered], loaded)] == ["witness_checkpoint_differs"]
    anchors = since_anchors([interval, whole], 1 << 62, RING)
    assert anchors == {0: (6, events[5]["hash"])}
