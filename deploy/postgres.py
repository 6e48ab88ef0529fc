"""A private PostgreSQL server for the guard proxy's tests, benchmark and demo.

Uses Debian's ``postgresql`` package (``apt-get install -y postgresql``; ``make
postgres-deps`` does it). ``initdb`` and the server refuse to run as root, so under root
they run as the ``postgres`` user the package creates (``runuser -u postgres``), in a
data directory that user owns. The server listens on 127.0.0.1 on the given port and
on a Unix socket inside its data directory (for the superuser's own set-up); it is tuned
for throwaway use (no fsync) and never touches the system's own clusters.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import ProcessFailed

__all__ = ["PostgresServer", "find_postgres_bin"]


def find_postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<v>/bin`` holding initdb (or ``pg_config --bindir``)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    return None


@dataclass
class PostgresServer:
    """One throwaway cluster: ``init`` once, ``start``, ``sql`` as the superuser, ``stop``."""

    data_dir: Path
    port: int
    bin_dir: Path

    @property
    def _as_owner(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*self._as_owner, *args], capture_output=True, text=True, timeout=120, check=False)
        if res.returncode != 0:
            raise ProcessFailed(f"{Path(args[0]).name} failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
        return res

    def init(self, hba: list[str]) -> None:
        """Create the cluster with ``hba`` as its pg_hba.conf (a local trust line is added first)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
        self.data_dir.chmod(0o700)
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        (self.data_dir / "pg_hba.conf").write_text("\n".join(["local all all trust", *hba]) + "\n")

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.data_dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB "
                   "-c max_connections=50 -c log_min_messages=warning")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-o", options,
                  "-l", str(self.data_dir / "server.log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        subprocess.run([*self._as_owner, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                        "-w", "-t", "60", "stop"], capture_output=True, timeout=90, check=False)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run ``statement`` as the superuser over the Unix socket; return psql's unaligned output."""
        res = subprocess.run([str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-h", str(self.data_dir), "-p", str(self.port), "-U", "postgres", "-d", database,
                              "-c", statement], capture_output=True, text=True, timeout=60, check=False)
        if res.returncode != 0:
            raise ProcessFailed(f"psql failed: {res.stderr.strip()}")
        return res.stdout.strip()
