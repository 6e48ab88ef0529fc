"""The proxy's listener: accepts clients, owns the shared Guard, publishes outcomes, routes cancels."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Callable

from producers.errors import GuardError
from producers.guard import AsyncGuard, GuardedAction
from producers.pgproxy.config import ProxyConfig, TlsConfig
from producers.pgproxy.errors import ProxyConfigError
from producers.pgproxy.session import Session
from producers.settings import GuardSettings

__all__ = ["PgProxy", "run_proxy", "tls_context"]

log = logging.getLogger("producers.pgproxy")


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """Server-side TLS context from the configured certificate chain and key."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
    except (OSError, ssl.SSLError) as exc:
        raise ProxyConfigError(f"cannot load the proxy's TLS certificate {tls.cert} / key {tls.key}: {exc}") from exc
    return ctx


class PgProxy:
    """A PostgreSQL wire-protocol guard in front of one upstream server.

    Contract: every statement a client sends is proposed through ``guard`` before it is
    forwarded (transaction control excepted), and runs only on a valid signed allow;
    see :mod:`producers.pgproxy.session` for the protocol-level rules.
    """

    def __init__(self, config: ProxyConfig, guard: AsyncGuard) -> None:
        self.config = config
        self.guard = guard
        self.ssl_context = tls_context(config.tls) if config.tls is not None else None
        self.sessions: dict[bytes, Session] = {}
        self._recording: set[asyncio.Task[None]] = set()
        self._clients: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 in the config picks a free one)."""
        host, port = self.config.listen_address
        self._server = await asyncio.start_server(self._serve_client, host, port, reuse_address=True)
        bound = self._server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await Session(self, reader, writer).run()
        except asyncio.CancelledError:
            pass  # the proxy is closing; the session closed its sockets on the way out
        finally:
            if task is not None:
                self._clients.discard(task)

    def record(self, handle: GuardedAction, error: BaseException | None) -> None:
        """Publish an outcome in the background: the client never waits for Kafka's ack."""
        task = asyncio.create_task(self._record(handle, error))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _record(self, handle: GuardedAction, error: BaseException | None) -> None:
        try:
            await self.guard.record(handle, error)
        except GuardError as exc:
            log.warning("outcome of action %s: %s", handle.action_id, exc)

    async def cancel(self, packet: bytes) -> None:
        """A CancelRequest: stop a verdict wait of that session, and pass it on to the server."""
        session = self.sessions.get(packet[8:16])
        if session is not None and session.judging is not None:
            session.cancel_requested = True
            session.judging.cancel()
        host, port = self.config.upstream_address
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.config.connect_timeout_s)
            writer.write(packet)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            log.warning("could not pass a cancel request to the server: %s", exc)

    async def aclose(self) -> None:
        """Stop listening, end the sessions, and wait until every outcome is handed to Kafka."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)


async def run_proxy(config: ProxyConfig, settings: GuardSettings, *,
                    ready: Callable[[str, int], None] | None = None,
                    stop: asyncio.Event | None = None) -> None:
    """Run a proxy until ``stop`` is set (or SIGINT/SIGTERM when ``stop`` is None)."""
    guard = await asyncio.to_thread(AsyncGuard, settings)
    proxy = PgProxy(config, guard)
    try:
        host, port = await proxy.start()
        if ready is not None:
            ready(host, port)
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await proxy.aclose()
        await guard.aclose()
