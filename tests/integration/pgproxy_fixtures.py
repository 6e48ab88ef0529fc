"""A real PostgreSQL server and real proxy processes for the guard-proxy integration tests."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.identity import ensure_service
from deploy.postgres import PostgresServer, find_postgres_bin
from producers import Action, Actor
from tests.conftest import free_port
from tests.integration.conftest import ProcessorHandle, wait_for

#: Each user authenticates with another method (pg_hba below); none of these may show in a log.
PASSWORDS = {"alice": "alice-Scram-9f3kQ", "bob": "bob-Md5-2j8dW", "carol": "carol-Clear-7h2qZ"}
PROXY_SERVICE = "pgproxy"

SETUP_SQL = [
    "CREATE ROLE alice LOGIN PASSWORD '{alice}'",
    "SET password_encryption = 'md5'; CREATE ROLE bob LOGIN PASSWORD '{bob}'",
    "CREATE ROLE carol LOGIN PASSWORD '{carol}'",
    "CREATE DATABASE shop OWNER alice",
]
SHOP_SQL = """
CREATE TABLE orders (id int PRIMARY KEY, total int NOT NULL, status text NOT NULL);
INSERT INTO orders SELECT g, g * 10, 'open' FROM generate_series(1, 10) g;
CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
ALTER TABLE orders OWNER TO alice; ALTER TABLE notes OWNER TO alice;
GRANT ALL ON ALL TABLES IN SCHEMA public TO bob, carol;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO bob, carol;
"""


NO_POSTGRES = "PostgreSQL is not installed: run `make postgres-deps` (apt-get install -y postgresql)"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    bin_dir = find_postgres_bin()
    if bin_dir is None:  # test modules skip by marker first (NO_POSTGRES); reaching here is a bug
        pytest.fail(NO_POSTGRES)
    root = Path(tempfile.mkdtemp(prefix="lockgate-pg-"))
    root.chmod(0o755)  # the postgres user must reach its data directory
    server = PostgresServer(root / "data", free_port(), bin_dir)
    server.init(["host all carol 127.0.0.1/32 password", "host all bob 127.0.0.1/32 md5",
                 "host all all 127.0.0.1/32 scram-sha-256"])
    server.start()
    try:
        for statement in SETUP_SQL:
            server.sql(statement.format(**PASSWORDS))
        server.sql(SHOP_SQL, database="shop")
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class ProxyProcess:
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def tls_files(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lockgate-proxy-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "proxy.crt", directory / "proxy.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def register_proxy_service(processor: ProcessorHandle) -> None:
    """Register the proxy's service identity and wait until the processor accepts it."""
    ensure_service(processor.home, PROXY_SERVICE)
    deadline = time.monotonic() + 30
    with processor.guard(service=PROXY_SERVICE) as guard:
        while guard.check(Action(Actor("probe"), "probe", "probe")).basis == "unauthenticated":
            assert time.monotonic() < deadline, "the processor never accepted the proxy's service key"


def start_proxy(processor: ProcessorHandle, config: dict[str, Any], workdir: Path, *,
                topic_prefix: str | None = None, log_level: str = "debug") -> ProxyProcess:
    port = free_port()
    name = f"proxy-{uuid.uuid4().hex[:6]}"
    cfg = workdir / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{port}", "service": PROXY_SERVICE, **config}))
    log = workdir / f"{name}.log"
    env = dict(os.environ)
    env.update({"LOCKGATE_HOME": str(processor.home), "LOCKGATE_BOOTSTRAP_SERVERS": processor.bootstrap,
                "LOCKGATE_TOPIC_PREFIX": topic_prefix or processor.topics.prefix})
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lockgate.cli", "proxy", "postgres", "--config", str(cfg),
                                 "--log-level", log_level], stdout=out, stderr=subprocess.STDOUT, env=env)
    handle = ProxyProcess(port, log, proc)
    try:
        wait_for(lambda: proc.poll() is not None or "listening on" in log.read_text(), 60, "proxy start")
    except AssertionError:
        handle.stop()
        raise
    if proc.poll() is not None:
        raise RuntimeError(f"proxy exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
    return handle
