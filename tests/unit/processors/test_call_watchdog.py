"""A blocking client call that overstays its limit is reported, never silently waited on.

librdkafka's ``send_offsets_to_transaction`` can block forever after the group
coordinator's broker dies (librdkafka #5456, #5511); the ledger stage's thread would then
sit silent with its partitions' outcomes unchained. The watchdog must name the stuck call,
and must leave calls that return in time alone.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from processors import ledger_stage
from processors.call_watchdog import CallWatchdog
from processors.ledger_stage import LedgerStage
from processors.ledger_writer import LedgerWriter
from schemas.topics import Topics
from trust.keys import SigningKey

WAIT_S = 10.0  # upper bound for the watchdog thread to notice; the tests await an event, not a sleep


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_call_within_its_limit_is_not_an_overrun() -> None:
    clock = _Clock()
    dog = CallWatchdog(lambda _what: None, clock=clock)
    with dog.bounded("commit_transaction", 5.0):
        clock.now += 5.0
        assert dog.overrun() is None
    clock.now += 100.0
    assert dog.overrun() is None  # returned: nothing is watched any more


def test_a_call_past_its_limit_is_named() -> None:
    clock = _Clock()
    dog = CallWatchdog(lambda _what: None, clock=clock)
    with dog.bounded("send_offsets_to_transaction", 5.0):
        clock.now += 5.5
        assert dog.overrun() == "send_offsets_to_transaction still blocked after 6s (limit 5s)"


def test_the_watchdog_thread_reports_a_stuck_call_once_and_spares_a_prompt_one() -> None:
    reports: list[str] = []
    reported = threading.Event()

    def on_overrun(what: str) -> None:
        reports.append(what)
        reported.set()

    dog = CallWatchdog(on_overrun, check_every_s=0.01)
    dog.start()
    try:
        for _ in range(20):
            with dog.bounded("prompt", 1.0):
                pass
        assert reports == []
        release = threading.Event()

        def stuck() -> None:
            with dog.bounded("stuck", 0.05):
                release.wait(WAIT_S)

        worker = threading.Thread(target=stuck, daemon=True)
        worker.start()
        assert reported.wait(WAIT_S), "the watchdog never reported the stuck call"
        release.set()
        worker.join(WAIT_S)
        assert len(reports) == 1 and reports[0].startswith("stuck still blocked after")
    finally:
        dog.stop()


class _StuckProducer:
    """A transactional producer whose send_offsets_to_transaction never returns (the librdkafka bug)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def begin_transaction(self) -> None:
        pass

    def produce(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def poll(self, _timeout: float) -> int:
        return 0

    def send_offsets_to_transaction(self, *_args: Any) -> None:
        self.release.wait(WAIT_S)

    def commit_transaction(self, _timeout: float) -> None:
        pass


class _Consumer:
    def consumer_group_metadata(self) -> object:
        return object()


def test_a_ledger_stage_stuck_in_send_offsets_stops_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_stage, "_TXN_CALL_GRACE_S", 0.05)
    stuck: list[str] = []
    noticed = threading.Event()

    def on_stuck(what: str) -> None:
        stuck.append(what)
        noticed.set()

    writer = LedgerWriter(SigningKey.generate(), "p-test", checkpoint_every=100, checkpoint_interval_s=5.0,
                          dedup_window=100)
    stage = LedgerStage(writer, bootstrap="127.0.0.1:9", topics=Topics("t."), app_id="app", processor_id="p-test",
                        recovery_timeout_s=0.05, on_stuck=on_stuck)
    producer = _StuckProducer()
    stage._producer = producer  # type: ignore[assignment]
    stage._consumer = _Consumer()  # type: ignore[assignment]
    stage._watchdog.start()
    commit = threading.Thread(target=stage._commit, args=([], [], [], {("t.audit-intake", 0): 7}), daemon=True)
    commit.start()
    try:
        assert noticed.wait(WAIT_S), "a stuck send_offsets_to_transaction went unnoticed"
        assert len(stuck) == 1
        assert stuck[0].startswith("ledger stage stuck: send_offsets_to_transaction (app-ledger-p-test) still blocked")
    finally:
        producer.release.set()
        commit.join(WAIT_S)
        stage._watchdog.stop()
