from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories.ledger import LedgerBuilder
from trust.checkpoints import build_checkpoint
from trust.keys import SigningKey
from trust.proofs import PROOF_FORMAT, ProofError, build_proof, verify_proof

KEY = SigningKey.generate()


def _setup() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    b = LedgerBuilder(KEY)
    for _ in range(5):
        b.flow(0)
    interval = b.events[2:13]
    return interval, build_checkpoint(interval, KEY, "proc-1", 77, prev_head=b.events[1]["hash"])


INTERVAL, CP = _setup()
PROOF = build_proof(INTERVAL[4], INTERVAL, CP)
PROOF_TEXT = json.dumps(PROOF, separators=(",", ":")).encode()


def test_every_event_of_the_interval_proves() -> None:
    for ev in INTERVAL:
        proof = build_proof(ev, list(reversed(INTERVAL)), CP)
        proof = json.loads(json.dumps(proof))  # survives JSON
        ok, reason = verify_proof(proof, KEY.public())
        assert ok, reason
        assert proof["format"] == PROOF_FORMAT and proof["version"] == 1
        assert proof["key_id"] == KEY.key_id
        assert proof["leaf_index"] == ev["sequence"] - CP["first_sequence"]
        assert proof["tree_size"] == len(INTERVAL)


def test_other_key_fails() -> None:
    ok, reason = verify_proof(PROOF, SigningKey.generate().public())
    assert not ok and "key mismatch" in reason


def test_altered_payload_reason() -> None:
    bad = copy.deepcopy(PROOF)
    bad["event"]["tenant"] = "evil"
    ok, reason = verify_proof(bad, KEY.public())
    assert not ok and reason.startswith("event record altered")


def test_altered_checkpoint_reason() -> None:
    bad = copy.deepcopy(PROOF)
    bad["checkpoint"]["created_at"] += 1
    ok, reason = verify_proof(bad, KEY.public())
    assert not ok and "signature" in reason


def test_swapped_path_reason() -> None:
    bad = copy.deepcopy(PROOF)
    bad["audit_path"] = list(reversed(bad["audit_path"]))
    ok, reason = verify_proof(bad, KEY.public())
    assert not ok and "audit path" in reason


def test_non_canonical_encodings_are_rejected() -> None:
    upper = copy.deepcopy(PROOF)
    upper["audit_path"][0] = upper["audit_path"][0].upper()
    assert verify_proof(upper, KEY.public())[0] is False
    extra = dict(PROOF, comment="hi")
    assert verify_proof(extra, KEY.public())[0] is False
    as_bool = copy.deepcopy(PROOF)
    as_bool["event"]["canonical_version"] = True
    assert verify_proof(as_bool, KEY.public())[0] is False


@pytest.mark.parametrize("junk", [None, [], "x", {"format": PROOF_FORMAT}, {"version": 2}])
def test_garbage_never_raises(junk: Any) -> None:
    ok, reason = verify_proof(junk, KEY.public())
    assert not ok and reason


def test_build_refuses_what_would_not_verify() -> None:
    with pytest.raises(ProofError, match="lacks sequence"):
        build_proof(INTERVAL[0], INTERVAL[1:], CP)
    with pytest.raises(ProofError, match="Merkle root"):
        build_proof(INTERVAL[0], [*INTERVAL[:3], dict(INTERVAL[3], hash=b"\0" * 32), *INTERVAL[4:]], CP)
    with pytest.raises(ProofError, match="differs"):
        build_proof(dict(INTERVAL[0], hash=b"\1" * 32), INTERVAL, CP)
    with pytest.raises(ProofError, match="does not hash"):
        build_proof(dict(INTERVAL[0], tenant="evil"), INTERVAL, CP)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(PROOF_TEXT) - 1), st.integers(1, 255))
def test_one_byte_changed_anywhere_fails(position: int, xor: int) -> None:
    text = bytearray(PROOF_TEXT)
    text[position] ^= xor
    try:
        doc = json.loads(bytes(text))
    except (ValueError, UnicodeDecodeError):
        return  # no longer JSON: nothing to verify
    ok, _ = verify_proof(doc, KEY.public())
    assert not ok
