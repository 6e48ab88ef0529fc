"""The ledger's witness client without HTTP: the writer's whole-log checkpoints, cosigned by
an in-memory witness (the pure ``add_checkpoint``), across a restart of the writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lockgate.kernel.home import Home
from processors.ledger_writer import LedgerWriter
from processors.witnesses import Witness, Witnesses, parse_witnesses
from schemas.records import AuditKind, audit_event, event_id_for
from trust.cosignature import CosignatureV1Signer
from trust.errors import TlogFormatError
from trust.keys import Keyring, SigningKey
from trust.note import NoteVerifier
from trust.tlog import DEFAULT_LOG_NAME, log_verifier, origin_for
from trust.tlog_witness import WitnessedCheckpoint, add_checkpoint, parse_add_checkpoint
from trust.verify import CoverageRule, verify_ledger
from witness import WitnessSettings, build_witness

KEY = SigningKey.generate()
RING = Keyring([KEY.public()])
SIGNER = CosignatureV1Signer("witness.example/w1", SigningKey.generate())
ORIGIN = origin_for(DEFAULT_LOG_NAME, 0)


class FakeWitness:
    def __init__(self) -> None:
        self.latest: WitnessedCheckpoint | None = None
        self.now = 1_700_000_000
        self.down = False
        self.requests = 0

    def post(self, body: bytes) -> tuple[int, str | None, bytes]:
        self.requests += 1
        if self.down:
            raise ConnectionRefusedError("down")
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


def intake(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [audit_event(AuditKind.ACTION, "acme", f"a{i}", b"payload %d" % i, now_us=1_000 + i,
                        event_id=event_id_for(AuditKind.ACTION, "lockgate.actions", 0, i))
            for i in range(start, start + n)]


def writer() -> LedgerWriter:
    return LedgerWriter(KEY, "proc-test", checkpoint_every=3, checkpoint_interval_s=5.0, dedup_window=4,
                        keep_proofs=True)


def test_checkpoints_are_cosigned_across_a_restart_and_verify_with_the_witness_key() -> None:
    fake = FakeWitness()
    witnesses = Witnesses([Witness("http://w1.invalid", SIGNER.verifier, fake.post)])
    log: list[dict[str, Any]] = []
    published: list[dict[str, Any]] = []

    def run(w: LedgerWriter, start: int) -> None:
        log.extend(c for c in (w.append(0, ev, 0.0) for ev in intake(3, start=start)) if c)
        for cp in w.due_checkpoints(0.0, start + 1):
            published.append(cp)
            cosigned = witnesses.cosign(cp, w.partition_log(0))
            assert cosigned is not None
            published.append(cosigned)
            w.forget_before(0, witnesses.keep_from(w.partition_log(0)))

    w = writer()
    w.recover(0, [], None)
    run(w, 0)
    run(w, 3)
    assert w.partition_log(0).base_size == 6  # the witness holds 6: nothing older is kept
    fake.down = True
    run_down = w.append(0, intake(1, start=6)[0], 0.0)
    assert run_down is not None
    log.append(run_down)
    (cp,) = w.due_checkpoints(10.0, 7)
    published.append(cp)
    assert witnesses.cosign(cp, w.partition_log(0)) is None  # logged, skipped; not fatal
    fake.down = False
    # A new owner (fresh witness client: sizes unknown) rebuilds from the stored hashes;
    # the witness's 409 names size 6, and the proof from 6 comes from the rebuilt log.
    w2 = writer()
    witnesses.known.clear()
    w2.recover(0, log[-4:], cp["last_sequence"], [e["hash"] for e in log])
    run(w2, 7)
    assert fake.latest is not None and fake.latest.size == 10
    findings = verify_ledger(log, published, RING, coverage=CoverageRule(1, 10**15),
                             witnesses=[SIGNER.verifier], log_name=DEFAULT_LOG_NAME)
    assert findings == []


def test_parse_witnesses(tmp_path: Path) -> None:
    vkey = tmp_path / "w.vkey"
    vkey.write_text(SIGNER.verifier.vkey + "\n")
    (parsed,) = parse_witnesses(f"http://127.0.0.1:8742={vkey}")
    assert parsed.url == "http://127.0.0.1:8742" and parsed.verifier.vkey == SIGNER.verifier.vkey
    assert parse_witnesses("") == []
    with pytest.raises(ValueError, match="URL=VKEY-FILE"):
        parse_witnesses("http://w1.invalid")
    with pytest.raises(ValueError, match="verifier key"):
        parse_witnesses(f"http://w1.invalid={tmp_path / 'missing.vkey'}")
    with pytest.raises(ValueError, match="http"):
        parse_witnesses(f"ftp://w1.invalid={vkey}")


def test_over_http_with_the_real_witness_server(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.ensure()
    KEY.save(home.processor_key)
    server = build_witness(WitnessSettings(home=home.root, witness_port=0, witness_name="witness.example/w1"))
    server.start()
    try:
        vkey = tmp_path / "w1.vkey"
        vkey.write_text(server.signer.verifier.vkey + "\n")
        witnesses = Witnesses(parse_witnesses(f"{server.url}={vkey}"))
        w = writer()
        w.recover(0, [], None)
        log: list[dict[str, Any]] = []
        published: list[dict[str, Any]] = []
        for start in (0, 3, 6):
            log.extend(c for c in (w.append(0, ev, 0.0) for ev in intake(3, start=start)) if c)
            for cp in w.due_checkpoints(0.0, start + 1):
                cosigned = witnesses.cosign(cp, w.partition_log(0))
                assert cosigned is not None
                published += [cp, cosigned]
                w.forget_before(0, witnesses.keep_from(w.partition_log(0)))
        assert witnesses.known == {(server.url, ORIGIN): 9}
        assert verify_ledger(log, published, RING, witnesses=[server.signer.verifier], log_name=DEFAULT_LOG_NAME) == []
    finally:
        server.close()
