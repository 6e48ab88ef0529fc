"""When does an executed statement's change become final? Follow the session's transactions.

A statement that ran is not yet committed: outside a transaction block it commits when
its implicit transaction ends without error (the end of the simple-query string, or the
extended-protocol Sync); inside ``BEGIN`` it commits with ``COMMIT`` and is undone by
``ROLLBACK``, by ``ROLLBACK TO`` a savepoint taken before it, or by an aborted
transaction (``COMMIT`` of a failed transaction answers ``ROLLBACK``). This class applies
exactly those rules to the server's answers (command tags and the ReadyForQuery status),
never to what the client asked for, and hands each statement to ``resolve`` once: with
None when it committed, or with the :class:`StatementNotCommitted` saying why not.

Pure and synchronous; the session feeds it in the order the server answered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from producers.pgproxy.errors import OutcomeUnknown, RolledBack, StatementNotCommitted
from producers.pgproxy.statements import Control

__all__ = ["TransactionOutcomes"]

R = TypeVar("R")


class TransactionOutcomes(Generic[R]):
    """Executed statements waiting for their transaction to end."""

    def __init__(self, resolve: Callable[[R, StatementNotCommitted | None], None]) -> None:
        self._resolve = resolve
        self.pending: list[R] = []
        self._savepoints: list[tuple[str, int]] = []
        self._failed = False  # an error since the last ReadyForQuery

    def executed(self, run: R) -> None:
        """``run`` completed (CommandComplete); its fate is its transaction's."""
        self.pending.append(run)

    def error(self) -> None:
        """The server reported an error: the current implicit transaction will roll back."""
        self._failed = True

    def control(self, control: Control, tag: str) -> None:
        """A transaction-control statement completed with ``tag``."""
        if control.kind == "commit":
            if tag.startswith("COMMIT"):
                self._settle(None)
            else:  # COMMIT of an aborted transaction answers ROLLBACK
                self._settle(RolledBack("its transaction was aborted by an error; COMMIT rolled it back"))
        elif control.kind == "rollback":
            self._settle(RolledBack("its transaction was rolled back"))
        elif control.kind == "savepoint" and control.savepoint is not None:
            self._savepoints.append((control.savepoint, len(self.pending)))
        elif control.kind == "release":
            index = self._find(control.savepoint)
            if index is not None:
                del self._savepoints[index:]
        elif control.kind == "rollback_to":
            index = self._find(control.savepoint)
            if index is not None:
                cut = self._savepoints[index][1]
                undone, self.pending = self.pending[cut:], self.pending[:cut]
                del self._savepoints[index + 1:]
                for run in undone:
                    self._resolve(run, RolledBack(f"rolled back to savepoint {control.savepoint}"))

    def prepared_for_two_phase(self) -> None:
        """PREPARE TRANSACTION: COMMIT/ROLLBACK PREPARED may come from any session."""
        self._settle(OutcomeUnknown("prepared for two-phase commit; decided outside this session"))

    def ready(self, status: bytes) -> None:
        """ReadyForQuery: ``I`` means no transaction is open any more."""
        if status == b"I" and self.pending:
            self._settle(RolledBack("its implicit transaction was rolled back after an error")
                         if self._failed else None)
        if status == b"I":
            self._savepoints.clear()
        self._failed = False

    def close(self, reason: StatementNotCommitted) -> None:
        """The session ended with statements still waiting."""
        self._settle(reason)

    def _find(self, name: str | None) -> int | None:
        for i in range(len(self._savepoints) - 1, -1, -1):
            if self._savepoints[i][0] == name:
                return i
        return None

    def _settle(self, error: StatementNotCommitted | None) -> None:
        runs, self.pending = self.pending, []
        self._savepoints.clear()
        for run in runs:
            self._resolve(run, error)
