"""Background processes tracked by pid files, and the ports they need.

A pid file holds ``<pid> <start-time-ticks>``: the kernel start time guards against a
recycled pid, so ``down`` never signals a stranger that inherited the number.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from deploy.errors import PortInUse

__all__ = ["ManagedProcess", "check_port_free", "free_port", "port_holder"]


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) follows the parenthesised command, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def port_holder(port: int) -> str:
    """Best-effort description of the process listening on ``port``."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    if "users:((" in out:
        inner = out.split("users:((", 1)[1].split("))", 1)[0]
        parts = inner.split(",")
        name = parts[0].strip('"')
        pid = next((p.split("=", 1)[1] for p in parts if p.startswith("pid=")), "?")
        return f"process {name!r} (pid {pid})"
    return "another process (run `ss -ltnp` to see which)"


def free_port() -> int:
    """A loopback port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int) -> None:
    """Raise :class:`PortInUse` naming the holder if ``port`` cannot be bound on loopback."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise PortInUse(port, port_holder(port)) from None


class ManagedProcess:
    """A stack process: how to start it, where its pid file and log live."""

    def __init__(self, name: str, pidfile: Path, logfile: Path) -> None:
        self.name = name
        self.pidfile = pidfile
        self.logfile = logfile
        self._proc: subprocess.Popen[bytes] | None = None

    def pid(self) -> int | None:
        """The live pid from the pid file, or ``None`` (stale files are removed)."""
        try:
            raw = self.pidfile.read_text().split()
            pid, ticks = int(raw[0]), raw[1]
        except (OSError, ValueError, IndexError):
            return None
        if _start_ticks(pid) != ticks:
            self.pidfile.unlink(missing_ok=True)
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> int:
        """Start detached (own session), output appended to the log file; return the pid."""
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        ticks = _start_ticks(proc.pid) or "0"
        self.pidfile.write_text(f"{proc.pid} {ticks}\n")
        self._proc = proc
        return proc.pid

    def exited(self) -> int | None:
        """Exit code if this process (started here) has exited, else ``None``."""
        proc = self._proc
        if proc is None:
            return None if self.running() else -1
        return proc.poll()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL. Return True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _start_ticks(pid) is not None:
            self._reap(pid)
            if _is_zombie(pid):
                break
            time.sleep(0.05)
        if _start_ticks(pid) is not None and not _is_zombie(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._reap(pid)
        self.pidfile.unlink(missing_ok=True)
        return True

    def _reap(self, pid: int) -> None:
        if self._proc is not None and self._proc.pid == pid:
            self._proc.poll()
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
