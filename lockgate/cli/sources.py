"""Which ledger source a trust command reads: the store directly, or the running sink's API.

The sink is taken to be running when ``deploy.stack.Stack().status()`` says so, or when the
embedded directory cannot be opened and the API port answers ``/healthz``.
"""

from __future__ import annotations

from lockgate.cli.locate import healthy, locate, stack_sink_running
from sinks.clickhouse import connect
from sinks.errors import SinkError
from sinks.ledger_source import ApiSource, ClickHouseSource
from trust.source import Progress, quiet

__all__ = ["StoreSource", "open_source"]

StoreSource = ClickHouseSource | ApiSource
"""Either way into the store; both are :class:`trust.source.LedgerSource` and both serve the
stored views ``verify`` compares (``events(columns=True)``, ``summary_rows()``) and the
single-action record (``action_record``)."""


def open_source(progress: Progress = quiet) -> StoreSource:
    """The direct ClickHouse source, or the running sink's API (module docstring)."""
    loc = locate()
    embedded = loc.dsn.startswith("chdb:")
    if embedded and stack_sink_running():
        for url in loc.api_urls:
            if healthy(url):
                progress(f"the sink is running; reading through its API at {url}")
                return ApiSource(url, loc.state_dir, progress)
        raise SinkError(
            "the sink owns the embedded ClickHouse directory but its API does not answer "
            f"/healthz at {', '.join(loc.api_urls)}; see `lockgate status` and the sink's log"
        )
    try:
        return ClickHouseSource(connect(loc.dsn, loc.database), progress)
    except SinkError as exc:
        if embedded:
            for url in loc.api_urls:
                if healthy(url):
                    progress(f"ClickHouse directory is in use; reading through the API at {url}")
                    return ApiSource(url, loc.state_dir, progress)
        raise SinkError(f"{exc}; if a sink owns the directory, start it with `lockgate up`") from exc
