"""The PostgreSQL guard proxy with real parts: PostgreSQL 15, a Faust processor, psql and psycopg 3.

The processor applies the example policy (DELETE/UPDATE without WHERE on ``db/prod/*`` and
DROP/TRUNCATE are blocked); the proxy proposes as service ``pgproxy`` with resource
``db/prod/{database}``, records images of ``orders`` and limits statements on ``orders``
to 3 rows.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg", reason="psycopg 3 (dev extra) is not installed")

from psycopg import errors as pg_errors  # noqa: E402
from psycopg.pq import TransactionStatus  # noqa: E402

from deploy.postgres import PostgresServer, find_postgres_bin  # noqa: E402
from lockgate.kernel.topic_admin import ensure_topics  # noqa: E402
from schemas.topics import Topics  # noqa: E402
from tests.integration.conftest import ProcessorHandle  # noqa: E402
from tests.integration.pgproxy_fixtures import (  # noqa: E402
    NO_POSTGRES,
    PASSWORDS,
    ProxyProcess,
    pg,
    register_proxy_service,
    start_proxy,
    tls_files,
)
from tests.integration.test_round_trip import read_topic  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.skipif(find_postgres_bin() is None, reason=NO_POSTGRES)]
__all__ = ["pg"]  # the module fixture, re-exported for pytest

ROW_LIMIT = 3
RULE_LIMIT = 50  # rows a statement may return or change when the verdict matched the shadow rule below


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pgproxy")


@pytest.fixture(scope="module")
def proxy(processor: ProcessorHandle, pg: PostgresServer, workdir: Path) -> Iterator[ProxyProcess]:
    register_proxy_service(processor)
    cert, key = tls_files(workdir)
    handle = start_proxy(processor, {
        "upstream": f"127.0.0.1:{pg.port}",
        "resource": "db/prod/{database}",
        "timeout_s": 10,
        "roles": {"alice": ["dba"]},
        "tls": {"cert": str(cert), "key": str(key)},
        "images": {"tables": {"orders": {"key": ["id"]}}, "max_rows": 5},
        "blast_radius": {"tables": {"orders": ROW_LIMIT}, "rules": {"prod-select-without-limit": RULE_LIMIT}},
    }, workdir)
    try:
        yield handle
    finally:
        handle.stop()


def app_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def connect(proxy: ProxyProcess, app: str, *, user: str = "alice", autocommit: bool = True,
            sslmode: str = "disable") -> Any:
    return psycopg.connect(host="127.0.0.1", port=proxy.port, dbname="shop", user=user, password=PASSWORDS[user],
                           application_name=app, sslmode=sslmode, autocommit=autocommit, connect_timeout=10)


def psql(proxy: ProxyProcess, *commands: str, app: str, user: str = "alice", sslmode: str = "disable",
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run psql (the server's own, next to initdb) against the proxy; each command is one Query."""
    conninfo = (f"host=127.0.0.1 port={proxy.port} dbname=shop user={user} sslmode={sslmode} "
                f"application_name={app}")
    bin_dir = find_postgres_bin()
    assert bin_dir is not None
    args = [str(bin_dir / "psql"), "-X", "-A", "-t", "-v", "VERBOSITY=verbose", conninfo]
    for command in commands:
        args += ["-c", command]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False,
                          env={"PGPASSWORD": PASSWORDS[user], "PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "10"})


def proposal(processor: ProcessorHandle, app: str, sql: str) -> dict[str, Any]:
    return read_topic(processor.bootstrap, processor.topics.actions,
                      lambda r: r["attributes"].get("application_name") == app and r["attributes"].get("sql") == sql,
                      "ProposedAction")


def outcome(processor: ProcessorHandle, app: str, sql: str) -> dict[str, Any]:
    action_id = proposal(processor, app, sql)["action_id"]
    return read_topic(processor.bootstrap, processor.topics.outcomes, lambda r: r["action_id"] == action_id,
                      "ActionOutcome")


def count(pg: PostgresServer, sql: str) -> int:
    return int(pg.sql(sql, database="shop"))


# --- simple query protocol (psql) ----------------------------------------------------------------


def test_psql_allowed_statement_runs_and_its_outcome_has_tag_and_rows(proxy: ProxyProcess,
                                                                      processor: ProcessorHandle) -> None:
    app = app_name()
    sql = f"INSERT INTO notes (body) VALUES ('{app}'), ('{app}')"
    res = psql(proxy, sql, app=app)
    assert res.returncode == 0, res.stderr
    rec = outcome(processor, app, sql)
    assert rec["status"] == "committed"
    after = json.loads(rec["after_json"])
    assert after["command_tag"] == "INSERT 0 2" and after["rows"] == 2
    action = proposal(processor, app, sql)
    assert action["actor"]["id"] == "alice" and action["actor"]["roles"] == ["dba"]
    assert action["resource"] == "db/prod/shop" and action["service"] == "pgproxy"


def test_psql_blocked_delete_gets_42501_rows_stay_and_session_continues(proxy: ProxyProcess,
                                                                         pg: PostgresServer) -> None:
    before = count(pg, "SELECT count(*) FROM orders")
    res = psql(proxy, "DELETE FROM orders", "SELECT count(*) FROM orders", app=app_name())
    assert "ERROR:  42501: lockgate: statement blocked by policy" in res.stderr
    assert "prod-delete-update-without-where" in res.stderr
    assert res.stdout.strip() == str(before)  # the same session answered the next statement
    assert count(pg, "SELECT count(*) FROM orders") == before


def test_multi_statement_string_with_one_blocked_statement_runs_nothing(proxy: ProxyProcess,
                                                                        pg: PostgresServer) -> None:
    app = app_name()
    res = psql(proxy, f"INSERT INTO notes (body) VALUES ('{app}'); DROP TABLE notes; SELECT 1", app=app)
    assert "42501" in res.stderr and "3 statements; none ran" in res.stderr
    assert count(pg, f"SELECT count(*) FROM notes WHERE body = '{app}'") == 0
    assert count(pg, "SELECT count(*) FROM pg_tables WHERE tablename = 'notes'") == 1


def test_multi_statement_string_allowed_maps_each_result(proxy: ProxyProcess, processor: ProcessorHandle) -> None:
    app = app_name()
    first = f"INSERT INTO notes (body) VALUES ('{app}')"
    second = f"UPDATE notes SET body = 'x{app}' WHERE body = '{app}'"
    res = psql(proxy, f"BEGIN; {first}; {second}; COMMIT", app=app)
    assert res.returncode == 0, res.stderr
    assert json.loads(outcome(processor, app, first)["after_json"])["command_tag"] == "INSERT 0 1"
    updated = outcome(processor, app, second)
    assert updated["status"] == "committed" and json.loads(updated["after_json"])["rows"] == 1


def test_rollback_to_savepoint_marks_only_the_later_statement_rolled_back(proxy: ProxyProcess,
                                                                         processor: ProcessorHandle,
                                                                         pg: PostgresServer) -> None:
    app = app_name()
    kept = f"INSERT INTO notes (body) VALUES ('{app}-kept')"
    undone = f"INSERT INTO notes (body) VALUES ('{app}-undone')"
    res = psql(proxy, f"BEGIN; {kept}; SAVEPOINT s1; {undone}; ROLLBACK TO SAVEPOINT s1; COMMIT", app=app)
    assert res.returncode == 0, res.stderr
    assert outcome(processor, app, kept)["status"] == "committed"
    rolled = outcome(processor, app, undone)
    assert rolled["status"] == "failed" and rolled["error_type"] == "RolledBack"
    assert count(pg, f"SELECT count(*) FROM notes WHERE body LIKE '{app}-%'") == 1


def test_copy_from_stdin_is_judged_and_its_data_relayed(proxy: ProxyProcess, processor: ProcessorHandle,
                                                         pg: PostgresServer) -> None:
    app = app_name()
    bin_dir = find_postgres_bin()
    assert bin_dir is not None
    res = subprocess.run(
        [str(bin_dir / "psql"), "-X", f"host=127.0.0.1 port={proxy.port} dbname=shop user=alice sslmode=disable "
         f"application_name={app}", "-c", "\\copy notes (body) FROM STDIN"],
        input=f"{app}\n{app}\n", capture_output=True, text=True, timeout=60, check=False,
        env={"PGPASSWORD": PASSWORDS["alice"]})
    assert res.returncode == 0, res.stderr
    assert count(pg, f"SELECT count(*) FROM notes WHERE body = '{app}'") == 2
    action = read_topic(processor.bootstrap, processor.topics.actions,
                        lambda r: r["attributes"].get("application_name") == app, "ProposedAction")
    assert str(action["attributes"]["sql"]).upper().startswith("COPY")  # psql spells \copy its own way
    rec = outcome(processor, app, str(action["attributes"]["sql"]))
    assert json.loads(rec["after_json"]) == {"command_tag": "COPY 2", "rows": 2}


def test_unparseable_sql_is_proposed_and_follows_on_error(proxy: ProxyProcess, processor: ProcessorHandle) -> None:
    app = app_name()
    res = psql(proxy, "DELETE FROM orders WHERE", app=app)
    assert "42501" in res.stderr and "basis evaluation_error" in res.stderr
    assert proposal(processor, app, "DELETE FROM orders WHERE")["type"] == "db.query"


# --- extended protocol (psycopg 3) ---------------------------------------------------------------


def test_psycopg_simple_and_extended_protocol_block_and_session_continues(proxy: ProxyProcess,
                                                                          pg: PostgresServer) -> None:
    app = app_name()
    with connect(proxy, app) as conn:
        with pytest.raises(pg_errors.InsufficientPrivilege) as simple:
            conn.execute("DELETE FROM notes")  # no parameters: simple query protocol
        assert "prod-delete-update-without-where" in (simple.value.diag.message_detail or "")
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("DELETE FROM notes WHERE %s = %s", (1, 1))  # extended: blocked at Execute
        assert conn.execute("SELECT count(*) FROM notes WHERE id > %s", (0,)).fetchone()[0] > 0
    assert count(pg, "SELECT count(*) FROM notes") > 0


def test_extended_protocol_is_judged_at_execute_not_at_parse(proxy: ProxyProcess, pg: PostgresServer) -> None:
    """libpq's PQprepare (Parse, Sync) succeeds; PQexecPrepared (Bind, Describe, Execute, Sync) is refused."""
    from psycopg import pq

    before = count(pg, "SELECT count(*) FROM notes")
    with connect(proxy, app_name()) as conn:
        prepared = conn.pgconn.prepare(b"wipe", b"DELETE FROM notes")
        assert prepared.status == pq.ExecStatus.COMMAND_OK
        executed = conn.pgconn.exec_prepared(b"wipe", [])
        assert executed.status == pq.ExecStatus.FATAL_ERROR
        assert executed.error_field(pq.DiagnosticField.SQLSTATE) == b"42501"
        assert conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert count(pg, "SELECT count(*) FROM notes") == before


def test_prepared_statement_is_judged_at_every_execution(proxy: ProxyProcess, processor: ProcessorHandle,
                                                         pg: PostgresServer) -> None:
    app = app_name()
    sql = "INSERT INTO notes (body) VALUES ($1)"
    with connect(proxy, app) as conn:
        for i in range(3):
            conn.execute("INSERT INTO notes (body) VALUES (%s)", (f"{app}-{i}",), prepare=True)
    assert count(pg, f"SELECT count(*) FROM notes WHERE body LIKE '{app}-%'") == 3
    seen: set[str] = set()

    def distinct(r: dict[str, Any]) -> bool:
        if r["attributes"].get("application_name") == app and r["attributes"].get("sql") == sql:
            seen.add(r["action_id"])
        return len(seen) == 3

    read_topic(processor.bootstrap, processor.topics.actions, distinct, "ProposedAction")
    rec = outcome(processor, app, sql)
    assert rec["status"] == "committed" and json.loads(rec["after_json"])["command_tag"] == "INSERT 0 1"


def test_pipeline_block_rolls_back_the_implicit_transaction(proxy: ProxyProcess, pg: PostgresServer) -> None:
    """Like any error in a pipeline: the statements before it up to Sync roll back with it."""
    app = app_name()
    with connect(proxy, app) as conn:
        with pytest.raises(pg_errors.InsufficientPrivilege):
            with conn.pipeline():
                conn.execute("INSERT INTO notes (body) VALUES (%s)", (app,))
                conn.execute("DROP TABLE notes")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert count(pg, f"SELECT count(*) FROM notes WHERE body = '{app}'") == 0


def test_block_inside_transaction_aborts_it_and_outcome_is_rolled_back(proxy: ProxyProcess,
                                                                       processor: ProcessorHandle,
                                                                       pg: PostgresServer) -> None:
    app = app_name()
    with connect(proxy, app, autocommit=False) as conn:
        conn.execute("INSERT INTO notes (body) VALUES (%s)", (app,))
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("TRUNCATE notes")
        assert conn.info.transaction_status == TransactionStatus.INERROR  # as after any error
        conn.rollback()
        conn.execute("INSERT INTO notes (body) SELECT %s", (app + "-2",))
        conn.commit()
    assert count(pg, f"SELECT count(*) FROM notes WHERE body = '{app}'") == 0
    rolled = outcome(processor, app, "INSERT INTO notes (body) VALUES ($1)")
    assert rolled["status"] == "failed" and rolled["error_type"] == "RolledBack"
    assert count(pg, f"SELECT count(*) FROM notes WHERE body = '{app}-2'") == 1


# --- what data changed, and blast radius ---------------------------------------------------------


def test_update_records_before_and_after_images(proxy: ProxyProcess, processor: ProcessorHandle) -> None:
    app = app_name()
    sql = "UPDATE orders SET status = 'paid' WHERE id = 2"
    res = psql(proxy, sql, app=app)
    assert res.returncode == 0, res.stderr
    rec = outcome(processor, app, sql)
    before, after = json.loads(rec["before_json"]), json.loads(rec["after_json"])
    assert rec["status"] == "committed" and after["command_tag"] == "UPDATE 1"
    status = before["columns"].index("status")
    assert before["table"] == "orders" and [r[status] for r in before["rows"]] == ["open"]
    assert [r[status] for r in after["image"]["rows"]] == ["paid"]


def test_extended_delete_records_before_image_with_parameters(proxy: ProxyProcess,
                                                              processor: ProcessorHandle) -> None:
    app = app_name()
    with connect(proxy, app) as conn:
        conn.execute("DELETE FROM orders WHERE id = %s AND status <> %s", (10, "gone"))
    rec = outcome(processor, app, "DELETE FROM orders WHERE id = $1 AND status <> $2")
    before = json.loads(rec["before_json"])
    assert [r[before["columns"].index("id")] for r in before["rows"]] == ["10"]
    assert json.loads(rec["after_json"])["image"]["rows"] == []


@pytest.mark.parametrize("client", ["psql", "psycopg"])
def test_blast_radius_over_the_limit_is_rolled_back(proxy: ProxyProcess, processor: ProcessorHandle,
                                                    pg: PostgresServer, client: str) -> None:
    app = app_name()
    totals = pg.sql("SELECT string_agg(total::text, ',' ORDER BY id) FROM orders", database="shop")
    if client == "psql":
        res = psql(proxy, "UPDATE orders SET total = total + 1 WHERE id <= 5", "SELECT 7", app=app)
        assert "42501" in res.stderr and f"over the limit of {ROW_LIMIT}" in res.stderr
        assert res.stdout.strip() == "7"
        sql = "UPDATE orders SET total = total + 1 WHERE id <= 5"
    else:
        with connect(proxy, app, autocommit=False) as conn:
            with pytest.raises(pg_errors.InsufficientPrivilege, match="over the limit"):
                conn.execute("UPDATE orders SET total = total + %s WHERE id <= %s", (1, 5))
            assert conn.info.transaction_status == TransactionStatus.INERROR
            conn.rollback()
        sql = "UPDATE orders SET total = total + $1 WHERE id <= $2"
    assert pg.sql("SELECT string_agg(total::text, ',' ORDER BY id) FROM orders", database="shop") == totals
    rec = outcome(processor, app, sql)
    assert rec["status"] == "failed" and rec["error_type"] == "RowLimitExceeded"
    assert json.loads(rec["after_json"])["rows"] == 5


def test_a_limit_can_come_from_a_rule_the_verdict_matched(proxy: ProxyProcess) -> None:
    """The example policy's shadow rule prod-select-without-limit matched: at most 50 rows."""
    with connect(proxy, app_name()) as conn:
        assert len(conn.execute("SELECT g FROM generate_series(1, 50) g").fetchall()) == RULE_LIMIT
        with pytest.raises(pg_errors.InsufficientPrivilege, match="rule prod-select-without-limit"):
            conn.execute("SELECT g FROM generate_series(1, %s) g", (RULE_LIMIT + 1,))
        assert len(conn.execute("SELECT g FROM generate_series(1, 500) g LIMIT 500").fetchall()) == 500


def test_within_the_limit_commits(proxy: ProxyProcess, pg: PostgresServer) -> None:
    app = app_name()
    with connect(proxy, app) as conn:
        cur = conn.execute("UPDATE orders SET total = total WHERE id <= %s", (ROW_LIMIT,))
        assert cur.rowcount == ROW_LIMIT


# --- who acted: authentication relay, TLS, no password in any log --------------------------------


@pytest.mark.parametrize("user", ["alice", "bob", "carol"])  # SCRAM-SHA-256, MD5, cleartext
def test_each_auth_method_is_relayed(proxy: ProxyProcess, processor: ProcessorHandle, user: str) -> None:
    app = app_name()
    with connect(proxy, app, user=user) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (user,)
    assert proposal(processor, app, "SELECT current_user")["actor"]["id"] == user


def test_wrong_password_is_refused_by_the_server(proxy: ProxyProcess) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=proxy.port, dbname="shop", user="alice", password="wrong",
                        sslmode="disable", connect_timeout=10)


def test_tls_sslmode_require(proxy: ProxyProcess) -> None:
    app = app_name()
    with connect(proxy, app, sslmode="require") as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1").fetchone() == (1,)
    res = psql(proxy, "SELECT 41 + 1", app=app, sslmode="require")
    assert res.returncode == 0 and res.stdout.strip() == "42", res.stderr


def test_no_password_in_any_log_or_topic(proxy: ProxyProcess, processor: ProcessorHandle) -> None:
    for user in PASSWORDS:  # make sure every auth method ran at least once in this session
        with connect(proxy, app_name(), user=user) as conn:
            conn.execute("SELECT 1")
    texts = [proxy.log.read_bytes(), processor.log.read_bytes()]
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": processor.bootstrap, "group.id": "pw-scan", "enable.auto.commit": False})
    for topic in (processor.topics.actions, processor.topics.outcomes, processor.topics.audit_intake,
                  processor.topics.decisions):
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        idle = 0
        while idle < 5:
            msg = consumer.poll(0.2)
            if msg is None:
                idle += 1
                continue
            if not msg.error():
                texts.append(msg.value() or b"")
    consumer.close()
    assert b"DEBUG" in texts[0]  # the proxy logged at debug level, and still no password
    for password in PASSWORDS.values():
        assert all(password.encode() not in text for text in texts), password


# --- fail-closed ---------------------------------------------------------------------------------


TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def proxy_without_processor(processor: ProcessorHandle, pg: PostgresServer, workdir: Path,
                            kafka_bootstrap: str) -> Iterator[ProxyProcess]:
    """A proxy whose topics no processor reads: the decision path is down."""
    idle = Topics("idle-" + processor.topics.prefix)
    ensure_topics(kafka_bootstrap, idle)
    down = start_proxy(processor, {"upstream": f"127.0.0.1:{pg.port}", "timeout_s": TIMEOUT_S}, workdir,
                       topic_prefix=idle.prefix)
    try:
        yield down
    finally:
        down.stop()


def test_processor_down_refuses_within_the_timeout(proxy_without_processor: ProxyProcess,
                                                   pg: PostgresServer) -> None:
    app = app_name()
    with connect(proxy_without_processor, app) as conn:
        for _ in range(2):  # the session stays usable, and refuses again
            start = time.monotonic()
            with pytest.raises(pg_errors.SystemError, match="did not answer"):
                conn.execute("INSERT INTO notes (body) VALUES (%s)", (app,))
            assert TIMEOUT_S <= time.monotonic() - start < TIMEOUT_S + 3.0
    assert count(pg, f"SELECT count(*) FROM notes WHERE body = '{app}'") == 0


def test_without_a_certificate_the_proxy_answers_no_to_tls(proxy_without_processor: ProxyProcess) -> None:
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        connect(proxy_without_processor, app_name(), sslmode="require")
    with connect(proxy_without_processor, app_name(), sslmode="prefer") as conn:
        assert not conn.pgconn.ssl_in_use


def test_cancel_request_ends_the_wait_for_a_verdict(proxy_without_processor: ProxyProcess,
                                                    pg: PostgresServer) -> None:
    app = app_name()
    with connect(proxy_without_processor, app) as conn:
        timer = threading.Timer(0.2, conn.cancel_safe)  # Ctrl-C in psql does the same
        timer.start()
        start = time.monotonic()
        with pytest.raises(pg_errors.QueryCanceled, match="waiting for the verdict"):
            conn.execute("INSERT INTO notes (body) VALUES (%s)", (app,))
        assert time.monotonic() - start < TIMEOUT_S
        timer.join()
    assert count(pg, f"SELECT count(*) FROM notes WHERE body = '{app}'") == 0
