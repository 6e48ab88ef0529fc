"""A restarted ledger writer takes its covered sequence only from a checkpoint that verifies.

Whoever can append to the checkpoints topic can write a Checkpoint record claiming any
``last_sequence``. :func:`newest_verified_checkpoint` must never let such a record decide
which events count as covered: the events it claims would never be checkpointed again.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.factories.ledger import LedgerBuilder
from trust.checkpoints import build_checkpoint, check_checkpoint, verify_checkpoint
from trust.errors import CheckpointError
from trust.keys import Keyring, SigningKey
from trust.partition_log import PartitionLog, newest_verified_checkpoint
from trust.tlog import DEFAULT_LOG_NAME, build_log_checkpoint

KEY = SigningKey.generate()
ATTACKER = SigningKey.generate()
HUGE = 2**40


def _log(n: int, partition: int = 0) -> PartitionLog:
    log = PartitionLog(partition)
    for i in range(n):
        log.append(hashlib.sha256(i.to_bytes(8, "big")).digest())
    return log


def _signed(n: int, partition: int = 0, key: SigningKey = KEY) -> dict[str, Any]:
    return _log(n, partition).checkpoint(key, "proc-test", 1_000)


def _forged_huge(partition: int = 0) -> dict[str, Any]:
    """A well-formed whole-log checkpoint of ``HUGE`` events, signed by a key nobody trusts."""
    return build_log_checkpoint(partition=partition, size=HUGE, root=b"\x07" * 32, head_hash=b"\x08" * 32,
                                key=ATTACKER, processor_id="proc-test", now_us=1_000)


def _choose(candidates: list[tuple[dict[str, Any], int]], partition: int = 0) -> Any:
    return newest_verified_checkpoint(candidates, KEY.public(), partition=partition, log_name=DEFAULT_LOG_NAME)


def test_a_forged_newer_checkpoint_with_a_huge_last_sequence_is_refused_and_the_verified_one_counts() -> None:
    good, forged = _signed(100), _forged_huge()
    choice = _choose([(good, 10), (forged, 11)])
    assert choice.chosen == (good, 10)
    assert [(tag, cp["last_sequence"]) for cp, tag, _ in choice.refused] == [(11, HUGE - 1)]
    assert "is not a trusted processor key" in choice.refused[0][2]


def test_an_altered_copy_of_a_signed_checkpoint_is_refused() -> None:
    good = _signed(100)
    altered = {**good, "last_sequence": HUGE - 1}
    choice = _choose([(good, 1), (altered, 2)])
    assert choice.chosen == (good, 1)
    ((_, tag, why),) = choice.refused
    assert tag == 2 and "do not match the record" in why


def test_a_checkpoint_under_another_key_is_refused_even_if_genuinely_signed() -> None:
    other = _signed(300, key=SigningKey.generate())
    choice = _choose([(_signed(200), 1), (other, 2)])
    assert choice.chosen is not None and choice.chosen[1] == 1
    assert [tag for _, tag, _ in choice.refused] == [2]


def test_a_verified_checkpoint_older_than_forged_newer_ones_counts() -> None:
    older, newer = _signed(50), _signed(80)
    forged = [_forged_huge(), {**newer, "signature": newer["signature"][:-3] + b"AA\n"}, {**newer, "key_id": "0" * 16}]
    choice = _choose([(older, 0), (newer, 1)] + [(cp, 2 + i) for i, cp in enumerate(forged)])
    assert choice.chosen == (newer, 1)
    assert [tag for _, tag, _ in choice.refused] == [2, 3, 4]


def test_with_no_verified_checkpoint_nothing_counts_as_covered() -> None:
    choice = _choose([(_forged_huge(), 1), ({**_signed(9), "merkle_root": b"\x00" * 32}, 2)])
    assert choice.chosen is None
    assert [tag for _, tag, _ in choice.refused] == [1, 2]
    assert _choose([]).chosen is None


def test_records_of_other_partitions_are_neither_chosen_nor_refused() -> None:
    mine, theirs = _signed(10, partition=0), _signed(99, partition=1)
    choice = _choose([(mine, 1), (theirs, 2), (_forged_huge(partition=1), 3)])
    assert choice.chosen == (mine, 1) and choice.refused == ()


def test_the_highest_last_sequence_wins_and_the_last_given_of_equals() -> None:
    a, b = _signed(70), _signed(40)
    cosigned_copy = dict(a)  # republished later (with cosignatures): the same checkpoint
    choice = _choose([(a, 1), (b, 2), (cosigned_copy, 3)])
    assert choice.chosen == (cosigned_copy, 3)


def test_interval_checkpoints_of_older_workers_count_when_they_verify() -> None:
    ledger = LedgerBuilder(KEY)
    for _ in range(3):
        ledger.flow(0)
    interval = build_checkpoint(ledger.events, KEY, "proc-old", 5)
    foreign = build_checkpoint(ledger.events, ATTACKER, "proc-old", 5)
    choice = _choose([(interval, 1), ({**foreign, "last_sequence": HUGE}, 2)])
    assert choice.chosen == (interval, 1)
    assert "not a trusted processor key" in choice.refused[0][2]


@pytest.mark.parametrize(("change", "why"), [
    ({"signature_format": "interval/v9"}, "is neither"),
    ({"key_id": "f" * 16}, "is not a trusted processor key"),
    ({"last_sequence": 10**6}, "does not verify"),
    ({"head_hash": b"short"}, "32 bytes"),
    ({"first_sequence": 5, "last_sequence": 4}, "not an interval"),
])
def test_check_checkpoint_names_why_an_interval_record_is_refused(change: dict[str, Any], why: str) -> None:
    ledger = LedgerBuilder(KEY)
    ledger.flow(0)
    cp = {**build_checkpoint(ledger.events, KEY, "proc-old", 5), **change}
    with pytest.raises(CheckpointError, match=why):
        check_checkpoint(cp, Keyring([KEY.public()]))
    assert not verify_checkpoint(cp, Keyring([KEY.public()]))
