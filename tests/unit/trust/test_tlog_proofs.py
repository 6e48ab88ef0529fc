"""Inclusion proofs against whole-log checkpoints (version 2, C2SP tlog-proof inside) and
consistency proof files — and what tries to break them."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.factories.ledger import LedgerBuilder
from trust.consistency import build_consistency_file, verify_consistency_file
from trust.cosignature import CosignatureV1Signer
from trust.keys import SigningKey
from trust.merkle import merkle_root
from trust.note import parse_note
from trust.partition_log import PartitionLog
from trust.proofs import ProofError, build_proof, verify_proof
from trust.tlog import build_log_checkpoint
from trust.tlog_proof import format_tlog_proof, parse_tlog_proof
from trust.tlog_witness import with_cosignatures

KEY = SigningKey.generate()
WITNESS = CosignatureV1Signer("witness.example/w1", SigningKey.generate())


def _ledger() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    b = LedgerBuilder(KEY)
    for _ in range(7):
        b.flow(0)
    log = PartitionLog(0)
    for ev in b.events[:9]:
        log.append(ev["hash"])
    old = log.checkpoint(KEY, "proc-1", 1)
    for ev in b.events[9:]:
        log.append(ev["hash"])
    new = log.checkpoint(KEY, "proc-1", 2)
    text = parse_note(new["signature"].decode()).text.encode()
    new = with_cosignatures(new, [WITNESS.cosign(text, 1_700_000_000)])
    return b.events, old, new


EVENTS, OLD, NEW = _ledger()
LEAVES = [e["hash"] for e in EVENTS]


def test_every_event_proves_against_the_whole_log_checkpoint() -> None:
    for ev in EVENTS:
        proof = json.loads(json.dumps(build_proof(ev, list(reversed(EVENTS)), NEW)))
        assert set(proof) == {"format", "version", "event", "tlog_proof"} and proof["version"] == 2
        tp = parse_tlog_proof(proof["tlog_proof"])
        assert tp.index == ev["sequence"] and tp.checkpoint == NEW["signature"].decode()
        ok, reason = verify_proof(proof, KEY.public(), witnesses=[WITNESS.verifier], log_name="lockgate.example/ledger")
        assert ok, reason
        assert "cosigned by witness.example/w1" in reason


def test_a_missing_or_forged_cosignature_fails_when_the_witness_is_required() -> None:
    proof = build_proof(EVENTS[0], EVENTS[:9], OLD)
    ok, reason = verify_proof(proof, KEY.public())
    assert ok, reason
    ok, reason = verify_proof(proof, KEY.public(), witnesses=[WITNESS.verifier])
    assert not ok and "no cosignature from witness" in reason
    other_text = parse_note(OLD["signature"].decode()).text.encode()
    forged = with_cosignatures(NEW, [WITNESS.cosign(other_text, 5)])  # cosigned another checkpoint
    ok, reason = verify_proof(build_proof(EVENTS[0], EVENTS, forged), KEY.public(), witnesses=[WITNESS.verifier])
    assert not ok and "does not verify" in reason


def _v2(event_index: int = 3) -> dict[str, Any]:
    return build_proof(EVENTS[event_index], EVENTS, NEW)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda p: p["event"].__setitem__("tenant", "evil"), "event record altered"),
        (lambda p: p.__setitem__("tlog_proof", p["tlog_proof"].replace("\n21\n", "\n20\n")), "checkpoint"),
        (lambda p: p.__setitem__("tlog_proof", p["tlog_proof"].replace("index 3\n", "index 4\n")), "index 4"),
        (lambda p: p.__setitem__("extra", 1), "malformed"),
        (lambda p: p.__setitem__("tlog_proof", p["tlog_proof"].replace("c2sp.org/tlog-proof@v1", "x")), "malformed"),
    ],
)
def test_tampered_v2_proofs_fail(mangle: Any, reason: str) -> None:
    proof = copy.deepcopy(_v2())
    mangle(proof)
    ok, why = verify_proof(proof, KEY.public())
    assert not ok and reason in why, why


def test_a_path_from_a_forked_tree_does_not_reach_the_signed_root() -> None:
    forked = [dict(e) for e in EVENTS]
    forked[5]["hash"] = b"\xee" * 32  # a rewritten record (its own hash does not matter here)
    from trust.merkle import inclusion_proof

    path = inclusion_proof([e["hash"] for e in forked], 3)
    proof = _v2()
    proof["tlog_proof"] = format_tlog_proof(3, path, NEW["signature"].decode())
    ok, reason = verify_proof(proof, KEY.public())
    assert not ok and "audit path" in reason


def test_a_checkpoint_of_another_partition_or_log_fails() -> None:
    other = build_log_checkpoint(partition=1, size=len(LEAVES), root=merkle_root(LEAVES), head_hash=LEAVES[-1],
                                 key=KEY, processor_id="p", now_us=1)
    proof = _v2()
    proof["tlog_proof"] = format_tlog_proof(3, parse_tlog_proof(proof["tlog_proof"]).path,
                                            other["signature"].decode())
    ok, reason = verify_proof(proof, KEY.public())
    assert not ok and "is not of partition 0" in reason
    ok, reason = verify_proof(_v2(), KEY.public(), log_name="other.example/log")
    assert not ok and "not of log" in reason
    ok, reason = verify_proof(_v2(), SigningKey.generate().public())
    assert not ok and "checkpoint" in reason


@pytest.mark.parametrize("junk", [None, [], {"format": "lockgate.inclusion-proof", "version": 2},
                                  {"format": "lockgate.inclusion-proof", "version": 2, "event": {}, "tlog_proof": 5}])
def test_garbage_never_raises(junk: Any) -> None:
    ok, reason = verify_proof(junk, KEY.public())
    assert not ok and reason


def test_tlog_proof_text_round_trips_and_refuses_bad_lines() -> None:
    text = _v2()["tlog_proof"]
    tp = parse_tlog_proof(text)
    assert format_tlog_proof(tp.index, tp.path, tp.checkpoint) == text
    with_extra = text.replace("\nindex", "\nextra aGk=\nindex", 1)
    assert parse_tlog_proof(with_extra).extra == b"hi"
    from trust.errors import TlogFormatError

    for bad in (text.replace("index 3", "index 03"), text.replace("\n\n", "\n", 1), text.replace("=\n", "\n", 1)):
        with pytest.raises(TlogFormatError):
            parse_tlog_proof(bad)


# --- consistency proof files ----------------------------------------------------------


def test_consistency_file_proves_the_new_checkpoint_extends_the_old() -> None:
    doc = json.loads(json.dumps(build_consistency_file(LEAVES, OLD, NEW)))
    ok, reason = verify_consistency_file(doc, KEY.public(), witnesses=[WITNESS.verifier])
    assert ok, reason
    assert "size 21 extends size 9" in reason
    same = build_consistency_file(LEAVES, NEW, NEW)
    assert same["proof"] == [] and verify_consistency_file(same, KEY.public())[0]


def test_consistency_file_tampering_fails() -> None:
    doc = build_consistency_file(LEAVES, OLD, NEW)
    bad = dict(doc, proof=doc["proof"][:-1])
    assert not verify_consistency_file(bad, KEY.public())[0]
    swapped = dict(doc, old_checkpoint=doc["new_checkpoint"], new_checkpoint=doc["old_checkpoint"])
    ok, reason = verify_consistency_file(swapped, KEY.public())
    assert not ok and "rollback" in reason
    ok, reason = verify_consistency_file(doc, KEY.public(), witnesses=[CosignatureV1Signer("w2", KEY).verifier])
    assert not ok and "new checkpoint" in reason
    ok, _ = verify_consistency_file({**doc, "proof": ["not base64"]}, KEY.public())
    assert not ok
    ok, _ = verify_consistency_file({**doc, "unexpected": 1}, KEY.public())
    assert not ok


def test_a_rewritten_history_is_not_consistent_even_when_the_log_key_signed_it() -> None:
    """A log (or a stolen key) re-signs a history with record 4 rewritten: no proof exists."""
    forked = list(LEAVES)
    forked[4] = b"\xab" * 32
    forged_new = build_log_checkpoint(partition=0, size=len(forked), root=merkle_root(forked), head_hash=forked[-1],
                                      key=KEY, processor_id="p", now_us=3)
    with pytest.raises(ProofError, match="do not reproduce"):
        build_consistency_file(forked, OLD, forged_new)
    doc = build_consistency_file(LEAVES, OLD, NEW)
    doc["new_checkpoint"] = forged_new["signature"].decode()
    ok, reason = verify_consistency_file(doc, KEY.public())
    assert not ok and "not an extension" in reason


def test_build_consistency_refuses_what_would_not_verify() -> None:
    with pytest.raises(ProofError, match="larger"):
        build_consistency_file(LEAVES, NEW, OLD)
    with pytest.raises(ProofError, match="stored events"):
        build_consistency_file(LEAVES[:20], OLD, NEW)
    from trust.checkpoints import build_checkpoint

    interval = build_checkpoint(EVENTS[:9], KEY, "p", 1)
    with pytest.raises(ProofError, match="interval"):
        build_consistency_file(LEAVES, interval, NEW)
