"""The worker's supervisor restarts a worker that exits on its own, and only then."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from processors.supervisor import supervise


def _script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "child.py"
    path.write_text(body)
    return [sys.executable, str(path)]


def test_a_worker_that_exits_on_its_own_is_restarted_until_it_is_configured_wrong(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cmd = _script(tmp_path, f"""
import os, sys
p = {str(runs)!r}
n = len(open(p).read()) if os.path.exists(p) else 0
open(p, "a").write("x")
assert os.environ["LOCKGATE_WORKER_CHILD"] == "1"
sys.exit([70, 0, 1, 2][n])
""")
    waits: list[float] = []
    assert supervise(cmd, sleep=waits.append) == 2  # status 2 (configuration) is final
    assert runs.read_text() == "xxxx"
    assert waits == [0.5, 1.0, 2.0]  # backoff doubles


def test_sigterm_stops_the_worker_and_is_not_followed_by_a_restart(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    child = _script(tmp_path, f"""
import signal, sys, time, pathlib
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
pathlib.Path({str(ready)!r}).write_text("up")
time.sleep(60)
""")
    proc = subprocess.Popen([sys.executable, "-c",
                             "import sys; from processors.supervisor import supervise; "
                             f"sys.exit(supervise({child!r}))"], cwd=Path(__file__).resolve().parents[3])
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    ready.unlink()
    time.sleep(1.0)  # a restart would recreate the file within this window
    assert not ready.exists()


def test_kill_9_of_the_supervisor_takes_the_worker_with_it(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    child = _script(tmp_path, f"""
import os, time, pathlib
pathlib.Path({str(pidfile)!r}).write_text(str(os.getpid()))
time.sleep(60)
""")
    proc = subprocess.Popen([sys.executable, "-c",
                             "import sys; from processors.supervisor import supervise; "
                             f"sys.exit(supervise({child!r}))"], cwd=Path(__file__).resolve().parents[3])
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 10
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the worker outlived its supervisor"
        time.sleep(0.05)
