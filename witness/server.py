"""The witness's HTTP service: C2SP tlog-witness ``add-checkpoint`` plus the monitoring read.

Endpoints (``http://HOST:PORT``; submission and monitoring prefix are both the root):

==========================================  ==============================================
``POST /add-checkpoint``                    the protocol (:mod:`trust.tlog_witness` decides)
``GET /<sha256(origin) hex>/checkpoint``    the latest cosigned checkpoint of that log
                                            (log's and witness's lines); 404 if none
``GET /healthz``                            ``{"status": "ok", "name", "vkey"}``
==========================================  ==============================================

A request is parsed, then — under the origin's lock (:class:`witness.state.WitnessState`)
— the witness's record is read, the decision taken, and a new record written durably
before the 200 is sent. A corrupt record answers 500 and cosigns nothing.

Which logs it trusts (:class:`TrustedLogs`): Lockgate log names with the processor's
public key (origins ``<log name>/p<N>``, key name = origin), and any exact vkeys whose
name is the origin (other C2SP logs).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from trust.cosignature import CosignatureV1Signer
from trust.errors import TlogFormatError
from trust.keys import PublicKey
from trust.note import Ed25519Verifier, NoteVerifier
from trust.tlog import log_verifier, parse_origin
from trust.tlog_witness import (
    MAX_REQUEST_BYTES,
    WitnessedCheckpoint,
    WitnessReply,
    add_checkpoint,
    parse_add_checkpoint,
)
from witness.errors import WitnessConfigError, WitnessStateCorrupt
from witness.state import WitnessState

__all__ = ["TrustedLogs", "WitnessServer"]

log = logging.getLogger("lockgate.witness")


@dataclass(frozen=True)
class TrustedLogs:
    """The logs a witness cosigns for, and the keys it trusts for each origin."""

    lockgate_logs: tuple[tuple[str, PublicKey], ...] = ()
    """(log name, processor public key): accepts every origin ``<log name>/p<N>``."""
    exact: tuple[Ed25519Verifier, ...] = ()
    """Log keys whose key name is their origin."""

    def __post_init__(self) -> None:
        if not self.lockgate_logs and not self.exact:
            raise WitnessConfigError("a witness needs at least one log to trust (--log-key / --log-vkey)")

    def verifiers_for(self, origin: str) -> Sequence[NoteVerifier] | None:
        """The keys trusted for ``origin``, or None when the origin is unknown."""
        found: list[NoteVerifier] = [v for v in self.exact if v.name == origin]
        parsed = parse_origin(origin)
        if parsed is not None:
            found += [log_verifier(origin, key) for name, key in self.lockgate_logs if name == parsed[0]]
        unique = {(v.name, v.key_id): v for v in found}  # one key configured twice counts once
        return list(unique.values()) or None


class WitnessServer:
    """One witness: its signer, the logs it trusts, its state, and an HTTP server."""

    def __init__(
        self,
        signer: CosignatureV1Signer,
        logs: TrustedLogs,
        state: WitnessState,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signer = signer
        self.logs = logs
        self.state = state
        self._clock = clock
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def add_checkpoint(self, body: bytes) -> WitnessReply:
        """Handle one request body: parse, then decide and persist under the origin's lock."""
        try:
            request = parse_add_checkpoint(body)
        except TlogFormatError as exc:
            return WitnessReply(400, f"malformed request: {exc}\n".encode())
        origin = request.body.origin
        keys = self.logs.verifiers_for(origin)
        if keys is None:
            return WitnessReply(404, f"unknown log origin {origin!r}\n".encode())
        with self.state.locked(origin):
            try:
                latest = self.state.load(origin)
            except WitnessStateCorrupt as exc:
                log.error("%s", exc)
                return WitnessReply(500, b"the witness's record of this log is corrupt; it cosigns nothing\n")
            reply = add_checkpoint(request, keys, latest, self.signer, max(1, int(self._clock())))
            if reply.new_state is not None:
                self.state.store(reply.new_state)
        log.info("add-checkpoint %s old=%d size=%d -> %d", origin, request.old_size, request.body.size,
                 reply.status)
        return reply

    def latest(self, origin_hash: str) -> WitnessedCheckpoint | None:
        return self.state.load_by_hash(origin_hash)

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> None:
        """Serve in a background thread (tests, and the stack's readiness probe)."""
        self._thread = threading.Thread(target=self.serve_forever, name="witness-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _handler_for(witness: WitnessServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "lockgate-witness"
        protocol_version = "HTTP/1.1"  # keep-alive, as the spec recommends

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            if self.path != "/add-checkpoint":
                self._send(404, b"not found\n")
                return
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._send(411, b"Content-Length required\n")
                return
            if int(length) > MAX_REQUEST_BYTES:
                self.close_connection = True
                self._send(413, b"request too large\n")
                return
            body = self.rfile.read(int(length))
            try:
                reply = witness.add_checkpoint(body)
            except Exception:  # disk full, a bug: answer, cosign nothing, keep serving
                log.exception("add-checkpoint failed")
                reply = WitnessReply(500, b"internal error; nothing was cosigned\n")
            self._send(reply.status, reply.body, reply.content_type)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                body = {"status": "ok", "name": witness.signer.name, "vkey": witness.signer.verifier.vkey}
                self._send(200, json.dumps(body).encode(), "application/json")
                return
            parts = self.path.strip("/").split("/")
            if len(parts) == 2 and parts[1] == "checkpoint":
                try:
                    state = witness.latest(parts[0])
                except WitnessStateCorrupt:
                    self._send(500, b"corrupt record\n")
                    return
                if state is not None:
                    self._send(200, state.checkpoint.encode("utf-8"))
                    return
            self._send(404, b"not found\n")

    return Handler
