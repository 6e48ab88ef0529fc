"""Fetch settings for consumers off the decision path: fewer, fuller fetches.

A librdkafka consumer's defaults (``fetch.min.bytes`` 1) make the broker answer a fetch
as soon as one record arrives. On the decision path that is what we want. For the ledger
stage and the sink it means one fetch request per action's record at low concurrency,
and the broker pays ~0.5 ms of CPU per request on the 2-core box (``docs/benchmarks.md``):
CPU taken from the processor on the same cores. Consumers that only *record* ask the
broker to hold a fetch until :data:`FETCH_MIN_BYTES` have accumulated or ``wait_ms`` have
passed; they see records at most ``wait_ms`` later and never lose or reorder one.
"""

from __future__ import annotations

__all__ = ["DEFAULT_RECORDING_FETCH_WAIT_MS", "FETCH_MIN_BYTES", "batched_fetch"]

FETCH_MIN_BYTES = 1024 * 1024
"""Bytes the broker waits for before answering a batched fetch early (about a thousand events)."""


DEFAULT_RECORDING_FETCH_WAIT_MS = 100
"""Default longest hold of a recording consumer's fetch: small against the ledger's checkpoint
interval (5 s) and the sink's flush interval, large against the decision path's request rate."""


def batched_fetch(wait_ms: int) -> dict[str, int]:
    """librdkafka consumer settings that batch fetches up to ``wait_ms``; 0 turns batching off.

    Merge the result into the consumer's configuration. With 0 the consumer keeps
    librdkafka's defaults (answer on the first byte), the behaviour before batching.
    """
    if wait_ms < 0:
        raise ValueError(f"fetch wait must be >= 0 ms, not {wait_ms}")
    if wait_ms == 0:
        return {}
    return {"fetch.min.bytes": FETCH_MIN_BYTES, "fetch.wait.max.ms": wait_ms}
