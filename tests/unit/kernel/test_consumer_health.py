"""When is a consumer group "up but not consuming"? Lag and commits per partition, on a test clock."""

from __future__ import annotations

from lockgate.kernel.consumer_health import ConsumerHealth, LagReading

A0, A1 = ("audit", 0), ("audit", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reading(lag: dict[tuple[str, int], int], committed: dict[tuple[str, int], int]) -> LagReading:
    return LagReading(lag, committed)


def test_unknown_until_measured_then_idle_without_lag() -> None:
    clock = Clock()
    health = ConsumerHealth(30, clock)
    assert health.state() == "unknown"
    health.lag_measured(reading({A0: 0}, {A0: 10}))
    clock.now += 100
    assert health.state() == "idle"
    assert health.snapshot()["lag"] == 0


def test_lag_with_commits_is_consuming_lag_without_commits_is_stalled() -> None:
    clock = Clock()
    health = ConsumerHealth(30, clock)
    health.lag_measured(reading({A0: 50}, {A0: 100}))
    clock.now += 20
    health.lag_measured(reading({A0: 40}, {A0: 110}))  # committed moved: progress
    clock.now += 20
    health.lag_measured(reading({A0: 45}, {A0: 110}))
    assert health.state() == "consuming"
    assert health.seconds_since_progress() == 20
    clock.now += 10
    assert health.state() == "stalled"
    snap = health.snapshot()
    assert snap["stalled_partitions"] == ["audit[0]"] and snap["lag"] == 45


def test_a_partition_that_catches_up_is_never_stalled() -> None:
    clock = Clock()
    health = ConsumerHealth(30, clock)
    health.lag_measured(reading({A0: 0, A1: 5}, {A0: 7, A1: 3}))
    clock.now += 58
    health.lag_measured(reading({A0: 0, A1: 5}, {A0: 7, A1: 3}))
    clock.now += 2
    health.lag_measured(reading({A0: 3, A1: 5}, {A0: 7, A1: 3}))  # new records on A0 just now
    assert health.stalled() == [A1]
    assert health.stalled(among={A0}) == []


def test_a_new_consumer_gets_a_full_window() -> None:
    clock = Clock()
    health = ConsumerHealth(30, clock)
    health.lag_measured(reading({A0: 9}, {A0: 1}))
    clock.now += 60
    assert health.state() == "stalled"
    health.consumer_started()
    assert health.state() == "consuming"
    clock.now += 30
    assert health.state() == "stalled"


def test_never_committed_partition_with_records_stalls() -> None:
    clock = Clock()
    health = ConsumerHealth(30, clock)
    health.lag_measured(reading({A0: 12}, {A0: -1001}))
    clock.now += 31
    health.lag_measured(reading({A0: 12}, {A0: -1001}))
    assert health.stalled() == [A0]


def test_lag_freshness_and_errors() -> None:
    clock = Clock()
    health = ConsumerHealth(30, clock)
    assert not health.lag_is_fresh(6)
    health.lag_measured(reading({A0: 1}, {A0: 1}))
    clock.now += 6
    assert health.lag_is_fresh(6)
    health.lag_failed("Local: Timed out")
    clock.now += 1
    assert not health.lag_is_fresh(6)
    assert health.snapshot()["lag_error"] == "Local: Timed out"
