"""The witness as a process would run it: real HTTP on localhost, real files, real locks.

What tries to break it: replayed and forked checkpoints, concurrent requests for one log
(from threads of one server and from two servers sharing a state directory, as two
processes would), a restart, a corrupt state file, a key readable by others.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from lockgate.kernel.home import Home
from trust.cosignature import CosignatureV1Verifier
from trust.errors import KeyFileUnsafe
from trust.keys import SigningKey
from trust.merkle import consistency_proof, merkle_root
from trust.note import open_note
from trust.partition_log import PartitionLog
from trust.tlog import build_log_checkpoint, log_verifier
from trust.tlog_witness import Cosigned, add_checkpoint_body, read_add_checkpoint_response, submit_checkpoint
from witness import TrustedLogs, WitnessServer, WitnessSettings, build_witness

LEAVES = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(200)]
ORIGIN = "lockgate.example/ledger/p0"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "home")
    h.ensure()
    key = SigningKey.generate()
    key.save(h.processor_key)
    return h


def _start(home: Home) -> WitnessServer:
    server = build_witness(WitnessSettings(home=home.root, witness_port=0, witness_name="witness.example/w1"))
    server.start()
    return server


@pytest.fixture
def server(home: Home) -> Iterator[WitnessServer]:
    s = _start(home)
    yield s
    s.close()


def _key(home: Home) -> SigningKey:
    return SigningKey.load(home.processor_key)


def note(home: Home, size: int, leaves: Sequence[bytes] = LEAVES, partition: int = 0) -> str:
    cp = build_log_checkpoint(partition=partition, size=size, root=merkle_root(leaves[:size]),
                              head_hash=leaves[size - 1], key=_key(home), processor_id="p", now_us=1)
    return bytes(cp["signature"]).decode()


def post(url: str, body: bytes) -> tuple[int, str | None, bytes]:
    req = urllib.request.Request(f"{url}/add-checkpoint", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read()


def submit(server: WitnessServer, home: Home, old: int, size: int, leaves: Sequence[bytes] = LEAVES) -> int:
    proof = consistency_proof(leaves[:size], old) if old <= size else []
    return post(server.url, add_checkpoint_body(old, proof, note(home, size, leaves)))[0]


def test_cosigns_over_http_and_serves_the_latest(server: WitnessServer, home: Home) -> None:
    text = note(home, 10)
    status, ctype, body = post(server.url, add_checkpoint_body(0, [], text))
    assert status == 200 and ctype is not None and ctype.startswith("text/plain")
    vkey = home.witness_vkey.read_text().strip()
    witness = CosignatureV1Verifier.from_vkey(vkey)
    assert isinstance(read_add_checkpoint_response(status, ctype, body, text, witness), Cosigned)
    with urllib.request.urlopen(f"{server.url}/{hashlib.sha256(ORIGIN.encode()).hexdigest()}/checkpoint") as r:
        latest = r.read().decode()
    opened = open_note(latest, [log_verifier(ORIGIN, _key(home).public()), witness])
    assert len(opened.verified) == 2 and opened.unverified == ()
    with urllib.request.urlopen(f"{server.url}/healthz") as r:
        assert json.loads(r.read())["vkey"] == vkey


def test_refusals_over_http(server: WitnessServer, home: Home) -> None:
    assert submit(server, home, 0, 50) == 200
    status, ctype, body = post(server.url, add_checkpoint_body(10, consistency_proof(LEAVES[:40], 10), note(home, 40)))
    assert (status, ctype, body) == (409, "text/x.tlog.size", b"50\n")  # a replayed old checkpoint
    assert submit(server, home, 50, 40) == 400  # a rollback
    forked = list(LEAVES)
    forked[7] = b"\x01" * 32
    assert submit(server, home, 50, 50, forked) == 422
    assert submit(server, home, 50, 60, forked) == 422
    other_log = build_log_checkpoint(partition=0, size=3, root=merkle_root(LEAVES[:3]), head_hash=LEAVES[2],
                                     key=SigningKey.generate(), processor_id="p", now_us=1)
    assert post(server.url, add_checkpoint_body(50, [], bytes(other_log["signature"]).decode()))[0] == 403
    assert post(server.url, b"old 1\n")[0] == 400
    assert submit(server, home, 50, 60) == 200


def test_unknown_origin_is_404(server: WitnessServer, home: Home) -> None:
    cp = build_log_checkpoint(partition=0, size=3, root=merkle_root(LEAVES[:3]), head_hash=LEAVES[2], key=_key(home),
                              processor_id="p", now_us=1, log_name="elsewhere.example/log")
    assert post(server.url, add_checkpoint_body(0, [], bytes(cp["signature"]).decode()))[0] == 404


def _race(servers: Sequence[WitnessServer], home: Home, old: int, sizes: Sequence[int]) -> dict[int, int]:
    """Submit one checkpoint per size, all from ``old``, at the same moment."""
    bodies = {s: add_checkpoint_body(old, consistency_proof(LEAVES[:s], old), note(home, s)) for s in sizes}
    barrier = threading.Barrier(len(sizes))
    results: dict[int, int] = {}

    def one(i: int, size: int) -> None:
        barrier.wait()
        results[size] = post(servers[i % len(servers)].url, bodies[size])[0]

    threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(sizes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_requests_for_one_log_update_it_atomically(home: Home) -> None:
    """Many requests from the same old size race: exactly one wins, the rest get 409, and the
    recorded size is the winner's — never rolled back by a slower loser. Two servers share the
    state directory, as two witness processes would (the per-origin flock serialises them)."""
    servers = [_start(home), _start(home)]
    try:
        old = 0
        for round_no in range(4):
            sizes = [old + 1 + i for i in range(12)]
            results = _race(servers, home, old, sizes)
            winners = [s for s, status in results.items() if status == 200]
            assert len(winners) == 1, (round_no, results)
            assert sorted(results.values()) == [200] + [409] * 11
            state = servers[0].state.load(ORIGIN)
            assert state is not None and state.size == winners[0]
            old = winners[0]
        assert not [p for p in home.witness_logs.iterdir() if p.name.endswith(".tmp")]
        assert oct(home.witness_logs.joinpath(servers[0].state.path(ORIGIN).name).stat().st_mode & 0o777) == "0o600"
    finally:
        for s in servers:
            s.close()


def test_a_restart_keeps_the_state_and_the_key(home: Home) -> None:
    first = _start(home)
    vkey = home.witness_vkey.read_text()
    try:
        assert submit(first, home, 0, 30) == 200
    finally:
        first.close()
    again = _start(home)
    try:
        assert home.witness_vkey.read_text() == vkey
        status, _, body = post(again.url, add_checkpoint_body(0, [], note(home, 30)))
        assert (status, body) == (409, b"30\n")  # it remembers 30: a replay from 0 is refused
        assert submit(again, home, 30, 31) == 200
    finally:
        again.close()


def test_a_corrupt_state_file_cosigns_nothing(server: WitnessServer, home: Home) -> None:
    assert submit(server, home, 0, 8) == 200
    path = server.state.path(ORIGIN)
    data = json.loads(path.read_text())
    data["size"] = 2  # someone "rolls back" the witness's memory by hand
    path.write_text(json.dumps(data))
    assert submit(server, home, 2, 9) == 500
    assert submit(server, home, 8, 9) == 500


def test_the_witness_key_is_private_and_refused_when_it_is_not(home: Home) -> None:
    server = _start(home)
    server.close()
    assert oct(home.witness_key.stat().st_mode & 0o777) == "0o600"
    os.chmod(home.witness_key, 0o640)
    with pytest.raises(KeyFileUnsafe):
        _start(home)


def test_the_log_client_drives_a_real_witness(server: WitnessServer, home: Home) -> None:
    """The pure client the ledger writer calls, with an HTTP post of 10 lines."""
    witness = CosignatureV1Verifier.from_vkey(home.witness_vkey.read_text())
    log = PartitionLog(0)
    known = 0
    for size in (5, 17, 64, 65):
        while log.size < size:
            log.append(LEAVES[log.size])
        cp = log.checkpoint(_key(home), "p", size)
        result, known_after = submit_checkpoint(lambda b: post(server.url, b), bytes(cp["signature"]).decode(),
                                                known, log.consistency_proof, witness)
        assert isinstance(result, Cosigned), result
        assert known_after == size
        known = size
        log.forget_before(size)


def test_the_same_log_key_configured_twice_counts_once(home: Home) -> None:
    public = _key(home).public()
    vkey = log_verifier(ORIGIN, public).vkey
    logs = TrustedLogs((("lockgate.example/ledger", public),), (log_verifier(ORIGIN, public),))
    assert len(logs.verifiers_for(ORIGIN) or []) == 1
    server = build_witness(WitnessSettings(home=home.root, witness_port=0), [vkey])
    server.start()
    try:
        assert submit(server, home, 0, 4) == 200
    finally:
        server.close()


def test_a_failing_disk_answers_500_and_cosigns_nothing(server: WitnessServer, home: Home,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(server.state, "store", full)
    assert submit(server, home, 0, 4) == 500
    assert server.state.load(ORIGIN) is None
