"""Review webhooks against a real local HTTP receiver, from a real processor worker.

The receiver gets a JSON POST when a production DELETE is held for review and when a
break-glass override happens; each carries ``X-Lockgate-Signature`` = HMAC-SHA256 over
``TIMESTAMP.BODY`` with the shared secret, which the test recomputes — and which a receiver
holding the wrong secret could not reproduce.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from processors.reviews.webhook import signature
from producers import Action, Actor
from tests.integration.conftest import (
    ProcessorHandle,
    running_processor,
)

pytestmark = pytest.mark.integration

SECRET = "whsec-" + uuid.uuid4().hex
SQL = "DELETE FROM customers WHERE id = 7"


class Receiver:
    """A local HTTP server that keeps every POST it gets: (path, headers, body)."""

    def __init__(self) -> None:
        self.posts: queue.Queue[tuple[str, dict[str, str], bytes]] = queue.Queue()
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                posts.put((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/lockgate"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def event(self, kind: str, action_id: str, timeout_s: float = 60) -> tuple[dict[str, str], bytes]:
        """The first POST of event ``kind`` about ``action_id`` (others are skipped)."""
        while True:
            _path, headers, body = self.posts.get(timeout=timeout_s)
            data = json.loads(body)
            if data.get("event") == kind and data.get("action_id") == action_id:
                return headers, body

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def hooked(kafka_bootstrap: str, test_home: Path, tmp_path_factory: pytest.TempPathFactory,
           receiver: Receiver) -> Iterator[ProcessorHandle]:
    """A processor worker that posts review events to the receiver, signed with SECRET."""
    log = tmp_path_factory.mktemp("hooked") / "processor.log"
    with running_processor(kafka_bootstrap, test_home, log, "w", extra_env={
            "LOCKGATE_REVIEW_WEBHOOKS": receiver.url, "LOCKGATE_REVIEW_WEBHOOK_SECRET": SECRET}) as handle:
        yield handle


def _check_signed(headers: dict[str, str], body: bytes, event: str) -> dict[str, Any]:
    assert headers["content-type"] == "application/json"
    assert headers["x-lockgate-event"] == event
    stamp = headers["x-lockgate-timestamp"]
    sent = headers["x-lockgate-signature"]
    expected = "sha256=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(sent, expected)  # a receiver with the secret verifies it
    assert signature(SECRET.encode(), stamp, body) == sent  # ... as the documented helper computes it
    assert not hmac.compare_digest(sent, signature(b"wrong-" + SECRET.encode(), stamp, body))
    assert not hmac.compare_digest(sent, signature(SECRET.encode(), str(int(stamp) + 1), body))  # no re-dating
    assert not hmac.compare_digest(sent, signature(SECRET.encode(), stamp, body.replace(b"7", b"8")))
    data: dict[str, Any] = json.loads(body)
    return data


def test_pending_review_and_break_glass_post_signed_json(hooked: ProcessorHandle, receiver: Receiver) -> None:
    with hooked.guard(service="cli") as guard:
        pending = guard.request(Action(Actor("carol", ("dev",)), "db.query", "db/prod/customers", {"sql": SQL},
                                       justification="GDPR erasure 17"))
        assert pending.verdict.decision == "review"
        headers, body = receiver.event("review.requested", pending.verdict.action_id)
        data = _check_signed(headers, body, "review.requested")
        assert data["review_id"] == pending.verdict.review_id and data["status"] == "open"
        assert data["requester"] == "carol" and data["sql"] == SQL and data["justification"] == "GDPR erasure 17"
        assert data["approver_groups"] == ["dba"] and data["min_approvals"] == 1

        glass = guard.check(Action(Actor("ops", ("oncall",)), "db.query", "db/prod/customers", {"sql": SQL},
                                   justification="incident 42", break_glass=True))
        assert glass.basis == "break_glass"
        headers, body = receiver.event("break_glass", glass.action_id)
        data = _check_signed(headers, body, "break_glass")
        assert data["post_hoc"] is True and data["requester"] == "ops" and "BREAK-GLASS" in data["reason"]
