"""The one duration grammar: what it accepts, what it refuses, and that both callers use it."""

from __future__ import annotations

import pytest

from lockgate.kernel.durations import DurationInvalid, parse_duration_us
from sinks.errors import QueryRejected
from sinks.query import parse_time_range


@pytest.mark.parametrize(("raw", "us"), [("90s", 90_000_000), ("30m", 1_800_000_000), ("24h", 86_400_000_000),
                                         ("7d", 604_800_000_000), ("2w", 1_209_600_000_000), (" 1h ", 3_600_000_000)])
def test_accepts_each_unit(raw: str, us: int) -> None:
    assert parse_duration_us(raw) == us


@pytest.mark.parametrize("raw", ["", "h", "1", "1y", "-1h", "1.5h", "1234567s", "1h; DROP TABLE x"])
def test_refuses_anything_else_naming_the_value(raw: str) -> None:
    with pytest.raises(DurationInvalid, match="is not a duration"):
        parse_duration_us(raw, "--since")


def test_query_since_takes_weeks_like_verify() -> None:
    start, end = parse_time_range("2w", None, None, now_us=10**16)
    assert end - start == 1_209_600_000_000
    with pytest.raises(QueryRejected, match="since="):
        parse_time_range("2y", None, None)
