"""Latency the PostgreSQL guard proxy adds per statement, against a direct connection in the same run.

Needs the local stack with the example policy and the proxy's service identity::

    lockgate up && lockgate policy apply processors/policies/example.yaml
    lockgate keys add-service pgproxy
    .venv/bin/python bench/pgproxy_bench.py [N]

and Debian's postgresql (``make postgres-deps``). Starts a private PostgreSQL (trust auth,
no fsync) and a proxy on the stack's broker, and times N sequential
statements with psycopg 3 — direct vs through the proxy (its own process, as deployed), simple and extended protocol,
a read and a write, and a BEGIN/ROLLBACK pair (never judged: the proxy's own relay cost)
— plus ``Guard.check`` alone: the decision round trip the proxy waits for on every
judged statement.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import yaml

from deploy.postgres import PostgresServer, find_postgres_bin
from deploy.settings import StackSettings
from producers import Action, Actor, Guard, GuardSettings


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def run_on(connection: Any, op: Callable[[Any, int], Any], i: int) -> Any:
    return op(connection, i)


def timed(n: int, op: Callable[[int], Any]) -> list[float]:
    for i in range(min(20, n)):
        op(i)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        op(i)
        samples.append(time.perf_counter() - start)
    return samples


class ProxyProcess:
    """The proxy as production runs it: its own process, `lockgate proxy postgres --config FILE`."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        cfg = workdir / "proxy.yaml"
        cfg.write_text(yaml.safe_dump(config))
        self.log = workdir / "proxy.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "lockgate.cli", "proxy", "postgres", "--config",
                                          str(cfg), "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "listening on" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proxy did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        sys.exit("PostgreSQL is not installed: make postgres-deps")
    stack = StackSettings()
    settings = GuardSettings(bootstrap_servers=stack.bootstrap, topic_prefix=stack.topic_prefix, home=stack.home,
                             service="pgproxy", timeout_s=10)
    root = Path(tempfile.mkdtemp(prefix="lockgate-pgbench-"))
    root.chmod(0o755)
    pg = PostgresServer(root / "data", free_port(), bin_dir)
    pg.init(["host all all 127.0.0.1/32 trust"])
    pg.start()
    proxy_port = free_port()
    proxy: ProxyProcess | None = None
    try:
        pg.sql("CREATE DATABASE bench")
        pg.sql("CREATE TABLE t (id serial PRIMARY KEY, v int); "
               "INSERT INTO t (v) SELECT g FROM generate_series(1, 1000) g", database="bench")
        proxy = ProxyProcess({"listen": f"127.0.0.1:{proxy_port}", "upstream": f"127.0.0.1:{pg.port}",
                              "resource": "db/bench/{database}", "service": "pgproxy", "timeout_s": 10}, root)

        def conn(port: int) -> Any:
            return psycopg.connect(host="127.0.0.1", port=port, dbname="bench", user="postgres", autocommit=True,
                                   application_name="pgproxy-bench")

        def begin_rollback(c: Any, _i: int) -> None:
            c.execute("BEGIN")
            c.execute("ROLLBACK")

        workloads: list[tuple[str, Callable[[Any, int], Any]]] = [
            ("BEGIN + ROLLBACK (unjudged: relay only)", begin_rollback),
            ("SELECT 1 (simple protocol)", lambda c, _i: c.execute("SELECT 1").fetchone()),
            ("SELECT by key (extended, $1)", lambda c, i: c.execute("SELECT v FROM t WHERE id = %s",
                                                                    (i % 1000 + 1,)).fetchone()),
            ("INSERT (extended, outcome recorded)", lambda c, i: c.execute("INSERT INTO t (v) VALUES (%s)", (i,))),
        ]
        print(f"{n} sequential statements each; ms per statement (p50 / p95 / p99)")
        with Guard(settings) as guard:
            check = timed(n, lambda _i: guard.check(Action(Actor("bench"), "db.query", "db/bench/bench",
                                                           {"sql": "SELECT 1"})))
        print(f"  {'Guard.check alone (decision round trip)':42s} {pct(check, .5):7.2f} {pct(check, .95):7.2f} "
              f"{pct(check, .99):7.2f}")
        for name, op in workloads:
            with conn(pg.port) as direct, conn(proxy_port) as guarded:
                base = timed(n, partial(run_on, direct, op))
                via = timed(n, partial(run_on, guarded, op))
            added = statistics.median(via) * 1000 - statistics.median(base) * 1000
            print(f"  {name:42s} direct {pct(base, .5):6.2f} {pct(base, .95):6.2f} {pct(base, .99):6.2f}   "
                  f"proxy {pct(via, .5):6.2f} {pct(via, .95):6.2f} {pct(via, .99):6.2f}   added p50 {added:6.2f}")
    finally:
        if proxy is not None:
            proxy.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
