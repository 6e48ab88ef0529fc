"""A real processor worker submits its whole-log checkpoints to a real witness process.

The pieces were tested apart (the witness protocol in tests/unit/witness, the writer's
submission with a stub, the CLI on a hand-built ledger); here they run together as
``lockgate up`` wires them with ``LOCKGATE_START_WITNESS``: ``python -m witness`` with its
own key, trusting the processor's public key, and a worker given ``LOCKGATE_WITNESSES``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.identity import ensure_processor_key
from deploy.processes import free_port
from lockgate.kernel.home import Home
from producers import Action, Actor
from tests.integration.conftest import ProcessorHandle, start_processor, stop_processor, wait_for, wait_until_deciding
from tests.integration.ledger_readback import Ledger
from trust.cosignature import CosignatureV1Verifier
from trust.keys import Keyring, PublicKey
from trust.tlog import NOTE_FORMAT
from trust.verify.cosignatures import verify_cosignatures

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def witness(test_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``python -m witness`` in its own home, trusting this session's processor key."""
    ensure_processor_key(test_home)
    home = Home(tmp_path_factory.mktemp("witness-home"))
    port = free_port()
    env = {**os.environ, "LOCKGATE_HOME": str(home.root), "LOCKGATE_WITNESS_PORT": str(port),
           "LOCKGATE_WITNESS_LOG_KEY": str(Home(test_home).processor_public_key)}
    log = open(home.root / "witness.log", "ab")  # noqa: SIM115 - closed in the finally
    proc = subprocess.Popen([sys.executable, "-m", "witness"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, (home.root / "witness.log").read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
                return bool(json.loads(r.read())["status"] == "ok")
        except OSError:
            return False

    try:
        wait_for(healthy, what="witness health")
        yield url, home.witness_vkey
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()


@pytest.fixture(scope="module")
def witnessed(kafka_bootstrap: str, test_home: Path, witness: tuple[str, Path],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessorHandle]:
    url, vkey = witness
    prefix = f"w{uuid.uuid4().hex[:8]}."
    log = tmp_path_factory.mktemp("wproc") / "processor.log"
    handle = start_processor(kafka_bootstrap, test_home, prefix, log,
                             extra_env={"LOCKGATE_WITNESSES": f"{url}={vkey}"})
    try:
        wait_until_deciding(handle)
        yield handle
    finally:
        stop_processor(handle)


def _cosigned(checkpoints: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [cp for cp in checkpoints if cp.get("signature_format") == NOTE_FORMAT
            and f"\u2014 {name} ".encode() in cp["signature"]]


def test_checkpoints_carry_a_valid_cosignature_of_the_running_witness(
        witnessed: ProcessorHandle, witness: tuple[str, Path], test_home: Path) -> None:
    _url, vkey = witness
    verifier = CosignatureV1Verifier.from_vkey(vkey.read_text().strip())
    with witnessed.guard() as guard:
        for i in range(20):
            guard.check(Action(Actor(f"user-{i}"), "db.query", "db/dev/x", attributes={"sql": "SELECT 1"}))
    keyring = Keyring([PublicKey.load(Home(test_home).processor_public_key)])

    def cosigned_and_clean() -> tuple[Ledger, list[dict[str, Any]]] | None:
        ledger = Ledger.read(witnessed.bootstrap, witnessed.topics.prefix)
        good = _cosigned(ledger.checkpoints, verifier.name)
        partitions = {e["ledger_partition"] for e in ledger.events}
        if good and not verify_cosignatures(ledger.checkpoints, partitions, keyring, [verifier]):
            return ledger, good
        return None

    ledger, good = wait_for(cosigned_and_clean, timeout_s=90, what="every partition's newest checkpoint cosigned")
    assert ledger.verify(test_home, interval_s=1.0) == []
    assert {cp["ledger_partition"] for cp in good} == {e["ledger_partition"] for e in ledger.events}


def test_a_checkpoint_whose_cosignature_is_altered_is_reported(
        witnessed: ProcessorHandle, witness: tuple[str, Path], test_home: Path) -> None:
    _url, vkey = witness
    verifier = CosignatureV1Verifier.from_vkey(vkey.read_text().strip())

    def with_a_cosigned_checkpoint() -> Ledger | None:
        ledger = Ledger.read(witnessed.bootstrap, witnessed.topics.prefix)
        return ledger if _cosigned(ledger.checkpoints, verifier.name) else None

    ledger = wait_for(with_a_cosigned_checkpoint, timeout_s=90, what="a cosigned checkpoint")
    keyring = Keyring([PublicKey.load(Home(test_home).processor_public_key)])
    target = _cosigned(ledger.checkpoints, verifier.name)[-1]
    text = target["signature"].decode()
    line = next(ln for ln in text.splitlines() if ln.startswith(f"\u2014 {verifier.name} "))
    prefix, _, b64 = line.rpartition(" ")
    flipped = b64[:-6] + ("A" if b64[-6] != "A" else "B") + b64[-5:]
    forged = {**target, "signature": text.replace(line, f"{prefix} {flipped}").encode()}
    others = [cp for cp in ledger.checkpoints if cp is not target]
    findings = verify_cosignatures([*others, forged], {target["ledger_partition"]}, keyring, [verifier])
    assert any(f.kind.value == "forged_cosignature" for f in findings), findings
