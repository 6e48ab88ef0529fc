"""Where the audit store is, and who may open it right now.

The embedded engine (``chdb://``) allows one owning process per directory: while the sink
runs, readers (CLI commands) must go through its HTTP API; when it is stopped they open
the directory themselves. A ``http(s)://`` ClickHouse server is always opened directly.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SinkLocation", "healthy", "locate", "stack_sink_running"]


@dataclass(frozen=True)
class SinkLocation:
    dsn: str
    database: str
    state_dir: Path
    api_urls: tuple[str, ...]

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb:")


def locate() -> SinkLocation:
    """The configured store and the addresses its sink's API may answer on."""
    from deploy.settings import StackSettings
    from sinks.service import SinkSettings

    sink = SinkSettings()
    stack = StackSettings()
    urls = [f"http://127.0.0.1:{stack.api_port}"]
    if sink.sink_http_port and sink.sink_http_port != stack.api_port:
        urls.append(f"http://{sink.sink_http_host}:{sink.sink_http_port}")
    return SinkLocation(sink.dsn, sink.clickhouse_database, sink.state_dir, tuple(urls))


def healthy(url: str) -> bool:
    """True if the sink API at ``url`` answers ``/healthz``."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2.0) as resp:  # noqa: S310 - loopback
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def stack_sink_running() -> bool:
    """True if the local stack's pid file names a live sink process."""
    try:
        from deploy.stack import Stack

        comps: list[dict[str, Any]] = Stack(progress=lambda _m: None).status()["components"]
    except Exception:  # a broken stack state must not stop a read
        return False
    return any(c["name"] == "sink" and c["running"] for c in comps)
