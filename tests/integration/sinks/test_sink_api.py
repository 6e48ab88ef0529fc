"""HTTP API over real chDB: auth (401/403), tenant isolation, injection-as-data, paging."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from prometheus_client import CollectorRegistry

from sinks.api import ApiServer
from sinks.clickhouse import ConnectClient
from sinks.migrations import migrate
from sinks.query import AuditQueries
from sinks.tokens import TokenStore, create_token
from sinks.writer import BatchWriter
from tests.integration.sinks.sink_fixtures import Events

AUDIT = "lockgate.audit"


@pytest.fixture
def api(ch: ConnectClient, events: Events, tmp_path: Path) -> Iterator[dict[str, Any]]:
    writer = BatchWriter(ch, {AUDIT: "audit", "lockgate.checkpoints": "checkpoint"})
    off = 0
    ids: dict[str, list[str]] = {"acme": [], "globex": []}
    for tenant in ("acme", "globex"):
        for i in range(7):
            aid, act = events.action(tenant=tenant, actor=f"{tenant}-u{i % 2}",
                                     resource=f"db/prod/t{i}")
            ids[tenant].append(aid)
            for rec in (act, events.verdict(aid, tenant=tenant,
                                            decision="block" if i % 2 else "allow"),
                        events.outcome(aid, tenant=tenant, actor=f"{tenant}-u{i % 2}")):
                writer.add(AUDIT, 0, off, rec)
                off += 1
    writer.add("lockgate.checkpoints", 0, 0, events.checkpoint(last=off - 1))
    writer.flush()
    migrate(ch)  # idempotent with data present
    _, acme = create_token(tmp_path, "acme")
    _, admin = create_token(tmp_path, "*")
    server = ApiServer(AuditQueries(ch), TokenStore(tmp_path), port=0,
                       registry=CollectorRegistry())
    server.start()
    try:
        yield {"url": server.url, "acme": acme, "admin": admin, "ids": ids}
    finally:
        server.stop()


def get(api: dict[str, Any], path: str, token: str | None) -> tuple[int, Any]:
    req = urllib.request.Request(api["url"] + path)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, json.loads(body) if "json" in ctype else body
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_missing_and_unknown_token_is_401(api: dict[str, Any]) -> None:
    assert get(api, "/api/actions", None)[0] == 401
    assert get(api, "/api/actions", "lg_nope")[0] == 401


def test_wrong_tenant_is_403(api: dict[str, Any]) -> None:
    status, body = get(api, "/api/actions?tenant=globex", api["acme"])
    assert status == 403 and "acme" in body["error"]


def test_malformed_query_is_400(api: dict[str, Any]) -> None:
    for q in ("since=yesterday", "limit=0", "decision=maybe", "bogus=1", "from=notatime",
              "cursor=%%%"):
        status, body = get(api, f"/api/actions?{q}", api["acme"])
        assert status == 400, q
        assert body["error"]


def test_tenant_isolation(api: dict[str, Any]) -> None:
    status, body = get(api, "/api/actions?limit=100", api["acme"])
    assert status == 200
    assert {a["tenant"] for a in body["actions"]} == {"acme"}
    assert len(body["actions"]) == 7
    other = api["ids"]["globex"][0]
    assert get(api, f"/api/actions/{other}", api["acme"])[0] == 404
    _, all_rows = get(api, "/api/actions?limit=100", api["admin"])
    assert {a["tenant"] for a in all_rows["actions"]} == {"acme", "globex"}
    _, ev = get(api, "/api/events?partition=0&limit=1000", api["acme"])
    assert ev["events"] and {e["tenant"] for e in ev["events"]} == {"acme"}


def test_sql_in_filter_value_is_data(api: dict[str, Any]) -> None:
    evil = quote("x' OR 1=1 --")
    for param in ("actor", "resource", "text", "rule", "service", "type"):
        status, body = get(api, f"/api/actions?{param}={evil}", api["admin"])
        assert status == 200, param
        assert body["actions"] == [], param
    status, _ = get(api, f"/api/actions/{evil}", api["admin"])
    assert status == 404


def test_filters(api: dict[str, Any]) -> None:
    _, body = get(api, "/api/actions?decision=block&limit=100", api["acme"])
    assert len(body["actions"]) == 3
    _, body = get(api, "/api/actions?actor=acme-u0&resource=db/prod/t", api["acme"])
    assert {a["actor_id"] for a in body["actions"]} == {"acme-u0"} and len(body["actions"]) == 4
    _, body = get(api, "/api/actions?rule=no-unbounded-delete&outcome=committed&since=1h",
                  api["acme"])
    assert len(body["actions"]) == 7


def test_paging_offset_and_cursor(api: dict[str, Any]) -> None:
    seen_offset: list[str] = []
    for off in (0, 3, 6):
        _, body = get(api, f"/api/actions?limit=3&offset={off}", api["acme"])
        seen_offset += [a["action_id"] for a in body["actions"]]
    seen_cursor: list[str] = []
    path = "/api/actions?limit=3"
    while True:
        _, body = get(api, path, api["acme"])
        seen_cursor += [a["action_id"] for a in body["actions"]]
        if not body["next_cursor"]:
            break
        path = f"/api/actions?limit=3&cursor={body['next_cursor']}"
    assert seen_offset == seen_cursor
    assert sorted(seen_cursor) == sorted(api["ids"]["acme"])


def test_action_detail_stats_events_checkpoints(api: dict[str, Any]) -> None:
    aid = api["ids"]["acme"][1]
    status, rec = get(api, f"/api/actions/{aid}", api["acme"])
    assert status == 200
    assert [e["kind"] for e in rec["events"]] == ["action", "verdict", "outcome"]
    assert rec["decision"] == "block" and rec["rule_modes"] == ["enforce", "shadow"]
    _, stats = get(api, "/api/stats?since=1h", api["acme"])
    assert sum(b["block"] for b in stats["timeline"]) == 3
    assert sum(b["allow"] for b in stats["timeline"]) == 4
    assert stats["top_blocking_rules"][0]["rule"] in ("no-unbounded-delete", "shadow-rule")
    assert {a["actor"] for a in stats["top_actors"]} == {"acme-u0", "acme-u1"}
    _, ev = get(api, "/api/events?partition=0&after=-1&limit=5", api["admin"])
    seqs = [e["sequence"] for e in ev["events"]]
    assert seqs == [0, 1, 2, 3, 4] and ev["next_after"] == 4
    _, ev2 = get(api, "/api/events?partition=0&after=4&limit=2", api["admin"])
    assert [e["sequence"] for e in ev2["events"]] == [5, 6]
    _, cps = get(api, "/api/checkpoints", api["admin"])
    assert len(cps["checkpoints"]) == 1 and len(cps["checkpoints"][0]["merkle_root_hex"]) == 64
    status, refused = get(api, "/api/checkpoints", api["acme"])  # shared partitions: not one tenant's
    assert status == 403 and "all-tenant" in refused["error"]


def test_metrics_health_dashboard_without_token(api: dict[str, Any]) -> None:
    assert get(api, "/healthz", None)[0] == 200
    status, _body = get(api, "/metrics", None)
    assert status == 200
    status, page = get(api, "/", None)
    assert status == 200 and b"Lockgate" in page
