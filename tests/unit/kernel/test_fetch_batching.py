"""Recording consumers' fetch settings: batching on by default, off at 0, nonsense refused."""

from __future__ import annotations

import pytest

from lockgate.kernel.fetch_batching import DEFAULT_RECORDING_FETCH_WAIT_MS, FETCH_MIN_BYTES, batched_fetch
from processors.settings import ProcessorSettings
from sinks.service import SinkSettings


def test_batched_fetch_holds_for_bytes_or_time() -> None:
    assert batched_fetch(25) == {"fetch.min.bytes": FETCH_MIN_BYTES, "fetch.wait.max.ms": 25}


def test_zero_keeps_librdkafka_defaults() -> None:
    assert batched_fetch(0) == {}


def test_negative_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="-1"):
        batched_fetch(-1)


def test_ledger_and_sink_batch_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCKGATE_LEDGER_FETCH_WAIT_MS", raising=False)
    monkeypatch.delenv("LOCKGATE_SINK_FETCH_WAIT_MS", raising=False)
    assert ProcessorSettings().ledger_fetch_wait_ms == DEFAULT_RECORDING_FETCH_WAIT_MS > 0
    assert SinkSettings().sink_fetch_wait_ms == DEFAULT_RECORDING_FETCH_WAIT_MS


def test_settings_refuse_a_hold_past_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_LEDGER_FETCH_WAIT_MS", "5000")
    with pytest.raises(ValueError, match="ledger_fetch_wait_ms"):
        ProcessorSettings()
