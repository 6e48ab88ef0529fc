"""Read-only HTTP API over the audit trail, plus the dashboard, /metrics and /healthz.

Routes (GET, except the one POST):

==========================  ========================================================
``/api/actions``            one row per action; filters: actor service resource type
                            decision rule outcome text tenant since|from,to; paging:
                            limit + offset, or cursor (keyset, from ``next_cursor``)
``/api/actions/{id}``       one action rendered from its chained payloads, with what was
                            checked: chain, signed checkpoint, stored views
                            (:mod:`sinks.action_record`)
``/api/stats``              allow/block over time, top blocking rules, top actors
``/api/events``             raw ledger rows: ``partition``, ``after`` (sequence), limit
``/api/checkpoints``        signed checkpoints: ``partition``, ``after``, limit (all-tenant tokens only)
``/api/verify/events``      ledger rows plus their stored derived columns, paged like
                            ``/api/events``, or ``actions`` (a JSON array of ids): every
                            row of those actions (all-tenant tokens only)
``/api/verify/summary``     ``action_summary`` folded per (tenant, day, action); paging:
                            limit, after_tenant + after_day + after_action; or ``actions``
                            (all-tenant only)
``/api/reviews``            the review inbox: open reviews and the latest decided ones,
                            from the live fold of the reviews topic (:mod:`sinks.review_inbox`)
``POST /api/reviews/{id}/vote``  ``{"vote": "approve"|"deny", "reason": TEXT}``: a vote as the
                            token's reviewer, signed with that reviewer's key; 200 accepted,
                            409 refused (decided, expired, voted already), 403 a security
                            refusal (self-approval, not an approver), 202 not yet read back
``/metrics``                Prometheus text (no auth: carries no audit data)
``/healthz``                liveness + ClickHouse reachability (no auth)
``/``                       the dashboard (static; its data calls need a token)
``/reviews``                the review inbox page (static; needs a token)
==========================  ========================================================

Auth: ``Authorization: Bearer <token>`` on every ``/api`` route. 401 for a missing or
unknown token, 403 when a ``tenant`` parameter names a tenant the token may not see, 400
for a malformed query. The token's tenant is forced into every query server-side.
A reviewer token (:mod:`sinks.tokens`) reaches only ``/api/reviews`` and the vote route,
and votes only as its reviewer; a read token reads the inbox but gets 403 on a vote.
Checkpoints sign ledger partitions that every tenant shares (their sizes and heads say how
much all tenants did), so only an all-tenant token may read them: 403 otherwise.

The ``/api/verify`` routes serve ``verify`` through a running sink (the embedded store has
one owner): they stream the stored values and the CLI compares them with the payloads it
chain-checks from the same response (:mod:`sinks.view_check`) — the sink serves data, it
does not vouch for it. All-tenant only: the summary and the ledger partitions are shared.
The single-action view is checked here, in the sink, with the processor public key the
``keyring`` loader gives; a tenant-scoped token gets only booleans about records and
checkpoints outside its tenant.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from sinks.action_record import KeyringLoader
from sinks.errors import AuthError, QueryRejected, SinkError
from sinks.query import AuditQueries, parse_action_filter, parse_time_range
from sinks.tokens import TokenInfo, TokenStore
from trust.errors import ReviewNotFound, TrustError
from trust.review_votes import VOTES, VoteResult

__all__ = ["ApiServer", "Inbox"]

_MAX_BODY = 16 * 1024
_REVIEW_ROUTES = ("/api/reviews",)
_VOTE_STATUS = {"accepted": 200, "refused": 409, "security": 403, "unknown": 202}


class Inbox(Protocol):
    """What the API needs of the review inbox (:class:`sinks.review_inbox.ReviewInbox`)."""

    def listing(self, tenant: str | None) -> dict[str, Any]: ...

    def vote(self, reviewer: str, tenant: str | None, ref: str, vote: str, reason: str) -> VoteResult: ...

_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}


def _static(name: str) -> tuple[bytes, str] | None:
    if "/" in name or name.startswith("."):
        return None
    suffix = name[name.rfind("."):] if "." in name else ""
    if suffix not in _STATIC_TYPES:
        return None
    node = resources.files("sinks").joinpath("static").joinpath(name)
    if not node.is_file():
        return None
    return node.read_bytes(), _STATIC_TYPES[suffix]


def _scope(token: TokenInfo, params: Mapping[str, str]) -> str | None:
    """The tenant a request may see: forced from the token; ``None`` = all tenants."""
    asked = params.get("tenant") or None
    if token.all_tenants:
        return asked
    if asked is not None and asked != token.tenant:
        raise AuthError(f"this token is for tenant {token.tenant!r}, not {asked!r}", 403)
    return token.tenant


def _int_param(params: Mapping[str, str], name: str, default: int | None,
               lo: int, hi: int) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryRejected(f"{name}={raw[:20]!r} must be an integer") from None
    if not lo <= value <= hi:
        raise QueryRejected(f"{name}={value} is out of range; allowed {lo}..{hi}")
    return value


_MAX_ACTIONS = 100


def _action_list(params: Mapping[str, str]) -> list[str] | None:
    """``actions``: a JSON array of at most 100 action ids (``verify``'s recheck), or None."""
    raw = params.get("actions")
    if raw is None:
        return None
    try:
        ids = json.loads(raw)
    except ValueError:
        ids = None
    if (not isinstance(ids, list) or not 1 <= len(ids) <= _MAX_ACTIONS
            or not all(isinstance(i, str) and 0 < len(i) <= 512 for i in ids)):
        raise QueryRejected(f"actions must be a JSON array of 1..{_MAX_ACTIONS} action ids")
    return ids


def _only(params: Mapping[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed - {"token"})
    if unknown:
        raise QueryRejected(
            f"unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


class ApiServer:
    """The sink's HTTP server. ``start()`` serves in a daemon thread; ``stop()`` shuts down.

    ``health()`` returns extra fields for /healthz (e.g. consumer state); the server adds
    whether ClickHouse answers ``SELECT 1``. ``keyring`` loads the processor's public key
    for the single-action view's checkpoint check (without it: "unchecked").
    """

    def __init__(
        self,
        queries: AuditQueries,
        tokens: TokenStore,
        host: str = "127.0.0.1",
        port: int = 8740,
        *,
        registry: CollectorRegistry = REGISTRY,
        health: Callable[[], dict[str, Any]] | None = None,
        ping: Callable[[], bool] | None = None,
        keyring: KeyringLoader | None = None,
        inbox: Inbox | None = None,
    ) -> None:
        self.queries = queries
        self.inbox = inbox
        self._keyring = keyring
        self.tokens = tokens
        self.registry = registry
        self._health = health
        self._ping = ping
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="lockgate-sink-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- request handling -------------------------------------------------------------

    def route(self, path: str, params: dict[str, str], authorization: str | None
              ) -> tuple[int, bytes, str]:
        """Answer one GET; returns (status, body, content type). Pure enough to unit-test."""
        try:
            return self._route(path, params, authorization)
        except AuthError as exc:
            return self._json(exc.status, {"error": str(exc)})
        except QueryRejected as exc:
            return self._json(400, {"error": str(exc)})
        except SinkError as exc:
            return self._json(503, {"error": str(exc)})

    def _json(self, status: int, body: Any) -> tuple[int, bytes, str]:
        data = json.dumps(body, default=str, ensure_ascii=False).encode("utf-8")
        return status, data, "application/json; charset=utf-8"

    def _route(self, path: str, params: dict[str, str], authorization: str | None
               ) -> tuple[int, bytes, str]:
        if path in ("/", "/dashboard", "/dashboard.html"):
            path = "/static/dashboard.html"
        if path in ("/reviews", "/reviews.html"):
            path = "/static/reviews.html"
        if path.startswith("/static/"):
            found = _static(path[len("/static/"):])
            if found is None:
                return self._json(404, {"error": f"no static file {path}"})
            return 200, found[0], found[1]
        if path == "/metrics":
            return 200, generate_latest(self.registry), CONTENT_TYPE_LATEST
        if path == "/healthz":
            ok = self._ping() if self._ping is not None else True
            body = {"ok": ok, "clickhouse": ok, **(self._health() if self._health else {})}
            return self._json(200 if ok else 503, body)
        if not path.startswith("/api/"):
            return self._json(404, {"error": f"no route {path}"})
        # The header is the way; ?token= is accepted too (curl, Grafana links).
        header = authorization or (f"Bearer {params['token']}" if params.get("token") else None)
        token = self.tokens.authenticate(header)
        tenant = _scope(token, params)
        if path == "/api/reviews":
            _only(params, {"tenant"})
            listing = self._inbox().listing(tenant)
            return self._json(200, {**listing, "token": {"tenant": token.tenant, "reviewer": token.reviewer or None}})
        if token.reviewer:
            raise AuthError(f"this is reviewer {token.reviewer}'s token: it reaches only the review inbox "
                            "(/reviews, /api/reviews); read the audit trail with a read token", 403)
        if path == "/api/actions":
            page = self.queries.actions(parse_action_filter(params, tenant))
            return self._json(200, {"actions": page.rows, "next_cursor": page.next_cursor})
        if path.startswith("/api/actions/"):
            _only(params, {"tenant"})
            action_id = unquote(path[len("/api/actions/"):])
            record = self.queries.action(tenant, action_id, self._keyring() if self._keyring else None,
                                         shared=token.all_tenants)
            if record is None:
                return self._json(404, {"error": f"no action {action_id!r} visible to this token"})
            return self._json(200, record)
        if path == "/api/stats":
            _only(params, {"tenant", "since", "from", "to"})
            frm, to = parse_time_range(params.get("since"), params.get("from"), params.get("to"))
            return self._json(200, self.queries.stats(tenant, frm, to))
        if path == "/api/events":
            _only(params, {"tenant", "partition", "after", "limit"})
            partition = _int_param(params, "partition", None, 0, 1_000_000)
            if partition is None:
                raise QueryRejected("partition is required (the ledger partition to page)")
            after = _int_param(params, "after", -1, -1, 2**62)
            limit = _int_param(params, "limit", 1000, 1, 10_000)
            rows = self.queries.events(tenant, partition, -1 if after is None else after,
                                       limit or 1000)
            nxt = rows[-1]["sequence"] if rows else None
            return self._json(200, {"events": rows, "next_after": nxt})
        if path.startswith("/api/verify/"):
            if not token.all_tenants:
                raise AuthError("verify reads every tenant's rows and the shared summary; it needs an "
                                "all-tenant token (lockgate tokens create --tenant '*')", 403)
            return self._verify_route(path, params)
        if path == "/api/checkpoints":
            _only(params, {"tenant", "partition", "after", "limit"})
            if not token.all_tenants:
                raise AuthError("checkpoints cover every tenant's events; they need an all-tenant token "
                                "(lockgate tokens create --tenant '*')", 403)
            partition = _int_param(params, "partition", None, 0, 1_000_000)
            after = _int_param(params, "after", -1, -1, 2**62)
            limit = _int_param(params, "limit", 100, 1, 10_000)
            rows = self.queries.checkpoints(partition, -1 if after is None else after,
                                            limit or 100)
            return self._json(200, {"checkpoints": rows})
        return self._json(404, {"error": f"no route {path}"})

    def _inbox(self) -> Inbox:
        if self.inbox is None:
            raise SinkError("this sink serves no review inbox (it was started without one)")
        return self.inbox

    def post(self, path: str, params: dict[str, str], body: bytes, content_type: str | None,
             authorization: str | None) -> tuple[int, bytes, str]:
        """Answer one POST (only the vote route); returns (status, body, content type)."""
        try:
            return self._post(path, params, body, content_type, authorization)
        except AuthError as exc:
            return self._json(exc.status, {"error": str(exc)})
        except QueryRejected as exc:
            return self._json(400, {"error": str(exc)})
        except ReviewNotFound as exc:
            return self._json(404, {"error": str(exc)})
        except TrustError as exc:  # the reviewer's key or registration is not usable on this host
            return self._json(409, {"error": f"cannot vote: {exc}"})
        except SinkError as exc:
            return self._json(503, {"error": str(exc)})

    def _post(self, path: str, params: dict[str, str], body: bytes, content_type: str | None,
              authorization: str | None) -> tuple[int, bytes, str]:
        match = re.fullmatch(r"/api/reviews/([^/]{1,200})/vote", path)
        if match is None:
            return self._json(404, {"error": f"no POST route {path}"})
        token = self.tokens.authenticate(authorization)
        tenant = _scope(token, params)
        _only(params, {"tenant"})
        if not token.reviewer:
            raise AuthError("this token cannot vote: votes need a reviewer token bound to your reviewer "
                            "identity (lockgate tokens create --tenant T --reviewer NAME)", 403)
        if (content_type or "").split(";")[0].strip().lower() != "application/json":
            raise QueryRejected("send the vote as application/json: {\"vote\": \"approve\", \"reason\": \"...\"}")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise QueryRejected("the body is not JSON") from None
        if not isinstance(data, dict) or set(data) - {"vote", "reason"}:
            raise QueryRejected("the body is an object with vote and reason only (the reviewer is the token's)")
        vote, reason = data.get("vote"), data.get("reason")
        if vote not in VOTES:
            raise QueryRejected(f"vote must be one of {', '.join(VOTES)}")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 2000:
            raise QueryRejected("give a reason (1-2000 characters); it is signed into the vote")
        result = self._inbox().vote(token.reviewer, tenant, unquote(match.group(1)), str(vote), reason.strip())
        return self._json(_VOTE_STATUS.get(result.outcome, 202), result.to_json())

    def _verify_route(self, path: str, params: dict[str, str]) -> tuple[int, bytes, str]:
        """``/api/verify/*``: stored values for ``verify`` (the caller is all-tenant)."""
        actions = _action_list(params)
        if path == "/api/verify/events" and actions is not None:
            _only(params, {"actions"})
            return self._json(200, {"events": self.queries.action_rows(actions)})
        if path == "/api/verify/summary" and actions is not None:
            _only(params, {"actions"})
            return self._json(200, {"summary": self.queries.summary_folds(None, 10_000, actions)})
        if path == "/api/verify/events":
            _only(params, {"partition", "after", "limit"})
            partition = _int_param(params, "partition", None, 0, 1_000_000)
            if partition is None:
                raise QueryRejected("partition is required (the ledger partition to page)")
            after = _int_param(params, "after", -1, -1, 2**62)
            limit = _int_param(params, "limit", 1000, 1, 10_000)
            rows = self.queries.events(None, partition, -1 if after is None else after, limit or 1000,
                                       columns=True)
            return self._json(200, {"events": rows, "next_after": rows[-1]["sequence"] if rows else None})
        if path == "/api/verify/summary":
            _only(params, {"limit", "after_tenant", "after_day", "after_action"})
            limit = _int_param(params, "limit", 1000, 1, 10_000)
            keys = (params.get("after_tenant"), params.get("after_day"), params.get("after_action"))
            if any(k is not None for k in keys) and not all(keys):
                raise QueryRejected("give after_tenant, after_day and after_action together (the last row's key)")
            if keys[1] is not None and not _ISO_DAY.match(keys[1]):
                raise QueryRejected("after_day must be an ISO date like 2025-01-31")
            cursor = (str(keys[0]), str(keys[1]), str(keys[2])) if all(keys) else None
            return self._json(200, {"summary": self.queries.summary_folds(cursor, limit or 1000)})
        return self._json(404, {"error": f"no route {path}"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "lockgate-sink"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                try:
                    pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False,
                                      max_num_fields=64)
                except ValueError:
                    status, body, ctype = server._json(400, {"error": "malformed query string"})
                else:
                    params: dict[str, str] = {}
                    dup = None
                    for k, v in pairs:
                        if k in params:
                            dup = k
                        params[k] = v
                    if dup is not None:
                        status, body, ctype = server._json(
                            400, {"error": f"parameter {dup} given twice; give it once"})
                    else:
                        status, body, ctype = server.route(
                            parts.path, params, self.headers.get("Authorization"))
                self._send(status, body, ctype)

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                try:
                    length = int(self.headers.get("Content-Length") or "0")
                except ValueError:
                    length = -1
                if not 0 <= length <= _MAX_BODY:
                    self._send(*server._json(413 if length > _MAX_BODY else 411,
                                             {"error": f"send a Content-Length of at most {_MAX_BODY} bytes"}))
                    return
                body = self.rfile.read(length)
                try:
                    params = dict(parse_qsl(parts.query, keep_blank_values=True, max_num_fields=8))
                except ValueError:
                    self._send(*server._json(400, {"error": "malformed query string"}))
                    return
                self._send(*server.post(parts.path, params, body, self.headers.get("Content-Type"),
                                        self.headers.get("Authorization")))

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                # The dashboard may be opened with ?token=: never leak it in a Referer, never
                # be framed, never load anything from elsewhere.
                self.send_header("Referrer-Policy", "no-referrer")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("X-Frame-Options", "DENY")
                self.send_header("Content-Security-Policy",
                                 "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                 "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
                if status == HTTPStatus.UNAUTHORIZED:
                    self.send_header("WWW-Authenticate", 'Bearer realm="lockgate"')
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
