"""Recording outcomes: confirmed by Kafka per message, or durably spooled and redelivered.

The guarantee (what returning from ``with guard.action(...)`` means): the outcome was
**delivered** — the broker acknowledged it (acks=all) in its delivery callback — or it is
**spooled** — fsync'd to the local spool (:mod:`producers.spool`) and redelivered later. The
caller waits at most the outcome timeout for the callback (plus one spool write, a few
milliseconds), never longer; only when the spool itself cannot be written does it get
:class:`~producers.errors.SpoolError`.

How, and why each piece is there:

* **Its own producer.** Outcomes use an idempotent producer with no local message timeout
  (``message.timeout.ms=0``): librdkafka keeps retrying the same message with the same
  sequence number until the broker takes it, so an outcome still in flight when its caller
  stopped waiting is delivered once, not dropped (the proposal producer keeps its short
  timeout: the decision path must fail fast). Delivery is known only from each message's
  callback, never from a flush count.
* **Spool with a claim.** When the caller stops waiting, the outcome is written to the spool
  and the spool file stays *claimed* (flock) by this producer while the message is in flight:
  the callback deletes the file on success, or releases it on failure. A claimed file is
  never re-sent by anyone else, so a message that is merely slow is not duplicated.
* **Redelivery.** Unclaimed entries — from a failed message, a closed or crashed Guard, or
  another process — are re-sent, the same key, value bytes and timestamp, by a background
  pass (at Guard start, then with backoff while entries remain, every
  :data:`IDLE_SCAN_S` otherwise), by ``close()`` and by ``lockgate spool flush``. An entry is
  removed only after its delivery callback confirmed it, or when reading the topic back
  shows that exact record is already there.
* **Read back before re-sending.** A produce request sent just before a broker stall (or a
  Guard's exit) can still be appended afterwards. Before re-sending, a pass reads the topic
  from the entry's timestamp (less :data:`CLOCK_SKEW_MS`) to the end and drops entries whose
  exact bytes are already there. What remains possible is a duplicate when such a request is
  appended *after* that read (a network partition that heals later): consumers must treat
  ``outcome_id`` as the identity of an outcome.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from lockgate.kernel.kafka_offsets import watermarks
from producers.errors import SpoolError
from producers.spool import OutcomeSpool, SpoolClaim, SpoolEntry
from schemas.topics import TOPIC_MAX_MESSAGE_BYTES

__all__ = ["CLOCK_SKEW_MS", "IDLE_SCAN_S", "OutcomeRecorder", "Recorded", "RedeliveryReport", "find_on_topic"]

log = logging.getLogger("lockgate.outcomes")

Recorded = Literal["delivered", "spooled"]

#: How far before an entry's timestamp the read-back starts (producer/broker clock skew).
CLOCK_SKEW_MS = 60_000
#: Background scan of the spool when it was empty (entries of other processes show up here).
IDLE_SCAN_S = 30.0
#: Backoff of the background redelivery while entries remain: doubles from MIN to MAX.
RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0
#: Spool files held open (claimed) at once for outcomes in flight; beyond it an outcome is
#: spooled unclaimed and only this process knows not to re-send it while it is in flight.
MAX_HELD_CLAIMS = 200

_PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SpoolCheckFailed(Exception):
    """The topic could not be read back, so its entries are not re-sent in this pass."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class _Pending:
    """One outcome handed to the producer, until its delivery callback (or a local refusal)."""

    __slots__ = ("claim", "entry", "error", "finished", "future", "unclaimed_copy")

    def __init__(self, entry: SpoolEntry, claim: SpoolClaim | None) -> None:
        self.entry = entry
        self.claim = claim
        # The spool holding an unclaimed copy (past MAX_HELD_CLAIMS), to remove on success.
        self.unclaimed_copy: OutcomeSpool | None = None
        self.error: str | None = None
        self.finished = False
        # Resolves to None (delivered) or the error text.
        self.future: concurrent.futures.Future[str | None] = concurrent.futures.Future()


def remove_copy(spool: OutcomeSpool, outcome_id: str) -> None:
    """Remove a spooled copy of a delivered outcome, unless someone else holds it."""
    got = spool.claim(spool.path_of(outcome_id))
    if got is not None:
        got[1].remove()


class _Delivery:
    """The outcome producer, its poll thread, and the outcomes in flight."""

    def __init__(self, bootstrap: str, name: str, *, quiet: bool = False) -> None:
        self.bootstrap = bootstrap
        conf: dict[str, object] = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 0,
            "message.max.bytes": TOPIC_MAX_MESSAGE_BYTES,
            "message.timeout.ms": 0,  # never give up locally: see the module docstring
        }
        if quiet:  # a command reports failures itself; librdkafka's connection noise is not news
            conf["log_level"] = 0
        self.producer = Producer(conf)
        self.poison: set[str] = set()
        self.on_failure: Callable[[], None] = lambda: None
        self.closed = False
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight: set[_Pending] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=f"lockgate-outcomes-{name}", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.producer.poll(0.1)
            except Exception:  # a callback's failure must not stop every later callback
                log.exception("outcome delivery callback failed")

    def send(self, entry: SpoolEntry, claim: SpoolClaim | None = None) -> _Pending:
        """Hand one outcome to the producer; the returned pending resolves on its callback."""
        pending = _Pending(entry, claim)
        with self._lock:
            closed = self.closed
            if not closed:
                self._inflight.add(pending)
        if closed:
            self._finish(pending, "the Guard is closing", permanent=False)
            return pending
        try:
            self.producer.produce(entry.topic, entry.value, key=entry.key, timestamp=entry.timestamp_ms,
                                  on_delivery=functools.partial(self._delivered, pending))
        except BufferError as exc:
            self._finish(pending, f"the producer's local queue is full ({exc})", permanent=False)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            self._finish(pending, f"{err.name()}: {err.str()}", permanent=not err.retriable())
        return pending

    def _delivered(self, pending: _Pending, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self._finish(pending, None)
        else:
            self._finish(pending, f"{err.name()}: {err.str()}",
                         permanent=not err.retriable() and err.code() not in _PURGED)

    def _finish(self, pending: _Pending, error: str | None, *, permanent: bool = False) -> None:
        with self._lock:
            pending.error = error
            pending.finished = True
            claim, pending.claim = pending.claim, None
            copy, pending.unclaimed_copy = pending.unclaimed_copy, None
            self._inflight.discard(pending)
            if permanent:
                self.poison.add(pending.entry.outcome_id)
            self._idle.notify_all()
        try:
            if copy is not None and error is None:
                remove_copy(copy, pending.entry.outcome_id)
            if claim is not None:
                if error is None:
                    claim.remove()
                else:
                    claim.release()
                    log.warning("outcome %s of action %s stays spooled: %s", pending.entry.outcome_id,
                                pending.entry.action_id, error)
        except OSError:
            # The outcome is safe either way: on Kafka, or still in the spool (then a later
            # pass finds it on the topic and removes it).
            log.exception("could not update the spool file of outcome %s", pending.entry.outcome_id)
        finally:
            if error is not None:
                self.on_failure()
            try:
                pending.future.set_result(error)
            except concurrent.futures.InvalidStateError:
                pass

    def attach(self, pending: _Pending, claim: SpoolClaim) -> bool:
        """Give the in-flight outcome its spool claim; False if its callback already came."""
        with self._lock:
            if pending.finished:
                return False
            pending.claim = claim
            return True

    def note_unclaimed_copy(self, pending: _Pending, spool: OutcomeSpool) -> bool:
        """The in-flight outcome also sits unclaimed in ``spool``; False if its callback already came."""
        with self._lock:
            if pending.finished:
                return False
            pending.unclaimed_copy = spool
            return True

    def poisoned(self) -> frozenset[str]:
        """Outcome ids Kafka refused for good in this process (not re-sent in the background)."""
        with self._lock:
            return frozenset(self.poison)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def in_flight_ids(self) -> frozenset[str]:
        with self._lock:
            return frozenset(p.entry.outcome_id for p in self._inflight)

    def claims_held(self) -> int:
        """Spool files held open for outcomes in flight (each costs a file descriptor)."""
        with self._lock:
            return sum(1 for p in self._inflight if p.claim is not None)

    def wait_idle(self, deadline: float) -> bool:
        with self._idle:
            while self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def close(self, deadline: float) -> None:
        """Wait for the in-flight outcomes until ``deadline``, then give up on the rest: their
        spool claims are released (the entries stay spooled) and the producer is closed."""
        with self._lock:
            if self.closed:
                return
        self.wait_idle(deadline)
        with self._lock:
            self.closed = True
        if self.in_flight():
            self.producer.purge(in_queue=True, in_flight=True)
            self.wait_idle(time.monotonic() + 5.0)
        self._stop.set()
        self._thread.join(timeout=5)
        self.producer.poll(0)
        self.producer.close()


def find_on_topic(bootstrap: str, topic: str, entries: Sequence[SpoolEntry], deadline: float) -> set[str]:
    """Outcome ids among ``entries`` whose exact record (key and value bytes) is on ``topic``.

    Reads every partition from the earliest entry's timestamp (less :data:`CLOCK_SKEW_MS`) to
    its current end. Raises :class:`SpoolCheckFailed` when that cannot be done by ``deadline``.
    """
    wanted = {(e.key, e.value): e.outcome_id for e in entries}
    if not wanted:
        return set()
    since = min(e.timestamp_ms for e in entries) - CLOCK_SKEW_MS

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SpoolCheckFailed(f"could not read {topic} back on {bootstrap} in time", unreachable=True)
        return remaining

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"lockgate-spool-check-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        # Outcomes are not produced in transactions; read everything that was appended.
        "isolation.level": "read_uncommitted",
        "fetch.wait.max.ms": 50,
        "log_level": 0,
    })
    try:
        try:
            meta = consumer.list_topics(topic, timeout=left()).topics.get(topic)
        except KafkaException as exc:
            raise SpoolCheckFailed(f"Kafka at {bootstrap} did not answer ({exc.args[0].str()})",
                                   unreachable=True) from None
        if meta is None or meta.error is not None or not meta.partitions:
            raise SpoolCheckFailed(f"topic {topic} does not exist on {bootstrap}")
        try:
            starts = consumer.offsets_for_times([TopicPartition(topic, p, since) for p in meta.partitions],
                                                timeout=left())
            ranges: dict[int, tuple[int, int]] = {}
            for tp in starts:
                if tp.error is not None:
                    raise SpoolCheckFailed(f"cannot look up offsets of {topic} [{tp.partition}]: {tp.error}")
                high = watermarks(consumer, TopicPartition(topic, tp.partition), left())[1]
                start = tp.offset if tp.offset >= 0 else high
                if start < high:
                    ranges[tp.partition] = (start, high)
        except KafkaException as exc:
            raise SpoolCheckFailed(f"cannot look up offsets of {topic}: {exc.args[0].str()}") from None
        found: set[str] = set()
        if not ranges:
            return found
        consumer.assign([TopicPartition(topic, p, start) for p, (start, _high) in ranges.items()])
        todo = set(ranges)
        while todo:
            msg = consumer.poll(min(0.2, left()))
            if msg is not None and msg.error() is None:
                hit = wanted.get((msg.key() or b"", msg.value() or b""))
                if hit is not None:
                    found.add(hit)
            for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
                if tp.offset >= ranges[tp.partition][1]:
                    todo.discard(tp.partition)
        return found
    finally:
        consumer.close()


@dataclass
class RedeliveryReport:
    """What redelivery did: ids re-sent, ids found already on their topic, ids not checked."""

    sent: list[str] = field(default_factory=list)
    already_delivered: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unreachable: bool = False
    pending: list[_Pending] = field(default_factory=list)

    @property
    def claimed(self) -> int:
        return len(self.sent) + len(self.already_delivered) + len(self.unchecked)


def redeliver_pass(delivery: _Delivery, spool: OutcomeSpool, topic: str | None, deadline: float,
                   skip: frozenset[str] = frozenset()) -> RedeliveryReport:
    """Claim unclaimed entries (of ``topic``, or all), drop those already on their topic,
    re-send the rest. A re-sent entry is removed by its delivery callback, or released."""
    report = RedeliveryReport()
    room = MAX_HELD_CLAIMS - delivery.claims_held()
    if room <= 0:
        return report
    skip = skip | delivery.poisoned() | delivery.in_flight_ids()
    by_topic: dict[str, list[tuple[SpoolEntry, SpoolClaim]]] = defaultdict(list)
    for entry, claim in spool.claim_all(topic, room, skip=skip):
        by_topic[entry.topic].append((entry, claim))
    for name, group in by_topic.items():
        try:
            present = find_on_topic(delivery.bootstrap, name, [e for e, _ in group], deadline)
        except BaseException as exc:
            for entry, claim in group:
                claim.release()
                report.unchecked.append(entry.outcome_id)
            if not isinstance(exc, SpoolCheckFailed):
                raise
            report.problems.append(str(exc))
            report.unreachable |= exc.unreachable
            continue
        for entry, claim in group:
            if entry.outcome_id in present:
                claim.remove()
                report.already_delivered.append(entry.outcome_id)
                log.info("spooled outcome %s of action %s is already on %s; removed from the spool",
                         entry.outcome_id, entry.action_id, name)
            else:
                report.sent.append(entry.outcome_id)
                report.pending.append(delivery.send(entry, claim))
    return report


@dataclass
class FlushResult:
    """What ``lockgate spool flush`` did, and what is left."""

    delivered: list[str] = field(default_factory=list)
    already_delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unreachable: bool = False


def flush_spool(bootstrap: str, spool: OutcomeSpool, timeout_s: float) -> FlushResult:
    """Redeliver every unclaimed entry of ``spool`` to its topic on ``bootstrap``, waiting at
    most ``timeout_s`` for confirmations; undelivered entries stay spooled."""
    deadline = time.monotonic() + timeout_s
    result = FlushResult()
    delivery = _Delivery(bootstrap, "flush", quiet=True)
    tried: set[str] = set()
    try:
        while time.monotonic() < deadline:
            report = redeliver_pass(delivery, spool, None, deadline, skip=frozenset(tried))
            if not report.claimed:
                break
            tried.update(report.sent, report.already_delivered, report.unchecked)
            result.already_delivered += report.already_delivered
            result.problems += report.problems
            result.unreachable |= report.unreachable
            concurrent.futures.wait([p.future for p in report.pending],
                                    timeout=max(0.0, deadline - time.monotonic()))
            for p in report.pending:
                if p.finished and p.error is None:
                    result.delivered.append(p.entry.outcome_id)
                elif p.finished and p.error is not None:
                    result.failed[p.entry.outcome_id] = p.error
    finally:
        delivery.close(deadline)
    return result


class OutcomeRecorder:
    """Records one Guard's outcomes to ``topic`` (see the module docstring for the guarantee).

    With ``background`` (the default), a thread redelivers the spool's entries of ``topic``.
    """

    def __init__(self, bootstrap: str, topic: str, spool: OutcomeSpool, timeout_s: float,
                 *, background: bool = True) -> None:
        self.topic = topic
        self.spool = spool
        self.timeout_s = timeout_s
        name = uuid.uuid4().hex[:8]
        self.delivery = _Delivery(bootstrap, name)
        self.delivery.on_failure = self._wake_retry
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._retry: threading.Thread | None = None
        if background:
            self._retry = threading.Thread(target=self._retry_loop, name=f"lockgate-spool-{name}", daemon=True)
            self._retry.start()

    # -- the caller's side ---------------------------------------------------------------

    def record(self, entry: SpoolEntry) -> Recorded:
        """Deliver ``entry`` or spool it; blocks at most ``timeout_s`` plus one spool write."""
        pending = self.delivery.send(entry)
        try:
            error = pending.future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            return self.settle(pending, f"not confirmed by Kafka within {self.timeout_s:g}s")
        except BaseException:
            self.settle(pending, "the caller was interrupted while waiting for Kafka")
            raise
        if error is None:
            return "delivered"
        return self.settle(pending, f"delivery failed: {error}")

    async def arecord(self, entry: SpoolEntry) -> Recorded:
        """:meth:`record` for asyncio: waits on the event loop, spools in a worker thread."""
        pending = self.delivery.send(entry)
        waiting = asyncio.shield(asyncio.wrap_future(pending.future))
        try:
            error = await asyncio.wait_for(waiting, self.timeout_s)
        except TimeoutError:
            return await asyncio.to_thread(self.settle, pending,
                                           f"not confirmed by Kafka within {self.timeout_s:g}s")
        except asyncio.CancelledError:
            await asyncio.to_thread(self.settle, pending, "the caller was cancelled while waiting for Kafka")
            raise
        if error is None:
            return "delivered"
        return await asyncio.to_thread(self.settle, pending, f"delivery failed: {error}")

    def settle(self, pending: _Pending, reason: str) -> Recorded:
        """The caller stops waiting: spool the outcome unless it was delivered meanwhile.

        While the message is still in flight, the spool file stays claimed by it.
        """
        if pending.finished and pending.error is None:
            return "delivered"
        entry = dataclasses.replace(pending.entry, spooled_at_ms=_now_ms(), reason=reason)
        hold = not pending.finished and self.delivery.claims_held() < MAX_HELD_CLAIMS
        try:
            claim = self.spool.write(entry, hold=hold)
        except OSError as exc:
            log.error("outcome %s of action %s was not confirmed by Kafka (%s) and could not be spooled to "
                      "%s: %s", entry.outcome_id, entry.action_id, reason, self.spool.directory, exc)
            raise SpoolError(
                f"outcome {entry.outcome_id} of action {entry.action_id} was not confirmed by Kafka "
                f"({reason}) and could not be spooled to {self.spool.directory}: {exc}. It stays in "
                "this process's producer until close(); fix the spool directory (space, permissions)"
            ) from exc
        log.warning("outcome %s of action %s spooled to %s (%s); it is redelivered when Kafka takes it",
                    entry.outcome_id, entry.action_id, self.spool.directory, reason)
        if claim is None:
            if self.delivery.note_unclaimed_copy(pending, self.spool):
                return "spooled"
            if pending.error is None:  # delivered while we were writing
                remove_copy(self.spool, entry.outcome_id)
                return "delivered"
            self._wake_retry()
            return "spooled"
        if self.delivery.attach(pending, claim):
            return "spooled"
        if pending.error is None:  # delivered while we were writing
            claim.remove()
            return "delivered"
        claim.release()
        self._wake_retry()
        return "spooled"

    # -- redelivery ----------------------------------------------------------------------

    def redeliver(self, deadline: float) -> RedeliveryReport:
        """One redelivery pass over this recorder's topic in the spool."""
        return redeliver_pass(self.delivery, self.spool, self.topic, deadline)

    def _wake_retry(self) -> None:
        self._wake.set()

    def _retry_loop(self) -> None:
        backoff = RETRY_MIN_S
        next_at = time.monotonic()  # first pass at once: a new Guard redelivers what is spooled
        last_pass = float("-inf")
        while not self._closing.is_set():
            woke = self._wake.wait(max(0.0, next_at - time.monotonic()))
            if self._closing.is_set():
                return
            if woke:
                self._wake.clear()
                next_at = min(next_at, last_pass + backoff)
                if time.monotonic() < next_at:
                    continue
            last_pass = time.monotonic()
            try:
                report = self.redeliver(last_pass + self.timeout_s)
            except Exception:
                log.exception("outcome spool redelivery pass failed; retrying in %.0fs", backoff)
                report = RedeliveryReport(problems=["pass failed"])
            if report.problems:
                backoff = min(backoff * 2, RETRY_MAX_S)
                next_at = time.monotonic() + backoff
            elif report.claimed:
                backoff = RETRY_MIN_S
                next_at = time.monotonic() + backoff
            else:
                next_at = time.monotonic() + IDLE_SCAN_S

    def close(self, timeout_s: float | None = None) -> RedeliveryReport:
        """Redeliver what is spooled and wait for outcomes in flight, for at most ``timeout_s``
        (default: the outcome timeout); whatever is not confirmed by then stays spooled."""
        report = RedeliveryReport()
        if self._closing.is_set():
            return report
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        self._closing.set()
        self._wake.set()
        if self._retry is not None:
            self._retry.join(timeout=max(0.0, deadline - time.monotonic()))
        try:
            # A pass still running in the background thread (the broker is slow) holds its
            # claims; a second pass here would only find nothing to claim.
            if time.monotonic() < deadline and (self._retry is None or not self._retry.is_alive()):
                report = self.redeliver(deadline)
        except Exception as exc:
            log.warning("outcome spool redelivery on close failed: %s", exc)
            report.problems.append(str(exc))
        finally:
            self.delivery.close(deadline)
        return report
