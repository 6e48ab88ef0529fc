"""The Guard: ask before acting, act only on a valid signed allow, record what happened.

Sync (:class:`Guard`) and asyncio (:class:`AsyncGuard`) shells share one core
(:class:`_GuardCore`): it builds and signs the ProposedAction, publishes it, waits on the
reply router for the verdict, verifies it, and later publishes the signed ActionOutcome.

Reviews: a verdict with decision ``review`` means the action waits for reviewers. Given
``wait_for_review=SECONDS`` the Guard waits for the final verdict (then proceeds as for any
verdict); without it, or when the time runs out, :class:`ReviewPending` carries a
:class:`~producers.pending.PendingVerdict` handle to wait on or poll later, and
:meth:`Guard.request` returns that handle directly. ``justification`` and ``break_glass``
on the action travel in the signed proposal.

Fail-closed contract: the guarded body runs only after :func:`accept_verdict` returned an
``allow``. Block → :class:`ActionBlocked`; no verdict in ``timeout_s`` →
:class:`VerdictTimeout`; publish failure → :class:`GuardUnavailable`; bad or missing
signature, or a verdict for another action → :class:`VerdictRejected`; a verdict that
does not commit to the exact proposal sent (its ``proposal_sha256``) →
:class:`~producers.errors.VerdictMisbound`, a ``VerdictRejected``; more than
``max_in_flight`` requests already waiting → :class:`GuardOverloaded`. All of them derive
from :class:`GuardError` and are raised before the body starts.

Overload: each proposal carries its deadline (when it is sent plus its timeout), so a
processor that reads it too late answers with a signed block (basis ``expired``) instead
of spending work on an answer nobody waits for; and each Guard holds at most
``max_in_flight`` requests at once (:class:`_Slots`), so a slow processor is not buried.

Recording path (:mod:`producers.outcome_recorder`): once the body has run, its outcome is
never lost. Returning from the ``with`` block means the outcome was delivered (acknowledged
by Kafka in its own delivery callback) or durably spooled on local disk and will be
redelivered; the block waits at most ``outcome_timeout_s`` for Kafka, plus one spool write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from lockgate.kernel.errors import ConfigError
from producers.errors import ActionBlocked, GuardOverloaded, GuardUnavailable, ReviewPending, VerdictTimeout
from producers.outcome_recorder import OutcomeRecorder, Recorded
from producers.pending import PendingVerdict
from producers.reply_router import ReplyRouter
from producers.settings import GuardSettings
from producers.spool import OutcomeSpool, SpoolEntry
from producers.verdicts import Verdict, accept_verdict
from schemas.codec import get_codec
from schemas.errors import CodecError
from schemas.topics import TOPIC_MAX_MESSAGE_BYTES, Topics
from trust.bindings import record_sha256
from trust.keys import PublicKey, SigningKey
from trust.signatures import sign_record

__all__ = ["Action", "Actor", "AsyncGuard", "Guard", "GuardedAction"]

AttrValue = None | bool | int | float | str


def _now_us() -> int:
    return time.time_ns() // 1000


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Actor:
    """Who acts."""

    id: str
    roles: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """A change the service intends to make. ``change`` must be JSON-serialisable."""

    actor: Actor
    type: str
    resource: str
    attributes: Mapping[str, AttrValue] = field(default_factory=dict)
    change: Any = None
    justification: str | None = None  # why: required by review rules with require_reason, and by break-glass
    break_glass: bool = False  # override a block or a pending review (needs a break-glass role)


class GuardedAction:
    """Handle given to the body of ``with guard.action(...)``: the verdict and a change log.

    After the block, ``recorded`` says what became of the outcome: ``"delivered"`` (Kafka
    confirmed it) or ``"spooled"`` (kept on local disk, redelivered later).
    """

    def __init__(self, proposal: dict[str, Any], verdict: Verdict) -> None:
        self.proposal = proposal
        self.verdict = verdict
        self.before: Any = None
        self.after: Any = None
        self.recorded: Recorded | None = None

    @property
    def action_id(self) -> str:
        return str(self.proposal["action_id"])

    def record_change(self, *, before: Any = None, after: Any = None) -> None:
        """Record the data as it was and as it is now; lands in the outcome and the audit trail."""
        self.before = before
        self.after = after


class _Slots:
    """The bound on one Guard's requests in flight (``max_in_flight``, ``when_full``).

    A thread semaphore shared by the sync and asyncio shells (the async shell waits for it
    in a worker thread, never on the loop). ``acquire`` raises :class:`GuardOverloaded`
    when no slot is free in time; every acquired slot is released exactly once, when the
    request settled (verdict, timeout or failure).
    """

    def __init__(self, limit: int, wait: bool) -> None:
        self.limit = limit
        self.wait = wait
        self._sem = threading.BoundedSemaphore(limit)

    def acquire(self, timeout_s: float) -> None:
        if self._sem.acquire(blocking=False):
            return
        if self.wait and self._sem.acquire(timeout=timeout_s):
            return
        raise self._overloaded(timeout_s)

    async def aacquire(self, timeout_s: float) -> None:
        if self._sem.acquire(blocking=False):
            return
        if self.wait and await asyncio.to_thread(self._sem.acquire, timeout=timeout_s):
            return
        raise self._overloaded(timeout_s)

    def release(self) -> None:
        self._sem.release()

    def _overloaded(self, timeout_s: float) -> GuardOverloaded:
        waited = f"no slot freed within {timeout_s:.3g}s" if self.wait else "when_full='fail'"
        return GuardOverloaded(
            f"this Guard already has {self.limit} requests waiting for verdicts ({waited}); the action "
            "was not proposed and did not run. Retry later, or raise LOCKGATE_MAX_IN_FLIGHT")


class _GuardCore:
    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        self.slots = _Slots(settings.max_in_flight, settings.when_full == "wait")
        self.instance_id = uuid.uuid4().hex
        self.topics = Topics(settings.topic_prefix)
        self.codec = get_codec()
        key_path = settings.resolved_verdict_key()
        if not key_path.exists():
            raise ConfigError(
                f"processor public key {key_path} not found: the Guard cannot verify verdicts and "
                "refuses to run (fail-closed); run `lockgate keys init` or set LOCKGATE_VERDICT_PUBLIC_KEY"
            )
        self.verdict_key = PublicKey.load(key_path)
        service_key = settings.resolved_service_key()
        self.service_key = SigningKey.load(service_key) if service_key is not None else None
        spool = OutcomeSpool(settings.resolved_spool_dir())
        try:
            spool.ensure()
        except OSError as exc:
            raise ConfigError(
                f"cannot create the outcome spool directory {spool.directory} ({exc}); the Guard "
                "refuses to run without it. Set LOCKGATE_SPOOL_DIR to a writable directory"
            ) from exc
        self.producer = Producer({
            "bootstrap.servers": settings.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 0,
            # Proposals land in their action id's home partition, where its one decision is
            # kept (processors/replay.py): Kafka's murmur2, as the Java client partitions.
            "partitioner": "murmur2_random",
            "message.max.bytes": TOPIC_MAX_MESSAGE_BYTES,
            "message.timeout.ms": max(1000, int(settings.timeout_s * 1000)),
            "socket.connection.setup.timeout.ms": max(1000, int(settings.timeout_s * 1000)),
        })
        try:
            self.router = ReplyRouter(settings.bootstrap_servers, self.topics.verdicts, self.instance_id,
                                      settings.reply_partition, self.producer,
                                      ready_timeout_s=settings.timeout_s)
        except KafkaException as exc:
            raise GuardUnavailable(
                f"cannot reach Kafka at {settings.bootstrap_servers} ({exc.args[0].str()}); "
                "is the stack up (`lockgate status`)?"
            ) from exc
        self.outcomes = OutcomeRecorder(settings.bootstrap_servers, self.topics.outcomes, spool,
                                        settings.resolved_outcome_timeout())

    def build(self, action: Action, deadline_us: int | None = None) -> dict[str, Any]:
        now = _now_us()
        rec: dict[str, Any] = {
            "action_id": str(uuid.uuid4()),
            "correlation_id": uuid.uuid4().hex,
            "proposed_at": now,
            "deadline": deadline_us if deadline_us is not None else now + int(self.settings.timeout_s * 1e6),
            "tenant": self.settings.tenant,
            "service": self.settings.service,
            "actor": {"id": action.actor.id, "roles": list(action.actor.roles),
                      "attributes": dict(action.actor.attributes)},
            "type": action.type,
            "resource": action.resource,
            "attributes": dict(action.attributes),
            "change_json": _json(action.change),
            "reply_topic": self.topics.verdicts,
            "reply_partition": self.router.partition,
            "reply_instance": self.instance_id,
            "service_key_id": None,
            "service_signature": None,
            "justification": action.justification,
            "break_glass": bool(action.break_glass),
            "signed_schema": 2,  # the signature covers every field: deadline, justification and break-glass included
        }
        if self.service_key is not None:
            rec = sign_record(rec, "service_signature", None, self.service_key)
        return rec

    def wait_for(self, timeout_s: float | None) -> float:
        return self.settings.timeout_s if timeout_s is None else timeout_s

    def propose(self, action: Action, deadline_us: int) -> tuple[dict[str, Any], concurrent.futures.Future[bytes]]:
        try:
            value = self.codec.encode("ProposedAction", self.build(action, deadline_us))
        except CodecError as exc:
            raise GuardUnavailable(f"action cannot be encoded: {exc}") from exc
        # The proposal as the processor reads it (defaults filled in): what its verdict binds.
        rec = self.codec.decode_as("ProposedAction", value)
        correlation = rec["correlation_id"]
        future = self.router.expect(correlation, rec["action_id"])

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self.router.fail(correlation, GuardUnavailable(
                    f"proposed action {rec['action_id']} was not delivered to Kafka: {err.str()}; "
                    "the action did not run"))

        try:
            self.producer.produce(self.topics.actions, value, key=rec["action_id"].encode(),
                                  on_delivery=delivered)
        except (BufferError, KafkaException) as exc:
            self.router.forget(correlation)
            raise GuardUnavailable(f"could not publish the proposed action: {exc}") from exc
        return rec, future

    def settle(self, rec: dict[str, Any], raw: bytes) -> Verdict:
        return accept_verdict(raw, rec["action_id"], self.verdict_key, proposal_sha256=record_sha256(rec))

    def pending(self, rec: dict[str, Any], verdict: Verdict) -> PendingVerdict:
        return PendingVerdict(rec, verdict, self.router, lambda raw: self.settle(rec, raw))

    def reviewed(self, rec: dict[str, Any], raw: bytes, wait_for_review: float | None) -> Verdict:
        """The verdict; after a ``review`` one, the final one within ``wait_for_review`` seconds."""
        verdict = self.settle(rec, raw)
        if verdict.pending_review:
            handle = self.pending(rec, verdict)
            if not wait_for_review:
                raise ReviewPending(verdict, handle, 0.0)
            return handle.wait(wait_for_review)
        return verdict

    async def areviewed(self, rec: dict[str, Any], raw: bytes, wait_for_review: float | None) -> Verdict:
        verdict = self.settle(rec, raw)
        if verdict.pending_review:
            handle = self.pending(rec, verdict)
            if not wait_for_review:
                raise ReviewPending(verdict, handle, 0.0)
            return await handle.await_(wait_for_review)
        return verdict

    def admit(self, rec: dict[str, Any], verdict: Verdict) -> GuardedAction:
        """The handle for the guarded body, or :class:`ActionBlocked` before it runs."""
        if not verdict.allowed:
            raise ActionBlocked(verdict)
        return GuardedAction(rec, verdict)

    def ask(self, action: Action, timeout_s: float | None) -> tuple[dict[str, Any], bytes]:
        """Propose ``action`` within a slot and wait for its verdict's bytes, all within the timeout."""
        wait = self.wait_for(timeout_s)
        started = time.monotonic()
        deadline_us = _now_us() + int(wait * 1e6)
        self.slots.acquire(wait)
        try:
            rec, future = self.propose(action, deadline_us)
            left = max(0.0, wait - (time.monotonic() - started))
            try:
                return rec, future.result(timeout=left)
            except concurrent.futures.TimeoutError:
                raise self.timeout(rec, wait) from None
        finally:
            self.slots.release()

    async def aask(self, action: Action, timeout_s: float | None) -> tuple[dict[str, Any], bytes]:
        """:meth:`ask` on the event loop."""
        wait = self.wait_for(timeout_s)
        started = time.monotonic()
        deadline_us = _now_us() + int(wait * 1e6)
        await self.slots.aacquire(wait)
        try:
            rec, future = self.propose(action, deadline_us)
            left = max(0.0, wait - (time.monotonic() - started))
            try:
                return rec, await asyncio.wait_for(asyncio.wrap_future(future), left)
            except TimeoutError:
                raise self.timeout(rec, wait) from None
        finally:
            self.slots.release()

    def timeout(self, rec: dict[str, Any], waited_s: float | None = None) -> VerdictTimeout:
        self.router.forget(rec["correlation_id"])
        waited = self.settings.timeout_s if waited_s is None else waited_s
        return VerdictTimeout(
            f"no verdict for action {rec['action_id']} within {waited:.3g}s; the "
            "action did not run. Is the processor up (`lockgate status`)?"
        )

    def outcome(self, handle: GuardedAction, error: BaseException | None) -> Recorded:
        """Deliver or spool the outcome; blocks at most the outcome timeout plus a spool write."""
        handle.recorded = self.outcomes.record(self.outcome_entry(handle, error))
        return handle.recorded

    async def aoutcome(self, handle: GuardedAction, error: BaseException | None) -> Recorded:
        """:meth:`outcome` without blocking the event loop (the spool write runs in a thread)."""
        handle.recorded = await self.outcomes.arecord(self.outcome_entry(handle, error))
        return handle.recorded

    def outcome_entry(self, handle: GuardedAction, error: BaseException | None) -> SpoolEntry:
        """The signed, encoded ActionOutcome, as it is sent and, if need be, spooled."""
        recorded_at = _now_us()
        rec: dict[str, Any] = {
            "outcome_id": str(uuid.uuid4()),
            "action_id": handle.action_id,
            "correlation_id": handle.proposal["correlation_id"],
            "recorded_at": recorded_at,
            "tenant": self.settings.tenant,
            "service": self.settings.service,
            "actor_id": handle.proposal["actor"]["id"],
            "status": "failed" if error is not None else "committed",
            "error_type": type(error).__name__ if error is not None else None,
            "error_message": str(error)[:2000] if error is not None else None,
            "before_json": _json(handle.before),
            "after_json": _json(handle.after),
            "verdict": handle.verdict.raw,
            "service_key_id": None,
            "service_signature": None,
            "verdict_sha256": handle.verdict.sha256,
            "signed_schema": 2,
        }
        if self.service_key is not None:
            rec = sign_record(rec, "service_signature", None, self.service_key)
        return SpoolEntry(rec["outcome_id"], handle.action_id, self.topics.outcomes, handle.action_id.encode(),
                          self.codec.encode("ActionOutcome", rec), recorded_at // 1000)

    def close(self) -> None:
        self.router.close()
        self.outcomes.close()
        self.producer.flush(max(self.settings.timeout_s, 5.0))


def _action(actor: str | Actor, type: str, resource: str, attributes: Mapping[str, AttrValue] | None,
            change: Any, roles: tuple[str, ...] | list[str] | None, justification: str | None = None,
            break_glass: bool = False) -> Action:
    if isinstance(actor, str):
        actor = Actor(actor, tuple(roles or ()))
    return Action(actor, type, resource, dict(attributes or {}), change, justification, break_glass)


class Guard:
    """Synchronous Guard; thread-safe, share one per process.

    >>> with Guard(service="billing") as guard:                      # doctest: +SKIP
    ...     with guard.action(actor="alice", type="db.query", resource="db/prod/orders",
    ...                       attributes={"sql": "DELETE FROM orders WHERE id = 7"}) as act:
    ...         act.record_change(before=row, after=None)
    ...         delete_row()
    """

    def __init__(self, settings: GuardSettings | None = None, **overrides: Any) -> None:
        self._core = _GuardCore(settings or GuardSettings(**overrides))

    @property
    def reply_partition(self) -> int:
        return self._core.router.partition

    @property
    def stats(self) -> Any:
        return self._core.router.stats

    def check(self, action: Action, *, timeout_s: float | None = None,
              wait_for_review: float | None = None) -> Verdict:
        """Ask for a verdict and return it. Raises on anything untrustworthy.

        ``timeout_s`` overrides the configured wait for this call only; it also sets the
        proposal's deadline, and a wait for a free slot (``max_in_flight``) counts against it.
        A pending review (decision ``review``) is waited out for up to ``wait_for_review``
        seconds and the final verdict returned; without it, the pending verdict itself is
        returned (see :meth:`request` for a handle to wait on later).
        """
        rec, raw = self._core.ask(action, timeout_s)
        if not wait_for_review:
            return self._core.settle(rec, raw)
        return self._core.reviewed(rec, raw, wait_for_review)

    def request(self, action: Action, *, timeout_s: float | None = None) -> PendingVerdict:
        """Ask for a verdict; the handle holds it and, for a pending review, waits or polls for the final one."""
        rec, raw = self._core.ask(action, timeout_s)
        return self._core.pending(rec, self._core.settle(rec, raw))

    @contextmanager
    def action(self, *, actor: str | Actor, type: str, resource: str,
               attributes: Mapping[str, AttrValue] | None = None, change: Any = None,
               roles: tuple[str, ...] | list[str] | None = None, justification: str | None = None,
               break_glass: bool = False, wait_for_review: float | None = None) -> Iterator[GuardedAction]:
        """Run the body only on a valid allow; record its outcome afterwards.

        Before the body: the verdict, or one of the :class:`GuardError` s (the body does not run).
        After the body, however it ended: its outcome (committed, or failed with the
        exception's type) is **delivered** — acknowledged by Kafka in its delivery callback —
        or **spooled** — fsync'd to the spool directory, and redelivered by this Guard while it
        is open, by :meth:`close`, by the next Guard that starts on that directory, or by
        ``lockgate spool flush``. The block returns (or re-raises the body's exception) only
        then, at most ``outcome_timeout_s`` plus one spool write after the body ended;
        ``handle.recorded`` says which of the two happened. :class:`SpoolError` only if the
        outcome could be neither confirmed nor written to the spool.

        An action held for review waits up to ``wait_for_review`` seconds for its final
        verdict, else raises :class:`ReviewPending` (the body does not run).
        """
        handle = self.admit(_action(actor, type, resource, attributes, change, roles, justification, break_glass),
                            wait_for_review=wait_for_review)
        try:
            yield handle
        except BaseException as exc:
            self.record(handle, exc)
            raise
        self.record(handle, None)

    def admit(self, action: Action, *, timeout_s: float | None = None,
              wait_for_review: float | None = None) -> GuardedAction:
        """The first half of :meth:`action`, for callers whose "body" is not a Python block.

        Returns the handle only on a valid allow (raises like :meth:`action` otherwise). The
        caller then owes exactly one :meth:`record` for it, once the outcome is known.
        """
        rec, raw = self._core.ask(action, timeout_s)
        return self._core.admit(rec, self._core.reviewed(rec, raw, wait_for_review))

    def record(self, handle: GuardedAction, error: BaseException | None = None) -> Recorded:
        """Record ``handle``'s outcome (committed when ``error`` is None, else failed with it),
        with :meth:`action`'s guarantee: delivered or spooled when this returns."""
        return self._core.outcome(handle, error)

    def close(self) -> None:
        """Stop; first redeliver spooled outcomes and wait for those in flight, for at most
        ``outcome_timeout_s``. What Kafka has not confirmed by then stays spooled."""
        self._core.close()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGuard:
    """asyncio twin of :class:`Guard`; Kafka I/O stays on the router thread, never the loop."""

    def __init__(self, settings: GuardSettings | None = None, **overrides: Any) -> None:
        self._core = _GuardCore(settings or GuardSettings(**overrides))

    async def check(self, action: Action, *, timeout_s: float | None = None,
                    wait_for_review: float | None = None) -> Verdict:
        """Like :meth:`Guard.check`, without blocking the event loop."""
        rec, raw = await self._core.aask(action, timeout_s)
        if not wait_for_review:
            return self._core.settle(rec, raw)
        return await self._core.areviewed(rec, raw, wait_for_review)

    async def request(self, action: Action, *, timeout_s: float | None = None) -> PendingVerdict:
        """Like :meth:`Guard.request`."""
        rec, raw = await self._core.aask(action, timeout_s)
        return self._core.pending(rec, self._core.settle(rec, raw))

    @asynccontextmanager
    async def action(self, *, actor: str | Actor, type: str, resource: str,
                     attributes: Mapping[str, AttrValue] | None = None, change: Any = None,
                     roles: tuple[str, ...] | list[str] | None = None, justification: str | None = None,
                     break_glass: bool = False, wait_for_review: float | None = None
                     ) -> AsyncIterator[GuardedAction]:
        """Like :meth:`Guard.action`, as ``async with``, with the same guarantee on exit.

        The wait for Kafka's confirmation happens on the event loop; only the spool write (an
        fsync) runs in a worker thread.
        """
        handle = await self.admit(_action(actor, type, resource, attributes, change, roles, justification,
                                          break_glass), wait_for_review=wait_for_review)
        try:
            yield handle
        except BaseException as exc:
            await self.record(handle, exc)
            raise
        await self.record(handle, None)

    async def admit(self, action: Action, *, timeout_s: float | None = None,
                    wait_for_review: float | None = None) -> GuardedAction:
        """Like :meth:`Guard.admit`: the handle on a valid allow; one :meth:`record` is owed."""
        rec, raw = await self._core.aask(action, timeout_s)
        return self._core.admit(rec, await self._core.areviewed(rec, raw, wait_for_review))

    async def record(self, handle: GuardedAction, error: BaseException | None = None) -> Recorded:
        """Like :meth:`Guard.record`: the wait for Kafka is on the event loop, only the spool
        write runs in a thread."""
        return await self._core.aoutcome(handle, error)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._core.close)

    async def __aenter__(self) -> AsyncGuard:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

