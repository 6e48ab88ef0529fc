"""The add-checkpoint protocol (C2SP tlog-witness) without I/O: the witness's decisions and
the log's client, and the requests that try to roll back or fork a log."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

import pytest

from trust.cosignature import CosignatureV1Signer
from trust.errors import TlogFormatError
from trust.keys import SigningKey
from trust.merkle import EMPTY_ROOT, consistency_proof, merkle_root
from trust.note import Ed25519Signer, NoteVerifier, sign_note
from trust.partition_log import PartitionLog
from trust.tlog import CheckpointBody, build_log_checkpoint, log_verifier
from trust.tlog_witness import (
    Cosigned,
    SizeConflict,
    WitnessedCheckpoint,
    WitnessRefused,
    add_checkpoint,
    add_checkpoint_body,
    parse_add_checkpoint,
    read_add_checkpoint_response,
    submit_checkpoint,
    with_cosignatures,
)

KEY = SigningKey.generate()
ORIGIN = "lockgate.example/ledger/p0"
LEAVES = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(64)]
SIGNER = CosignatureV1Signer("witness.example/w1", SigningKey.generate())


def note(size: int, leaves: Sequence[bytes] = LEAVES, key: SigningKey = KEY) -> str:
    cp = build_log_checkpoint(partition=0, size=size, root=merkle_root(leaves[:size]), head_hash=leaves[size - 1],
                              key=key, processor_id="p", now_us=1)
    return bytes(cp["signature"]).decode()


class Witness:
    """One witness's state for one origin, driven through the pure decision function."""

    def __init__(self) -> None:
        self.latest: WitnessedCheckpoint | None = None
        self.now = 1_700_000_000

    def post(self, body: bytes) -> tuple[int, str | None, bytes]:
        try:
            req = parse_add_checkpoint(body)
        except TlogFormatError as exc:
            return 400, "text/plain", str(exc).encode()
        keys: list[NoteVerifier] | None = [log_verifier(ORIGIN, KEY.public())] if req.body.origin == ORIGIN else None
        self.now += 1
        reply = add_checkpoint(req, keys, self.latest, SIGNER, self.now)
        if reply.new_state is not None:
            self.latest = reply.new_state
        return reply.status, reply.content_type, reply.body

    def submit(self, old: int, size: int, leaves: Sequence[bytes] = LEAVES, proof: list[bytes] | None = None) -> int:
        if proof is None:
            proof = consistency_proof(leaves[:size], old)
        return self.post(add_checkpoint_body(old, proof, note(size, leaves)))[0]


def test_the_witness_cosigns_a_log_that_only_grows() -> None:
    w = Witness()
    status, ctype, body = w.post(add_checkpoint_body(0, [], note(5)))
    assert status == 200
    result = read_add_checkpoint_response(status, ctype, body, note(5), SIGNER.verifier)
    assert isinstance(result, Cosigned) and result.timestamp == w.now
    assert w.latest is not None and (w.latest.size, w.latest.root) == (5, merkle_root(LEAVES[:5]))
    assert w.submit(5, 9) == 200
    assert w.submit(9, 9) == 200  # the same checkpoint again: cosigned again
    assert w.submit(9, 64) == 200
    # the witness keeps the log's line and its own, nothing else
    assert w.latest.checkpoint.count("\n—") == 2


def test_a_replayed_old_checkpoint_is_refused() -> None:
    w = Witness()
    assert w.submit(0, 20) == 200
    assert w.submit(20, 12, proof=[]) == 400  # old size above the checkpoint's: a rollback
    status, ctype, body = w.post(add_checkpoint_body(5, consistency_proof(LEAVES[:12], 5), note(12)))
    assert (status, ctype, body) == (409, "text/x.tlog.size", b"20\n")
    assert w.latest is not None and w.latest.size == 20  # nothing rolled back


def test_a_fork_is_refused() -> None:
    w = Witness()
    assert w.submit(0, 20) == 200
    forked = list(LEAVES)
    forked[3] = b"\x00" * 32
    assert w.submit(20, 20, forked) == 422  # same size, other root
    assert w.submit(20, 30, forked) == 422  # a longer forked history: no proof from the witnessed root
    assert w.submit(20, 30, LEAVES, proof=consistency_proof(forked[:30], 20)) == 422
    assert w.latest is not None and w.latest.root == merkle_root(LEAVES[:20])


def test_proof_rules() -> None:
    w = Witness()
    assert w.submit(0, 10, proof=[LEAVES[0]]) == 422  # old 0 takes an empty proof
    assert w.submit(0, 10) == 200
    assert w.submit(10, 16, proof=[]) == 422
    good = consistency_proof(LEAVES[:16], 10)
    assert w.submit(10, 16, proof=[*good, LEAVES[0]]) == 422


def test_unknown_log_and_bad_signatures() -> None:
    w = Witness()
    other_origin = "lockgate.example/ledger/p1"
    text = CheckpointBody(other_origin, 3, merkle_root(LEAVES[:3])).text()
    assert w.post(add_checkpoint_body(0, [], sign_note(text, [Ed25519Signer(other_origin, KEY)])))[0] == 404
    assert w.post(add_checkpoint_body(0, [], note(3, key=SigningKey.generate())))[0] == 403  # another key
    forged = note(3).replace("\n3\n", "\n4\n")  # the log's line no longer verifies
    assert w.post(add_checkpoint_body(0, [], forged))[0] == 403
    assert w.latest is None


def test_a_size_zero_checkpoint_needs_the_empty_root() -> None:
    w = Witness()
    signer = Ed25519Signer(ORIGIN, KEY)
    bad = sign_note(CheckpointBody(ORIGIN, 0, LEAVES[0]).text(), [signer])
    assert w.post(add_checkpoint_body(0, [], bad))[0] == 422
    empty = sign_note(CheckpointBody(ORIGIN, 0, EMPTY_ROOT).text(), [signer])
    assert w.post(add_checkpoint_body(0, [], empty))[0] == 200


@pytest.mark.parametrize(
    "body",
    [
        b"old 05\n\n",
        b"old 5\n",
        b"new 5\n\n",
        b"old -1\n\n",
        b"old 5\nnot base64!\n\n",
        b"old 5\n" + b"AAAA\n\n",  # 3 bytes, not a hash
        b"\xff\xfe",
    ],
)
def test_malformed_requests(body: bytes) -> None:
    with pytest.raises(TlogFormatError):
        parse_add_checkpoint(body + note(3).encode())


def test_at_most_63_proof_lines() -> None:
    with pytest.raises(ValueError):
        add_checkpoint_body(5, [LEAVES[0]] * 64, note(9))
    body = b"old 5\n" + b"".join(b"%s\n" % base64.b64encode(LEAVES[0]) for _ in range(64)) + b"\n"
    with pytest.raises(TlogFormatError, match="at most 63"):
        parse_add_checkpoint(body + note(9).encode())


def test_the_client_retries_from_the_size_a_409_names() -> None:
    w = Witness()
    log = PartitionLog(0)
    for leaf in LEAVES[:20]:
        log.append(leaf)
    assert w.submit(0, 12) == 200  # the witness already holds 12 (say, from before a restart)
    cp = log.checkpoint(KEY, "p", 1)
    text = cp["signature"].decode()
    result, size = submit_checkpoint(w.post, text, 0, log.consistency_proof, SIGNER.verifier)
    assert isinstance(result, Cosigned) and size == 20
    cosigned = with_cosignatures(cp, result.cosignatures)
    assert cosigned["signature"].decode().count("\n—") == 2
    # a log that was rolled back below what the witness holds learns so, and gets nothing
    small = PartitionLog.from_hashes(0, LEAVES[:8])
    result, size = submit_checkpoint(w.post, small.checkpoint(KEY, "p", 2)["signature"].decode(), 20,
                                     small.consistency_proof, SIGNER.verifier)
    assert isinstance(result, WitnessRefused) and result.status == 400 and size is None
    result, size = submit_checkpoint(w.post, small.checkpoint(KEY, "p", 2)["signature"].decode(), 0,
                                     small.consistency_proof, SIGNER.verifier)
    assert result == SizeConflict(20) and size == 20


def test_the_client_trusts_only_a_valid_cosignature_of_its_witness() -> None:
    text = note(5)
    other = CosignatureV1Signer("witness.example/w2", SigningKey.generate())
    from trust.note import parse_note

    body_text = parse_note(text).text.encode()
    line = other.cosign(body_text, 7).line().encode()
    assert isinstance(read_add_checkpoint_response(200, None, line, text, SIGNER.verifier), WitnessRefused)
    bad = SIGNER.cosign(body_text.replace(b"\n5\n", b"\n6\n"), 7).line().encode()
    refused = read_add_checkpoint_response(200, None, bad, text, SIGNER.verifier)
    assert isinstance(refused, WitnessRefused) and "does not verify" in refused.reason
    assert isinstance(read_add_checkpoint_response(200, None, b"garbage", text, SIGNER.verifier), WitnessRefused)
    assert isinstance(read_add_checkpoint_response(409, "text/plain", b"5\n", text, SIGNER.verifier), WitnessRefused)
    assert read_add_checkpoint_response(409, "text/x.tlog.size", b"5\n", text, SIGNER.verifier) == SizeConflict(5)
    assert read_add_checkpoint_response(503, None, b"busy", text, SIGNER.verifier) == WitnessRefused(503, "busy")
