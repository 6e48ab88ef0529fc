"""One decision per action id: a replayed or reused action id gets a signed replay block, a
security event and no second decision; the memory is bounded and rebuilt, not trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.decider import StoredDecision
from processors.replay import FUTURE_SKEW_US, ActionIds, home_partition, murmur2
from processors.stage import Source
from schemas.codec import get_codec
from tests.factories.decided import PARTITIONS, DecidedLedger, now_us
from trust.bindings import record_sha256
from trust.keys import SigningKey
from trust.signatures import verify_record

KEY = SigningKey.generate()
HOUR_US = 3_600_000_000
CODEC = get_codec()


@pytest.fixture
def ledger(tmp_path: Path) -> DecidedLedger:
    return DecidedLedger(KEY, tmp_path)


def _proposal(aid: str, proposed_at: int) -> dict[str, object]:
    return {"action_id": aid, "proposed_at": proposed_at}


def test_same_signed_bytes_three_times_get_one_decision(ledger: DecidedLedger) -> None:
    raw, first = ledger.propose()
    again = [ledger.submit(raw) for _ in range(2)]
    assert first.verdict is not None and first.verdict["decision"] == "allow"
    for r in again:
        assert r.verdict is not None
        assert (r.verdict["decision"], r.verdict["basis"]) == ("block", "replay")
        assert "already decided" in r.verdict["reason"]
        assert verify_record(r.verdict, "signature", b"", KEY.public())
        assert r.verdict["proposal_sha256"] == record_sha256(CODEC.decode_as("ProposedAction", raw))
        # no second proposal on the ledger: the replayed bytes are the security event's payload
        assert [e["kind"] for e in r.audit] == ["security", "verdict"]
        assert r.audit[0]["payload"] == raw and r.audit[0]["detail"].startswith("replay refused:")
    kinds = [e["kind"] for e in ledger.events]
    assert kinds.count("action") == 1 and kinds.count("security") == 2 and kinds.count("verdict") == 3


def test_another_proposal_reusing_an_action_id_is_refused(ledger: DecidedLedger) -> None:
    raw, _ = ledger.propose()
    aid = CODEC.decode_as("ProposedAction", raw)["action_id"]
    _, other = ledger.propose("DELETE FROM orders WHERE id = 2", action_id=aid)
    assert other.verdict is not None and other.verdict["basis"] == "replay"


def test_a_replay_sent_to_another_partition_is_refused(ledger: DecidedLedger) -> None:
    raw, _ = ledger.propose()
    aid = CODEC.decode_as("ProposedAction", raw)["action_id"]
    elsewhere = (home_partition(aid, PARTITIONS) + 1) % PARTITIONS
    result = ledger.submit(raw, partition=elsewhere)
    assert result.verdict is not None and result.verdict["basis"] == "replay"
    assert f"belongs to partition {home_partition(aid, PARTITIONS)}" in result.verdict["reason"]


def test_a_stored_replay_block_is_resent_unchanged_with_the_same_events(ledger: DecidedLedger) -> None:
    raw, _ = ledger.propose()
    replay = ledger.submit(raw)
    assert replay.verdict_bytes is not None and replay.stored is not None
    # the worker crashed after storing it: the same input is delivered again
    aid = CODEC.decode_as("ProposedAction", raw)["action_id"]
    source = Source("lockgate.actions", home_partition(aid, PARTITIONS), ledger._offset, None)
    again = ledger.decider.decide(raw, source, StoredDecision(replay.verdict_bytes, None))
    assert again.replayed and again.verdict_bytes == replay.verdict_bytes
    assert [e["kind"] for e in again.audit] == ["security", "verdict"]
    assert [e["event_id"] for e in again.audit] == [e["event_id"] for e in replay.audit]


def test_too_old_and_future_proposals_are_refused() -> None:
    ids = ActionIds(1, HOUR_US)
    now = now_us()
    assert ids.admit(_proposal("old", now - HOUR_US - 1), 0, now) is not None
    assert ids.admit(_proposal("future", now + FUTURE_SKEW_US + 1), 0, now) is not None
    assert ids.admit(_proposal("fresh", now - HOUR_US + 1_000_000), 0, now) is None
    assert ids.held() == 1


def test_memory_forgets_ids_past_window_plus_skew_and_refuses_them_by_age() -> None:
    ids = ActionIds(1, HOUR_US)
    t0 = now_us()
    assert ids.admit(_proposal("a", t0), 0, t0) is None
    later = t0 + HOUR_US + FUTURE_SKEW_US + 1
    assert ids.admit(_proposal("b", later), 0, later) is None
    assert ids.held() == 1  # "a" is forgotten ...
    refusal = ids.admit(_proposal("a", t0), 0, later)  # ... and its replay is refused by age
    assert refusal is not None and "replay window" in refusal.reason


def test_rebuilt_memory_replaces_what_was_held() -> None:
    ids = ActionIds(1, HOUR_US)
    now = now_us()
    assert ids.admit(_proposal("a", now), 0, now) is None
    assert ids.loaded(0, ["b", "c"], now) == 2
    assert ids.admit(_proposal("b", now), 0, now) is not None
    assert ids.admit(_proposal("a", now), 0, now) is None  # the topic is the truth, not the old memory
    ids.forget(0)
    assert ids.held() == 0


def test_murmur2_is_kafkas() -> None:
    # aiokafka's line-by-line port of Java's Utils.murmur2 is the reference; the integration
    # test checks a Guard's proposals land where home_partition says.
    import random

    from aiokafka.partitioner import murmur2 as reference

    rng = random.Random(7)
    keys = [rng.randbytes(n) for n in range(0, 70) for _ in range(20)] + [b"a-1", "é-ü".encode()]
    assert [murmur2(k) for k in keys] == [reference(k) for k in keys]
    assert {home_partition(f"id-{i}", 4) for i in range(100)} == {0, 1, 2, 3}


def test_a_repeated_copy_of_an_expired_proposal_is_a_replay_not_a_second_action(ledger: DecidedLedger) -> None:
    # During a broker failover the Guard's producer wrote one proposal twice; both copies
    # reached the processor after their deadline. The first is shed (``expired``, on the
    # ledger as an action); the second must be refused as a replay — one action per id.
    raw, first = ledger.propose(deadline=now_us() - 1_000)
    second = ledger.submit(raw)
    assert first.verdict is not None and (first.verdict["decision"], first.verdict["basis"]) == ("block", "expired")
    assert [e["kind"] for e in first.audit] == ["action", "verdict"]
    assert second.verdict is not None and (second.verdict["decision"], second.verdict["basis"]) == ("block", "replay")
    assert [e["kind"] for e in second.audit] == ["security", "verdict"]
    assert [e["kind"] for e in ledger.events].count("action") == 1
