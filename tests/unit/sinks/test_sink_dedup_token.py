"""The deduplication token of a multi-partition batch: deterministic, bounded, unambiguous."""

from __future__ import annotations

import itertools

from sinks.writer import MAX_TOKEN_CHARS, dedup_token


def test_one_range_keeps_the_per_partition_token() -> None:
    assert dedup_token("audit_events", {("lockgate.audit", 3): (10, 19)}) == \
        "lockgate:audit_events:lockgate.audit:3:10-19"


def test_the_same_ranges_give_the_same_token_in_any_order() -> None:
    ranges = {("lockgate.audit", p): (p * 10, p * 10 + 4) for p in (2, 0, 11, 1)}
    tokens = {dedup_token("audit_events", dict(order)) for order in itertools.permutations(ranges.items())}
    assert tokens == {"lockgate:audit_events:lockgate.audit:0:0-4,lockgate.audit:1:10-14,"
                      "lockgate.audit:2:20-24,lockgate.audit:11:110-114"}


def test_any_difference_in_the_ranges_or_the_table_changes_the_token() -> None:
    base = {("a", 0): (0, 9), ("a", 1): (0, 9)}
    variants = [base, {**base, ("a", 1): (0, 8)}, {**base, ("a", 1): (1, 9)}, {("a", 0): (0, 9)},
                {**base, ("b", 1): (0, 9)}, {("a", 0): (0, 9), ("a", 2): (0, 9)}]
    tokens = {dedup_token("audit_events", v) for v in variants} | {dedup_token("checkpoints", base)}
    assert len(tokens) == len(variants) + 1


def test_a_long_token_is_hashed_deterministically_and_stays_bounded() -> None:
    many = {("lockgate.audit", p): (1_000_000_000, 1_000_009_999) for p in range(500)}
    token = dedup_token("audit_events", many)
    assert token.startswith("lockgate:audit_events:sha256:") and len(token) <= MAX_TOKEN_CHARS
    assert token == dedup_token("audit_events", dict(reversed(many.items())))
    assert token != dedup_token("audit_events", {**many, ("lockgate.audit", 499): (1_000_000_000, 1_000_009_998)})
