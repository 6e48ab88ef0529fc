"""``python -m witness`` — what ``lockgate up`` starts when LOCKGATE_START_WITNESS is set —
comes up from LOCKGATE_* alone, answers /healthz, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import deploy.stack as stack_module
from deploy.settings import StackSettings
from deploy.stack import Stack
from lockgate.kernel.home import Home
from trust.keys import SigningKey


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_witness_process_runs_from_the_environment(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.ensure()
    SigningKey.generate().save(home.processor_key)
    port = _free_port()
    env = {**os.environ, "LOCKGATE_HOME": str(home.root), "LOCKGATE_WITNESS_PORT": str(port),
           "LOCKGATE_WITNESS_NAME": "witness.example/demo"}
    proc = subprocess.Popen([sys.executable, "-m", "witness"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and health is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    health = json.loads(r.read())
            except OSError:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.2)
        assert health is not None and health["name"] == "witness.example/demo"
        assert health["vkey"] == home.witness_vkey.read_text().strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_the_stack_starts_a_witness_only_when_asked(tmp_path: Path) -> None:
    off = Stack(StackSettings(home=tmp_path))
    on = Stack(StackSettings(home=tmp_path, start_witness=True))
    svc = stack_module._WITNESS
    assert not off._enabled(svc)
    assert on._enabled(svc)
    assert [c["name"] for c in on.status()["components"]][:2] == ["kafka", "witness"]


def test_the_stack_points_its_workers_at_its_own_witness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCKGATE_WITNESSES", raising=False)
    on = StackSettings(home=tmp_path, start_witness=True, witness_port=18999)
    env = Stack(on)._env(stack_module._worker(1))
    assert env["LOCKGATE_WITNESSES"] == f"http://127.0.0.1:18999={Home(tmp_path).witness_vkey}"
    assert "LOCKGATE_WITNESSES" not in Stack(StackSettings(home=tmp_path))._env(stack_module._worker(1))
    assert "LOCKGATE_WITNESSES" not in Stack(on)._env(stack_module._WITNESS)


def test_an_operator_s_witnesses_win_over_the_stack_s_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_WITNESSES", "https://w.example=/etc/w.vkey")
    env = Stack(StackSettings(home=tmp_path, start_witness=True))._env(stack_module._worker(2))
    assert env["LOCKGATE_WITNESSES"] == "https://w.example=/etc/w.vkey"
