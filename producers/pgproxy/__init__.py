"""The PostgreSQL guard proxy: guard any PostgreSQL client without changing its code.

An asyncio wire-protocol proxy between clients (psql, drivers, applications) and one
PostgreSQL server. Every statement is proposed through the SDK's :class:`AsyncGuard`
before it reaches the database; a blocked statement gets SQLSTATE 42501 and never runs;
every executed statement's outcome (command tag, row count, bounded before/after images)
is recorded when its transaction ends; optional row limits undo statements that touched
too many rows. ``lockgate proxy postgres`` runs it.

Modules: ``server`` (listener, Guard, outcomes, cancels), ``session`` (one connection:
startup, auth relay, judging, refusing, recording), ``protocol`` (wire format),
``statements`` (splitting and classifying SQL text), ``transactions`` (when a change is
final), ``images`` (before/after images), ``config``, ``errors``.
"""

from producers.pgproxy.config import ProxyConfig, load_config
from producers.pgproxy.server import PgProxy, run_proxy

__all__ = ["PgProxy", "ProxyConfig", "load_config", "run_proxy"]
