"""Guard every SQL statement an SQLAlchemy engine runs (optional: ``pip install lockgate[sqlalchemy]``).

:func:`guard_engine` hooks the engine's cursor events: before a statement reaches the
database, it is proposed as an action (``attributes.sql`` = the statement, so SQL-aware
rules such as "DELETE without WHERE on prod" apply) and runs only on a signed allow. A
block, a timeout or any untrustworthy verdict raises before the cursor executes, so a
blocked statement never reaches the database. After the statement, an outcome is
recorded (committed, or failed with the driver's error type).

"Committed" here means the statement executed; the surrounding transaction is the
application's to commit or roll back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from producers.guard import Actor, Guard

__all__ = ["guard_engine"]

_KEY = "_lockgate_guarded"


def guard_engine(engine: Engine, guard: Guard, *, actor: Callable[[], Actor | str],
                 resource: str | Callable[[str], str], action_type: str = "db.query") -> Callable[[], None]:
    """Make ``engine`` ask ``guard`` before every statement; return a function that undoes it.

    ``actor`` is called per statement (e.g. reads the current request's user);
    ``resource`` names what is acted on, or derives it from the statement. Unguard before
    closing the Guard: a closed Guard answers nothing, so every statement would time out
    (fail-closed).
    """

    @event.listens_for(engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        who = actor()
        res = resource(statement) if callable(resource) else resource
        cm = guard.action(actor=who, type=action_type, resource=res, attributes={"sql": statement})
        cm.__enter__()  # raises ActionBlocked / GuardError: the cursor never executes
        context.__dict__[_KEY] = cm

    @event.listens_for(engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
              executemany: bool) -> None:
        cm = context.__dict__.pop(_KEY, None)
        if cm is not None:
            cm.__exit__(None, None, None)

    @event.listens_for(engine, "handle_error")
    def failed(exception_context: Any) -> None:
        ctx = exception_context.execution_context
        cm = ctx.__dict__.pop(_KEY, None) if ctx is not None else None
        if cm is None:
            return
        exc = exception_context.original_exception
        try:
            cm.__exit__(type(exc), exc, exc.__traceback__)
        except BaseException:  # noqa: S110 - the outcome is recorded; SQLAlchemy re-raises the original
            pass

    def unguard() -> None:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
        event.remove(engine, "handle_error", failed)

    return unguard
