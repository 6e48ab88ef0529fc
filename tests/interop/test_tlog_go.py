"""Independent Go implementations check our transparency-log artefacts, and theirs ours.

``tlog_go/main.go`` (tlogcheck) runs transparency-dev/merkle (``proof.VerifyInclusion``,
``proof.VerifyConsistency`` with the RFC 6962 hasher, its compact ranges and reference
tree), ``golang.org/x/mod/sumdb/note`` (``note.Open`` with our verifier key) and
transparency-dev/formats (``log.ParseCheckpoint``, ``note.NewVerifierForCosignatureV1``,
``proof.TLogProof``) — code that knows nothing of Lockgate. Our proofs, notes, checkpoints,
cosignatures and tlog-proofs must pass there, and tampered ones must fail there too.

Cost: ``go build`` once per session (modules pinned in ``tlog_go/go.mod``/``go.sum``, fetched
from the Go module proxy on first use, then cached), one process per test. The test skips
only when ``go`` is not on PATH; on CI it is, so there it always runs.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.factories.ledger import LedgerBuilder
from trust.consistency import build_consistency_file
from trust.cosignature import CosignatureV1Signer
from trust.frontier import CompactRange
from trust.keys import SigningKey
from trust.merkle import EMPTY_ROOT, consistency_proof, inclusion_proof, merkle_root
from trust.note import parse_note
from trust.partition_log import PartitionLog
from trust.proofs import build_proof
from trust.tlog import log_verifier
from trust.tlog_witness import add_checkpoint, add_checkpoint_body, parse_add_checkpoint, with_cosignatures

GO_DIR = Path(__file__).resolve().parent / "tlog_go"
ORIGIN = "lockgate.example/ledger/p0"

pytestmark = [
    pytest.mark.go,
    pytest.mark.skipif(shutil.which("go") is None,
                       reason="go not on PATH: install Go 1.25+ to run the Go interop checks"),
]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="session")
def tlogcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tlogcheck binary, built once per session from the pinned modules."""
    out = tmp_path_factory.mktemp("tlog-go") / "tlogcheck"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    built = subprocess.run(["go", "build", "-o", str(out), "."], cwd=GO_DIR, env=env, capture_output=True,
                           text=True, timeout=900, check=False)
    if built.returncode != 0:
        pytest.fail(f"go build failed (modules come from the Go proxy):\n{built.stdout}{built.stderr}")
    return out


def go(binary: Path, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    res = subprocess.run([str(binary)], input=json.dumps(cases), capture_output=True, text=True, timeout=300,
                         check=False)
    assert res.returncode == 0, res.stderr
    results: list[dict[str, Any]] = json.loads(res.stdout)
    assert len(results) == len(cases)
    return results


LEAVES = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(70)]
KEY = SigningKey.generate()
WITNESS = CosignatureV1Signer("witness.example/w1", SigningKey.generate())


def test_our_inclusion_proofs_verify_in_go(tlogcheck: Path) -> None:
    cases: list[dict[str, Any]] = []
    for n in range(1, 34):
        root = merkle_root(LEAVES[:n])
        for i in range(n):
            p = inclusion_proof(LEAVES[:n], i)
            cases.append({"kind": "inclusion", "leaf": b64(LEAVES[i]), "index": i, "size": n,
                          "proof": [b64(h) for h in p], "root": b64(root)})
    good = len(cases)
    for case in cases[5:good:7]:  # tampered: another leaf, a flipped path hash, another root
        cases.append({**case, "leaf": b64(b"\x00" * 32)})
        if case["proof"]:
            cases.append({**case, "proof": [b64(b"\x01" * 32), *case["proof"][1:]]})
        cases.append({**case, "root": b64(merkle_root(LEAVES[: case["size"] + 1]))})
    results = go(tlogcheck, cases)
    assert all(r["ok"] for r in results[:good]), [r for r in results[:good] if not r["ok"]][:3]
    assert not any(r["ok"] for r in results[good:])


def test_our_consistency_proofs_verify_in_go(tlogcheck: Path) -> None:
    cases: list[dict[str, Any]] = []
    for n in range(0, 41):
        for m in range(0, n + 1):
            p = consistency_proof(LEAVES[:n], m)
            cases.append({"kind": "consistency", "size1": m, "size2": n, "proof": [b64(h) for h in p],
                          "root1": b64(merkle_root(LEAVES[:m])), "root2": b64(merkle_root(LEAVES[:n]))})
    good = len(cases)
    forked = list(LEAVES)
    forked[2] = b"\xff" * 32
    for case in cases[:good]:
        m, n = case["size1"], case["size2"]
        if 3 <= m < n and (m + n) % 5 == 0:
            cases.append({**case, "proof": case["proof"][:-1]})
            cases.append({**case, "proof": [*case["proof"], b64(LEAVES[0])]})
            cases.append({**case, "root2": b64(merkle_root(forked[:n]))})  # a forked new tree
            cases.append({**case, "proof": [b64(h) for h in consistency_proof(forked[:n], m)],
                          "root2": b64(merkle_root(forked[:n]))})
    results = go(tlogcheck, cases)
    failed = [(c, r) for c, r in zip(cases, results, strict=True) if not r["ok"]]
    assert all(r["ok"] for r in results[:good]), failed[:2]
    assert not any(r["ok"] for r in results[good:])


def test_go_reference_tree_gives_our_roots_and_proofs_byte_for_byte(tlogcheck: Path) -> None:
    leaves = LEAVES[:33]
    (ref,) = go(tlogcheck, [{"kind": "reference", "leaves": [b64(x) for x in leaves]}])
    assert ref["ok"], ref
    assert [base64.b64decode(r) for r in ref["roots"]] == [merkle_root(leaves[:n]) for n in range(34)]
    for k, hashes in ref["consistency"].items():
        m, n = map(int, k.split(","))
        assert [base64.b64decode(h) for h in hashes or []] == consistency_proof(leaves[:n], m), k
    for k, hashes in ref["inclusion"].items():
        i, n = map(int, k.split(","))
        assert [base64.b64decode(h) for h in hashes or []] == inclusion_proof(leaves[:n], i), k


def test_our_frontier_is_go_compact_range(tlogcheck: Path) -> None:
    cases = [{"kind": "compact", "leaves": [b64(x) for x in LEAVES[:n]]} for n in range(0, 70)]
    for n, r in enumerate(go(tlogcheck, cases)):
        ours = CompactRange.from_leaves(LEAVES[:n])
        assert r["ok"], r
        assert [base64.b64decode(h) for h in r.get("nodes") or []] == list(ours.nodes), n
        assert base64.b64decode(r["root"]) == ours.root() == (merkle_root(LEAVES[:n]) if n else EMPTY_ROOT)


def _checkpoint(size: int, leaves: list[bytes] = LEAVES) -> dict[str, Any]:
    return PartitionLog.from_hashes(0, leaves[:size]).checkpoint(KEY, "proc-1", 1)


def _cosigned(cp: dict[str, Any]) -> dict[str, Any]:
    """Cosigned through the witness's own decision function (what the server runs)."""
    reply = add_checkpoint(parse_add_checkpoint(add_checkpoint_body(0, [], bytes(cp["signature"]).decode())),
                           [log_verifier(ORIGIN, KEY.public())], None, WITNESS, 1_700_000_123)
    assert reply.status == 200, reply.body
    return with_cosignatures(cp, parse_note(cp["signature"].decode() + reply.body.decode()).signatures[1:])


VKEY = log_verifier(ORIGIN, KEY.public()).vkey


def test_our_checkpoint_notes_open_and_parse_in_go(tlogcheck: Path) -> None:
    cp = _checkpoint(21)
    text = bytes(cp["signature"]).decode()
    other_key_same_name = log_verifier(ORIGIN, SigningKey.generate().public()).vkey
    cases = [
        {"kind": "note", "vkey": VKEY, "text": text},
        {"kind": "checkpoint", "vkey": VKEY, "origin": ORIGIN, "text": text},
        # tampered: the size, the root, a truncated note, another origin, another key
        {"kind": "note", "vkey": VKEY, "text": text.replace("\n21\n", "\n22\n")},
        {"kind": "note", "vkey": VKEY, "text": text.replace(b64(cp["merkle_root"]), b64(b"\x00" * 32))},
        {"kind": "note", "vkey": VKEY, "text": text[:-1]},
        {"kind": "checkpoint", "vkey": VKEY, "origin": "lockgate.example/ledger/p1", "text": text},
        {"kind": "note", "vkey": other_key_same_name, "text": text},
    ]
    results = go(tlogcheck, cases)
    assert results[0]["ok"] and results[0]["text"] == parse_note(text).text, results[0]
    assert results[1]["ok"], results[1]
    assert (results[1]["size"], base64.b64decode(results[1]["root"])) == (21, cp["merkle_root"])
    assert [r["ok"] for r in results[2:]] == [False] * 5, results[2:]


def test_our_cosignatures_verify_in_go(tlogcheck: Path) -> None:
    cp = _cosigned(_checkpoint(30))
    text = bytes(cp["signature"]).decode()
    other_body = parse_note(_checkpoint(29)["signature"].decode()).text.encode()
    forged = with_cosignatures(_checkpoint(30), [WITNESS.cosign(other_body, 1_700_000_123)])
    stranger = CosignatureV1Signer("witness.example/w1", SigningKey.generate())  # same name, other key
    case = {"kind": "checkpoint", "vkey": VKEY, "origin": ORIGIN, "witness_vkey": WITNESS.verifier.vkey}
    results = go(tlogcheck, [
        {**case, "text": text},
        {**case, "text": bytes(forged["signature"]).decode()},
        {**case, "text": bytes(_checkpoint(30)["signature"]).decode()},
        {**case, "text": text, "witness_vkey": stranger.verifier.vkey},
    ])
    assert results[0]["ok"] and results[0]["timestamp"] == 1_700_000_123, results[0]
    assert [r["ok"] for r in results[1:]] == [False, False, False], results[1:]


def test_our_tlog_proofs_verify_in_go(tlogcheck: Path) -> None:
    ledger = LedgerBuilder(KEY)
    for _ in range(6):
        ledger.flow(0)
    events = ledger.events
    cp = _cosigned(PartitionLog.from_hashes(0, [e["hash"] for e in events]).checkpoint(KEY, "proc-1", 1))
    case = {"kind": "tlog_proof", "vkey": VKEY, "origin": ORIGIN, "witness_vkey": WITNESS.verifier.vkey}
    cases = [{**case, "leaf": b64(ev["hash"]), "text": build_proof(ev, events, cp)["tlog_proof"]} for ev in events]
    bad = copy.deepcopy(cases[4])
    bad["text"] = bad["text"].replace("index 4\n", "index 5\n")
    other_leaf = {**cases[4], "leaf": b64(events[5]["hash"])}
    results = go(tlogcheck, [*cases, bad, other_leaf])
    assert all(r["ok"] for r in results[: len(cases)]), results[:2]
    assert [r.get("index", 0) for r in results[: len(cases)]] == [e["sequence"] for e in events]
    assert [r["ok"] for r in results[len(cases):]] == [False, False]


def test_our_consistency_files_verify_in_go(tlogcheck: Path) -> None:
    old, new = _checkpoint(13), _checkpoint(64)
    doc = build_consistency_file(LEAVES, old, new)
    case = {"kind": "consistency", "size1": 13, "size2": 64, "proof": doc["proof"],
            "root1": b64(old["merkle_root"]), "root2": b64(new["merkle_root"])}
    results = go(tlogcheck, [case, {**case, "root1": b64(_checkpoint(12)["merkle_root"])}])
    assert [r["ok"] for r in results] == [True, False]
