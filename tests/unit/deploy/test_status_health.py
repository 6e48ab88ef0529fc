"""``lockgate status`` tells a component that is up but not consuming from one that works."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from deploy.health import consumer_health, describe


def test_stopped_and_running_components() -> None:
    assert describe(False, None, None) == "stopped"
    assert describe(True, 7, {"state": "consuming", "lag": 3}) == "running (pid 7), consuming"
    assert describe(True, 7, {"state": "idle", "lag": 0}) == "running (pid 7), idle"


def test_a_stalled_component_is_up_but_not_consuming_and_says_why() -> None:
    line = describe(True, 7, {"state": "stalled", "lag": 862, "seconds_since_progress": 45.2,
                              "reason": "Kafka unreachable: Local: Timed out"})
    assert line == "UP BUT NOT CONSUMING (pid 7): lag 862; no commit for 45s; Kafka unreachable: Local: Timed out"


def test_a_component_whose_health_does_not_answer() -> None:
    line = describe(True, 7, {"state": "not answering", "reason": "http://x: refused"})
    assert line == "running (pid 7), health not answering: http://x: refused"


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[int, Any]]]]:
    answers: list[tuple[int, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers.pop(0)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/healthz", answers
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_consumer_health_reads_json_even_from_a_503(server: tuple[str, list[tuple[int, Any]]]) -> None:
    url, answers = server
    answers += [(200, {"state": "idle"}), (503, {"ok": False, "state": "stalled"}), (200, b"<html>")]
    assert consumer_health(url)["state"] == "idle"
    assert consumer_health(url)["state"] == "stalled"
    assert consumer_health(url)["state"] == "not answering"


def test_consumer_health_of_nothing_listening() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert consumer_health(f"http://127.0.0.1:{port}/healthz", timeout_s=1)["state"] == "not answering"
