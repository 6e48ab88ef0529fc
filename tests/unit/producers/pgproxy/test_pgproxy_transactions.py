"""When an executed statement's change is final: PostgreSQL's transaction rules, from its answers."""

from __future__ import annotations

from producers.pgproxy.errors import OutcomeUnknown, RolledBack, StatementNotCommitted
from producers.pgproxy.statements import Control
from producers.pgproxy.transactions import TransactionOutcomes


def tracker() -> tuple[TransactionOutcomes[str], dict[str, StatementNotCommitted | None]]:
    seen: dict[str, StatementNotCommitted | None] = {}
    return TransactionOutcomes(seen.__setitem__), seen


def test_implicit_transaction_commits_at_ready_idle() -> None:
    t, seen = tracker()
    t.executed("a")
    assert seen == {}
    t.ready(b"I")
    assert seen == {"a": None}


def test_error_in_implicit_transaction_rolls_back_what_ran_before_it() -> None:
    t, seen = tracker()
    t.executed("a")
    t.error()
    t.ready(b"I")
    assert isinstance(seen["a"], RolledBack)


def test_explicit_block_waits_for_commit_and_aborted_commit_rolls_back() -> None:
    t, seen = tracker()
    t.control(Control("begin"), "BEGIN")
    t.executed("a")
    t.ready(b"T")
    assert seen == {}
    t.control(Control("commit"), "COMMIT")
    assert seen == {"a": None}
    t.executed("b")
    t.error()
    t.ready(b"E")
    t.control(Control("commit"), "ROLLBACK")
    assert isinstance(seen["b"], RolledBack)


def test_rollback_to_savepoint_undoes_only_what_followed_it() -> None:
    t, seen = tracker()
    t.control(Control("begin"), "BEGIN")
    t.executed("a")
    t.control(Control("savepoint", "s"), "SAVEPOINT")
    t.executed("b")
    t.control(Control("savepoint", "s2"), "SAVEPOINT")
    t.executed("c")
    t.control(Control("release", "s2"), "RELEASE")
    t.control(Control("rollback_to", "s"), "ROLLBACK")
    assert set(seen) == {"b", "c"} and all(isinstance(e, RolledBack) for e in seen.values())
    t.executed("d")
    t.control(Control("commit"), "COMMIT")
    assert seen["a"] is None and seen["d"] is None


def test_two_phase_and_lost_connections_are_unknown() -> None:
    t, seen = tracker()
    t.executed("a")
    t.prepared_for_two_phase()
    t.executed("b")
    t.close(OutcomeUnknown("gone"))
    assert isinstance(seen["a"], OutcomeUnknown) and isinstance(seen["b"], OutcomeUnknown)
