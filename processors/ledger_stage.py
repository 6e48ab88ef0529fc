"""The ledger stage: ``audit-intake``, ``decisions`` and ``outcomes`` → ``audit`` + ``checkpoints``, exactly once.

A thin shell over :class:`processors.ledger_writer.LedgerWriter`, run in its own thread
inside each processor worker. It is a consume-transform-produce loop on confluent-kafka:

* a ``read_committed`` consumer in the group ``<app id>-ledger`` reads ``audit-intake``
  and, when given an :class:`processors.outcomes.OutcomeRecorder`, ``outcomes`` too
  (static membership ``<processor id>-ledger``: a restarted worker takes its partitions
  back at once instead of after a session timeout; fetches batched up to
  ``LOCKGATE_LEDGER_FETCH_WAIT_MS``, :mod:`lockgate.kernel.fetch_batching`). Outcomes are turned into their audit
  events right here by the pure core — no agent and no ``audit-intake`` round trip in
  between, since nothing but the ledger needs them. Likewise, given ``decisions=True``, it
  reads ``decisions`` and chains the audit events each stored decision carries
  (:func:`processors.decisions.decision_events`): the decide agent sends a decision's
  events in the one record it must store anyway, not as separate ``audit-intake`` records.
  The input topics have the same partition count and the group uses the range assignor,
  so a member owns partition *p* of each, and the events of any land on ``audit``
  partition *p*;
* each batch it polls becomes **one Kafka transaction** holding the chained events
  (``audit``, same partition number as the input partition), the checkpoints that fell
  due (``checkpoints``), dead letters for unreadable input records, and the input
  offsets (``send_offsets_to_transaction`` with the consumer's group metadata, KIP-447).
  Either all of it is committed or none of it: a crash at any instant leaves the ledger
  as of the last committed batch, and the uncommitted inputs are chained again by
  whoever owns the partition next — from the same committed head, so nothing is
  duplicated and nothing lost;
* the transactional id is ``<app id>-ledger-<processor id>``: a restarted worker's
  ``init_transactions`` aborts whatever its previous incarnation left open, and a second
  live worker with the same processor id is fenced (the stage then stops the worker:
  two writers must never share a chain).

Recovery (on assignment, and after any aborted transaction): the intake offset is fetched
with ``require_stable`` semantics (librdkafka does so under ``read_committed``: a fetch
waits for an in-flight transaction of a previous owner to finish); then the stage waits
until the audit partition is *stable* — its last stable offset (``read_committed``) equals
its end (``read_uncommitted``), so no transaction on it is still undecided. A committed
transaction's offsets can be visible before its commit markers reach the audit partition
(the coordinator writes markers after it answers the commit): a worker that keeps a
partition across a rebalance re-recovers it milliseconds after its own last commit, and
without this wait it would read a head that lacks that transaction and chain the next
events on a stale head (repeated sequences: a fork). The chain head is the
last committed record of the audit partition and the dedup window its last
``LOCKGATE_LEDGER_DEDUP_WINDOW`` event ids; the last covered sequence comes from the newest
*verified* committed checkpoint of the partition on ``checkpoints`` — the highest
``last_sequence`` among its records whose signature verifies under the writer's key
(:func:`trust.partition_log.newest_verified_checkpoint`). A record that does not verify
(forged, altered, another key, undecodable) is skipped with a warning naming its offset
and why, however new it is or whatever it claims: anyone who can append to ``checkpoints``
could otherwise declare a previous owner's last events covered, and they would never be
checkpointed. A verified checkpoint older than such a record wins (the events after it are
checkpointed again: more is safe, fewer never is); with no verified checkpoint nothing
counts as covered. The writer's key is the worker's processor key, shared by every worker
of one ``LOCKGATE_HOME``; with a key per host, a partition taken over from another host
has no verified checkpoint and is rebuilt and checkpointed whole (slower, never wrong).
The partition's whole log (the
Merkle tree whole-log checkpoints sign, :class:`trust.partition_log.PartitionLog`) resumes
from the frontier that checkpoint was published with (header :data:`LOG_FRONTIER_HEADER`),
accepted only once the checkpoint's signature verifies under the writer's key and the
frontier reproduces its signed size and root; then only the audit records back to the
checkpoint's last event and the dedup window are read (backwards from the end), and the
rebuilt log must still end at the stored head. Without a checkpoint, with one from an older
worker (no header), with witnesses configured (they may need older leaves), or when any
check fails, a warning says why and the log is rebuilt from the hashes of all committed
events, as before. ``lockgate_ledger_recovery_records_total{mode}`` counts the records read.
Events after the checkpoint — the previous owner's last writes — are checkpointed
(whole-log, ``0 .. size - 1``) in the first transaction. Nothing is kept anywhere else
than the two topics, so nothing can disagree with the log.

A broker's death: the transactional producer finds the new transaction coordinator by
itself, but ``send_offsets_to_transaction`` can block forever once the *group*
coordinator's broker is gone from the cluster metadata — librdkafka (2.16) looks for the
new coordinator only on the next broker state change in the client and ignores the call's
timeout (librdkafka issues #5456, #5511). The producer therefore closes connections idle
for ``_IDLE_CLOSE_MS``: while the call is stuck every connection of the producer is idle,
the first to close is such a state change, and the call carries on with the new
coordinator a few seconds after the death, inside the transaction timeout. Every
transactional call is also watched (:class:`processors.call_watchdog.CallWatchdog`): one
still blocked ``_TXN_CALL_GRACE_S`` past its timeout (the recovery timeout) stops the
worker hard, and the restarted worker recovers from committed state — a stuck stage never
sits silent. The same death can fence the stage's consumer (``FENCED_INSTANCE_ID``: its
retried join after the group coordinator moved is taken for another member with the same
static instance id); librdkafka then delivers nothing to it ever again, so the stage
closes it, forgets its partitions and joins again with a new consumer, which recovers
them from committed state like any assignment. ``LOCKGATE_LEDGER_KAFKA_DEBUG`` (librdkafka ``debug`` contexts, e.g.
``eos,broker``) traces the producer into the worker's log.

Why not Faust's ``processing_guarantee="exactly_once"``: Faust keeps a transaction open
on an idle partition until ``transaction.timeout.ms`` fences its producer and the worker
crashes (``IllegalOperation: Not in the middle of a transaction``). This loop opens a
transaction only when it has something to write.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter

from lockgate.kernel.consumer_errors import consumer_is_broken
from lockgate.kernel.errors import KafkaReadError
from lockgate.kernel.fetch_batching import DEFAULT_RECORDING_FETCH_WAIT_MS, batched_fetch
from lockgate.kernel.kafka_offsets import watermarks
from lockgate.kernel.partition_reader import StoredRecord, committed_reader, read_partition, read_tail
from processors.call_watchdog import CallWatchdog
from processors.crash import crash_worker
from processors.decisions import decision_events
from processors.errors import LedgerStageFailed, NullRecord
from processors.ledger_writer import LedgerWriter, RecoveredPartition
from processors.outcomes import OutcomeRecorder
from processors.stage import Source, StageOutput, refuse
from processors.witnesses import Witnesses
from schemas.codec import get_codec
from schemas.topics import TOPIC_MAX_MESSAGE_BYTES, Topics
from trust.chain import ChainError
from trust.errors import CheckpointError
from trust.partition_log import LogFrontier, checkpointed_frontier, newest_verified_checkpoint

__all__ = ["EVENT_ID_HEADER", "LOG_FRONTIER_HEADER", "LedgerStage"]

log = logging.getLogger("lockgate.ledger")

EVENT_ID_HEADER = "lockgate.event-id"
"""Header of every ``audit`` record: its event id (readable without decoding the value)."""

LOG_FRONTIER_HEADER = "lockgate.log-frontier"
"""Header of every whole-log ``checkpoints`` record this stage publishes: the partition log's
Merkle frontier at exactly the checkpoint's size (:meth:`trust.frontier.CompactRange.to_bytes`,
O(log n) bytes). Recovery resumes the log from it once it reproduces the signed root."""

STAGE = "ledger"
_TRANSACTION_TIMEOUT_MS = 15_000  # how long a dead worker's open transaction can hold readers back
_TXN_CALL_GRACE_S = 20.0  # past its timeout, a transactional call still blocked stops the worker
_IDLE_CLOSE_MS = 4_000  # librdkafka subtracts up to 2 s of jitter per broker
_POLL_S = 0.1
_BATCH = 2000
_REFUSED_LOGGED = 10  # checkpoint records that do not verify, named one by one per recovery

_Checkpoint = tuple[dict[str, Any], bytes | None]
"""A Checkpoint record to publish, and the frontier to publish it with (its header)."""

LEDGER_EVENTS = Counter("lockgate_ledger_events_total", "Audit events chained into the ledger")
LEDGER_DUPLICATES = Counter("lockgate_ledger_duplicates_total",
                            "Intake events dropped because their event id is already chained")
CHECKPOINTS = Counter("lockgate_checkpoints_total", "Signed checkpoints published")
TRANSACTIONS = Counter("lockgate_ledger_transactions_total", "Ledger transactions by result", ["result"])
COSIGNED = Counter("lockgate_checkpoints_cosigned_total",
                   "Checkpoints published again with witness cosignatures")
OUTCOME_DEAD_LETTERS = Counter("lockgate_outcome_dead_letters_total",
                               "Outcome records the ledger stage could not read (dead-lettered and ledgered)")
RECOVERIES = Counter("lockgate_ledger_recoveries_total", "Ledger partitions recovered from committed state")
RECOVERY_RECORDS = Counter("lockgate_ledger_recovery_records_total",
                           "Audit records read to recover ledger partitions, by how the log was rebuilt "
                           "(frontier: from the newest checkpoint's frontier; full: from every event)", ["mode"])
CONSUMER_RESTARTS = Counter("lockgate_ledger_consumer_restarts_total",
                            "Ledger consumers closed and re-created after a fatal error (e.g. fenced)")


class LedgerStage:
    """Runs the ledger loop in a thread (see the module docstring)."""

    def __init__(self, writer: LedgerWriter, *, bootstrap: str, topics: Topics, app_id: str,
                 processor_id: str, recovery_timeout_s: float = 60.0, witnesses: Witnesses | None = None,
                 outcomes: OutcomeRecorder | None = None, outcomes_legacy_group: str | None = None,
                 decisions: bool = False, kafka_debug: str = "", fetch_wait_ms: int = DEFAULT_RECORDING_FETCH_WAIT_MS,
                 on_stuck: Callable[[str], None] = crash_worker) -> None:
        if witnesses and not writer.keep_proofs:
            raise ValueError("a ledger stage with witnesses needs a writer that keeps proofs (keep_proofs=True)")
        self.writer = writer
        self.witnesses = witnesses
        self.outcomes = outcomes
        self.outcomes_legacy_group = outcomes_legacy_group
        self._floor: dict[tuple[str, int], int] = {}  # records fetched below a recovery's seek: skipped
        self._cosigned: list[_Checkpoint] = []  # committed checkpoints with new cosignatures, to publish
        self.bootstrap = bootstrap
        self.topics = topics
        self.group_id = f"{app_id}-ledger"
        self.transactional_id = f"{app_id}-ledger-{processor_id}"
        self.instance_id = f"{processor_id}-ledger"
        self.recovery_timeout_s = recovery_timeout_s
        self.kafka_debug = kafka_debug
        self.fetch = batched_fetch(fetch_wait_ms)
        self._watchdog = CallWatchdog(lambda what: on_stuck(f"ledger stage stuck: {what}"))
        self.codec = get_codec()
        self.inputs = ([topics.audit_intake] + ([topics.decisions] if decisions else [])
                       + ([topics.outcomes] if outcomes is not None else []))
        self.failure: BaseException | None = None
        self.ready = threading.Event()  # set once the transactional producer is initialised
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lockgate-ledger", daemon=True)
        self._to_recover: set[int] = set()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._reader: Consumer | None = None
        self._uncommitted: Consumer | None = None  # watermarks only: the end including undecided data

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._watchdog.start()
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the current transaction, leave the group, close."""
        self._stop.set()
        self._thread.join(timeout_s)
        self._watchdog.stop()

    @property
    def healthy(self) -> bool:
        return self.failure is None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._open()
            while not self._stop.is_set():
                self._step()
        except Exception as exc:
            self.failure = exc
            log.critical("ledger stage stopped; stopping the worker so it restarts cleanly: %s", exc, exc_info=True)
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            self._close()

    def _open(self) -> None:
        self._producer = Producer({
            "bootstrap.servers": self.bootstrap,
            "transactional.id": self.transactional_id,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.max.bytes": TOPIC_MAX_MESSAGE_BYTES,
            "transaction.timeout.ms": _TRANSACTION_TIMEOUT_MS,
            "connections.max.idle.ms": _IDLE_CLOSE_MS,
            **({"debug": self.kafka_debug} if self.kafka_debug else {}),
        })
        with self._bounded("init_transactions"):
            self._producer.init_transactions(self.recovery_timeout_s)  # aborts our previous incarnation's
        self._reader = committed_reader(self.bootstrap, "ledger")
        self._uncommitted = Consumer({"bootstrap.servers": self.bootstrap, "enable.auto.commit": False,
                                     "group.id": f"{self.group_id}-watermarks", "isolation.level": "read_uncommitted"})
        self._consumer = self._new_consumer()
        self.ready.set()

    def _new_consumer(self) -> Consumer:
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group_id,
            "group.instance.id": self.instance_id,
            "session.timeout.ms": 10_000,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "max.poll.interval.ms": 300_000,
            "partition.assignment.strategy": "range",  # partition p of every input to one member
            **self.fetch,  # off the decision path: fewer, fuller fetches
        })
        consumer.subscribe(self.inputs, on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)
        return consumer

    def _replace_consumer(self, err: KafkaError) -> None:
        """The consumer can never consume again: forget its partitions, join with a new one.

        No transaction is open (one is opened and committed within a batch), and nothing of
        the failed batch was chained; the new consumer's partitions are recovered from
        committed state on assignment.
        """
        log.warning("ledger consumer broken (%s); closing it and joining group %s again as %s",
                    err.str(), self.group_id, self.instance_id)
        CONSUMER_RESTARTS.inc()
        for partition in self.writer.partitions():
            self.writer.release(partition)
        self._to_recover.clear()
        old, self._consumer = self._consumer, None
        if old is not None:
            try:
                old.close()
            except (KafkaException, RuntimeError):
                log.warning("closing the broken ledger consumer failed", exc_info=True)
        self._consumer = self._new_consumer()

    def _close(self) -> None:
        for client in (self._consumer, self._reader, self._uncommitted):
            if client is not None:
                try:
                    client.close()
                except (KafkaException, RuntimeError):
                    log.warning("closing a ledger consumer failed", exc_info=True)
        if self._producer is not None:
            self._producer.flush(5)

    # -- rebalance ------------------------------------------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Recovery reads Kafka; it runs before the next batch, not inside the callback.
        self._to_recover.update(tp.partition for tp in partitions)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Every transaction is committed before the next poll, so nothing is in flight here.
        for tp in partitions:
            self._to_recover.discard(tp.partition)
            self.writer.release(tp.partition)

    # -- the loop -------------------------------------------------------------------

    def _step(self) -> None:
        consumer = self._require(self._consumer)
        msgs = consumer.consume(num_messages=_BATCH, timeout=_POLL_S)
        broken = next((e for e in (m.error() for m in msgs) if e is not None and consumer_is_broken(e)), None)
        if broken is not None:
            self._replace_consumer(broken)
            return
        try:
            self._recover_assigned()
            self._process(msgs)
        except KafkaException as exc:
            self._after_failed_transaction(exc)

    def _process(self, msgs: Sequence[Message]) -> None:
        now, now_us = time.monotonic(), time.time_ns() // 1000
        audit: list[tuple[int, bytes | None, bytes, str]] = []
        dead_letters: list[dict[str, Any]] = []
        offsets: dict[tuple[str, int], int] = {}
        skipped: dict[tuple[str, int], int] = {}
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("ledger consumer: %s", err.str())
                continue
            topic, partition, offset = str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
            if offset < self._floor.get((topic, partition), 0):
                continue  # fetched before recovery moved this partition's start
            if not self.writer.owns(partition):
                skipped.setdefault((topic, partition), offset)  # revoked, or not recovered yet
                continue
            offsets[(topic, partition)] = offset + 1
            source = Source(topic, partition, offset, msg.key())
            for event in self._input_events(msg.value(), source, dead_letters):
                chained = self.writer.append(partition, event, now)
                if chained is None:
                    LEDGER_DUPLICATES.inc()
                    continue
                audit.append((partition, source.key, self.codec.encode("AuditEvent", chained), chained["event_id"]))
        checkpoints = [(cp, self._frontier_of(cp)) for cp in self.writer.due_checkpoints(now, now_us)]
        cosigned = self._cosigned
        if audit or checkpoints or dead_letters or offsets or cosigned:
            self._commit(audit, cosigned + checkpoints, dead_letters, offsets)
            self._cosigned = []
            LEDGER_EVENTS.inc(len(audit))
            CHECKPOINTS.inc(len(checkpoints))
            if self.witnesses:
                self._witness(checkpoints)
        for (topic, partition), offset in skipped.items():  # read them again once the partition is ours
            self._seek(self._require(self._consumer), topic, partition, offset)

    def _frontier_of(self, cp: dict[str, Any]) -> bytes | None:
        """The frontier a checkpoint just signed is published with: the log's, at its size."""
        tree = self.writer.partition_log(int(cp["ledger_partition"])).frontier()
        return tree.to_bytes() if tree.size == int(cp["last_sequence"]) + 1 else None

    def _witness(self, checkpoints: Sequence[_Checkpoint]) -> None:
        """Ask the witnesses to cosign checkpoints just committed; the cosigned copies go
        into the next transaction. Never fails the ledger: a witness problem is logged."""
        witnesses = self.witnesses
        assert witnesses is not None
        for cp, frontier in checkpoints:
            partition = int(cp["ledger_partition"])
            try:
                plog = self.writer.partition_log(partition)
                cosigned = witnesses.cosign(cp, plog)
                if cosigned is not None:
                    self._cosigned.append((cosigned, frontier))
                    COSIGNED.inc()
                self.writer.forget_before(partition, witnesses.keep_from(plog))
            except Exception:
                log.exception("asking the witnesses to cosign %s failed", cp.get("checkpoint_id"))

    def _input_events(self, raw: bytes | None, source: Source,
                      dead_letters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The events of an input record: an outcome's (from the outcome core), a stored
        decision's, an intake record's own event, or — for a record that is none of these —
        the refusal's event."""
        if self.outcomes is not None and source.topic == self.topics.outcomes:
            out = self.outcomes.record(raw, source)  # never raises; a refusal carries its dead letter
            if out.dead_letter is not None:
                OUTCOME_DEAD_LETTERS.inc()
                dead_letters.append(out.dead_letter)
            return out.audit
        if source.topic == self.topics.decisions:
            out = decision_events(self.codec, raw, source)  # never raises
            if out.dead_letter is not None:
                log.error("decisions %s[%d]@%d refused: %s", source.topic, source.partition, source.offset,
                          out.dead_letter["error"])
                dead_letters.append(out.dead_letter)
            return out.audit
        try:
            if raw is None:
                raise NullRecord(source.topic, source.partition, source.offset)
            event = self.codec.decode_as("AuditEvent", raw)
            if not isinstance(event.get("event_id"), str) or not event["event_id"]:
                raise ChainError("audit-intake record has an empty event_id")
            return [event]
        except Exception as exc:
            refused = refuse(raw, exc, source, STAGE, StageOutput())
            if refused.dead_letter is not None:
                dead_letters.append(refused.dead_letter)
            log.error("audit-intake %s[%d]@%d refused: %s", source.topic, source.partition, source.offset, exc)
            return refused.audit  # chained directly: the refusal itself is on the ledger

    def _commit(self, audit: list[tuple[int, bytes | None, bytes, str]], checkpoints: list[_Checkpoint],
                dead_letters: list[dict[str, Any]], offsets: dict[tuple[str, int], int]) -> None:
        producer = self._require(self._producer)
        consumer = self._require(self._consumer)
        producer.begin_transaction()
        for partition, key, value, event_id in audit:
            producer.produce(self.topics.audit, value, key=key, partition=partition,
                             headers=[(EVENT_ID_HEADER, event_id.encode())])
            producer.poll(0)
        for cp, frontier in checkpoints:
            producer.produce(self.topics.checkpoints, self.codec.encode("Checkpoint", cp),
                             key=str(cp["ledger_partition"]).encode(),
                             headers=[(LOG_FRONTIER_HEADER, frontier)] if frontier is not None else None)
        for dl in dead_letters:
            producer.produce(self.topics.deadletter, self.codec.encode("DeadLetter", dl))
        if offsets:
            with self._bounded("send_offsets_to_transaction"):
                producer.send_offsets_to_transaction(
                    [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())],
                    consumer.consumer_group_metadata(), self.recovery_timeout_s)
        with self._bounded("commit_transaction"):
            producer.commit_transaction(self.recovery_timeout_s)
        TRANSACTIONS.labels("committed").inc()

    def _after_failed_transaction(self, exc: KafkaException) -> None:
        """Abort, then rebuild every owned partition from committed state (or stop, if fatal)."""
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is not None and err.fatal():
            raise LedgerStageFailed(
                f"the ledger's transactional producer hit a fatal error ({err.str()}); another worker may "
                f"run with the same LOCKGATE_PROCESSOR_ID (transactional id {self.transactional_id}) — give "
                "each worker its own id") from exc
        log.warning("ledger transaction failed, aborting and recovering from committed state: %s", exc)
        TRANSACTIONS.labels("aborted").inc()
        producer = self._require(self._producer)
        try:
            with self._bounded("abort_transaction"):
                producer.abort_transaction(self.recovery_timeout_s)
        except KafkaException as abort_exc:
            if abort_exc.args and isinstance(abort_exc.args[0], KafkaError) and abort_exc.args[0].fatal():
                raise LedgerStageFailed(f"aborting a ledger transaction failed fatally: {abort_exc}") from abort_exc
            log.info("nothing to abort: %s", abort_exc)
        consumer = self._require(self._consumer)
        owned = self.writer.partitions()
        for partition in owned:
            self.writer.release(partition)
        self._to_recover.update(owned)
        self._rewind(consumer, owned)

    def _rewind(self, consumer: Consumer, partitions: list[int]) -> None:
        """Seek ``partitions`` of every input back to their committed offsets."""
        if not partitions:
            return
        committed = consumer.committed([TopicPartition(t, p) for t in self.inputs for p in partitions],
                                       timeout=self.recovery_timeout_s)
        for tp in committed:
            self._seek(consumer, tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)

    def _seek(self, consumer: Consumer, topic: str, partition: int, offset: int) -> None:
        try:
            consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:
            log.info("could not seek %s[%d] (revoked meanwhile?): %s", topic, partition, exc)

    # -- recovery -------------------------------------------------------------------

    def _recover_assigned(self) -> None:
        if not self._to_recover:
            return
        consumer = self._require(self._consumer)
        assigned = {tp.partition for tp in consumer.assignment() if tp.topic == self.topics.audit_intake}
        self._to_recover &= assigned
        for partition in sorted(self._to_recover):
            try:
                self._recover(consumer, partition)
            except (KafkaReadError, KafkaException) as exc:
                log.warning("ledger partition %d not recovered yet, retrying: %s", partition, exc)
                continue
            except ChainError as exc:
                # The stored events do not make one log from sequence 0: signing anything on
                # top would attest it. The partition stays unowned (its intake waits) until
                # it is assigned again; `lockgate verify` names the damage.
                log.critical("ledger partition %d not taken: %s", partition, exc)
            self._to_recover.discard(partition)

    def _recover(self, consumer: Consumer, partition: int) -> None:
        started = time.monotonic()
        # Waits for a previous owner's in-flight transaction on this partition to finish.
        committed = consumer.committed([TopicPartition(t, partition) for t in self.inputs],
                                       timeout=self.recovery_timeout_s)
        self._adopt_legacy_outcome_offset(consumer, partition, committed)
        reader = self._require(self._reader)
        self._await_stable(reader, partition)
        low, end = watermarks(reader, TopicPartition(self.topics.audit, partition), self.recovery_timeout_s)
        if end > low:
            state, read, how = self._recover_log(reader, partition, self._newest_checkpoint(reader, partition))
        else:
            state, read, how = self.writer.recover(partition, [], None), 0, "an empty partition"
        RECOVERIES.inc()
        log.info("ledger partition %d recovered in %.2fs from %s (%d audit record(s) read): next sequence %d, "
                 "%d uncovered event(s) to checkpoint, %d event id(s) in the dedup window", partition,
                 time.monotonic() - started, how, read, state.next_sequence, state.uncovered, state.remembered)

    def _recover_log(self, reader: Consumer, partition: int, newest: tuple[dict[str, Any], StoredRecord] | None
                     ) -> tuple[RecoveredPartition, int, str]:
        """Take ``partition`` (it has events) from its newest verified checkpoint's proven
        frontier, or else from every event with that checkpoint's ``last_sequence`` as the
        last covered one (none without one); the state, the audit records read, and which
        way it went."""
        frontier = self._proven_frontier(partition, newest)
        if frontier is not None:
            try:
                state, read = self._resume(reader, partition, frontier)
                RECOVERY_RECORDS.labels("frontier").inc(read)
                return state, read, f"the frontier of checkpoint size {frontier.size}"
            except ChainError as exc:
                log.warning("ledger partition %d: the events read after the checkpointed frontier do not "
                            "continue it (%s); rebuilding the log from every event instead", partition, exc)
        state, read = self._rebuild(reader, partition, int(newest[0]["last_sequence"]) if newest else None)
        RECOVERY_RECORDS.labels("full").inc(read)
        return state, read, "every event"

    def _rebuild(self, reader: Consumer, partition: int, covered: int | None) -> tuple[RecoveredPartition, int]:
        """Recover from every committed event: the whole log from all their hashes (sequence
        0 upwards); only the dedup window and the events no checkpoint covers are kept whole."""
        floor = -1 if covered is None else covered
        window = self.writer.dedup_window
        hashes: list[bytes] = []
        tail: deque[dict[str, Any]] = deque()
        read = 0
        for rec in read_partition(reader, self.topics.audit, partition, timeout_s=self.recovery_timeout_s):
            read += 1
            ev = self._decode_event(rec)
            if ev is None:
                continue
            hashes.append(bytes(ev["hash"]))
            tail.append(ev)
            while len(tail) > window and int(tail[0]["sequence"]) <= floor:
                tail.popleft()
        return self.writer.recover(partition, list(tail), covered if tail else None, hashes), read

    def _resume(self, reader: Consumer, partition: int, frontier: LogFrontier) -> tuple[RecoveredPartition, int]:
        """Recover from a proven frontier: read the audit partition backwards from its end
        (chunks doubling, :func:`read_tail`) until the records reach both the checkpoint's
        last event and ``dedup_window`` events back from the head. Offsets are not
        sequences (transaction markers and aborted records take offsets too), so the stop is
        decided on the decoded sequences; at most twice the offsets needed (plus one chunk)
        are read. :class:`ChainError` when those events do not continue the frontier."""
        window = self.writer.dedup_window
        last = frontier.size - 1  # its stored hash must be the frontier's head

        def enough(records: Sequence[StoredRecord]) -> bool:
            first = next((q for q in map(self._sequence_of, records) if q is not None), None)
            head = next((q for q in map(self._sequence_of, reversed(records)) if q is not None), None)
            return first is not None and head is not None and first <= min(last, head - window + 1)

        # First chunk: the window and a checkpoint's worth of events (markers make it a bit less).
        chunk = window + min(self.writer.checkpoint_every, window)
        records = read_tail(reader, self.topics.audit, partition, enough, chunk=chunk,
                            timeout_s=self.recovery_timeout_s)
        tail: deque[dict[str, Any]] = deque(ev for ev in map(self._decode_event, records) if ev is not None)
        while len(tail) > window and int(tail[0]["sequence"]) < last:
            tail.popleft()
        return self.writer.recover(partition, list(tail), last, frontier=frontier), len(records)

    def _sequence_of(self, rec: StoredRecord) -> int | None:
        try:
            seq = self.codec.decode_as("AuditEvent", rec.value or b"").get("sequence")
        except Exception:
            return None
        return seq if type(seq) is int else None

    def _proven_frontier(self, partition: int, newest: tuple[dict[str, Any], StoredRecord] | None
                         ) -> LogFrontier | None:
        """The frontier published with the newest verified checkpoint of ``partition``
        (:meth:`_newest_checkpoint`), proven against its signature, size and root
        (:func:`checkpointed_frontier`) — or ``None``, with a warning saying why, and the log
        is rebuilt from every event."""
        if newest is None:
            log.warning("ledger partition %d has events but no committed checkpoint that verifies under this "
                        "worker's key; rebuilding its log from every event and checkpointing all of it", partition)
            return None
        if self.writer.keep_proofs:
            log.info("ledger partition %d: witnesses may ask for proofs from sizes before the newest "
                     "checkpoint; rebuilding the log from every event", partition)
            return None
        cp, rec = newest
        raw = rec.header(LOG_FRONTIER_HEADER)
        if raw is None:
            why = f"it carries no {LOG_FRONTIER_HEADER} header (written by an older worker)"
        else:
            try:
                return checkpointed_frontier(cp, raw, self.writer.key.public(), log_name=self.writer.log_name)
            except CheckpointError as exc:
                why = str(exc)
        log.warning("ledger partition %d: the newest checkpoint (checkpoints[0]@%d, last sequence %s) gives no "
                    "frontier to resume from: %s; rebuilding the log from every event", partition, rec.offset,
                    cp["last_sequence"], why)
        return None

    def _adopt_legacy_outcome_offset(self, consumer: Consumer, partition: int,
                                     committed: list[TopicPartition]) -> None:
        """Upgrade path: start ``outcomes[partition]`` where the former outcome agent stopped.

        Workers before this stage read outcomes themselves used a Faust agent (group
        ``outcomes_legacy_group``) that put each on ``audit-intake``; everything below its
        committed offset is already on the intake, so the stage starts there rather than at
        the beginning (which would chain old outcomes again once they left the dedup window).
        Only when this group has no committed offset of its own for the partition.
        """
        mine = next((tp for tp in committed if tp.topic == self.topics.outcomes), None)
        if mine is None or mine.offset >= 0 or self.outcomes_legacy_group is None:
            self._floor.pop((self.topics.outcomes, partition), None)
            return
        legacy = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.outcomes_legacy_group,
                           "enable.auto.commit": False})
        try:
            (theirs,) = legacy.committed([TopicPartition(self.topics.outcomes, partition)],
                                         timeout=self.recovery_timeout_s)
        finally:
            legacy.close()
        if theirs.offset >= 0:
            log.info("outcomes[%d]: starting at %d, where the former outcome agent stopped", partition, theirs.offset)
            self._floor[(self.topics.outcomes, partition)] = theirs.offset
            self._seek(consumer, self.topics.outcomes, partition, theirs.offset)

    def _await_stable(self, reader: Consumer, partition: int) -> None:
        """Return once no transaction on ``audit[partition]`` is undecided (see the module
        docstring); raise :class:`KafkaReadError` (recovery is retried) after the recovery timeout.

        A dead worker's open transaction keeps the partition unstable until the broker
        aborts it (``transaction.timeout.ms``); readers cannot see past it meanwhile anyway.
        """
        tp = TopicPartition(self.topics.audit, partition)
        uncommitted = self._require(self._uncommitted)
        deadline = time.monotonic() + self.recovery_timeout_s
        while True:
            stable = watermarks(reader, tp, self.recovery_timeout_s)[1]
            end = watermarks(uncommitted, tp, self.recovery_timeout_s)[1]
            if stable >= end:
                return
            if time.monotonic() > deadline:
                raise KafkaReadError(f"{tp.topic}[{partition}] still has undecided transactional records "
                                     f"(stable end {stable}, end {end}) after {self.recovery_timeout_s:.0f}s")
            time.sleep(0.02)

    def _newest_checkpoint(self, reader: Consumer, partition: int) -> tuple[dict[str, Any], StoredRecord] | None:
        """The newest *verified* committed checkpoint record of ``partition``: of the records
        whose signature verifies under the writer's key, the one with the highest
        ``last_sequence`` (a cosigned copy may republish an older one later), if any
        (:func:`trust.partition_log.newest_verified_checkpoint`).

        Both recovery paths start from it: the frontier published with it, and, when the
        log is rebuilt from every event, its ``last_sequence`` as the last covered event.
        Anyone who can append to ``checkpoints`` can write a record with any
        ``last_sequence``; one that does not verify (bad signature, unknown key, not a
        Checkpoint at all) is skipped with a warning naming its offset and why, and never
        counts — a verified checkpoint older than a forged newer one wins, so the events
        after it are checkpointed again (more is safe; fewer never is). Without a verified
        checkpoint nothing counts as covered and every event is checkpointed again.

        The writer's key is the worker's own processor key. Workers sharing one
        ``LOCKGATE_HOME`` (``lockgate up --processors N``) share it, so each verifies the
        others' checkpoints. A deployment with a key per host cannot verify another host's
        checkpoints: a partition taken over from another host gets no frontier and no
        covered sequence, is rebuilt from every event and checkpointed whole again — a
        slower recovery, never a wrong one.

        The checkpoints topic is shared by every ledger partition; it is read backwards
        until a verified record of ours shows up (normally within the last few records),
        each record checked once. A partition without one is read to the start.
        """
        key = self.writer.key.public()
        chosen: tuple[dict[str, Any], StoredRecord] | None = None
        seen = refused = 0

        def enough(records: Sequence[StoredRecord]) -> bool:
            nonlocal chosen, seen, refused
            fresh = records[: len(records) - seen]  # read_tail prepends each older chunk
            seen = len(records)
            decoded = ((self._decode(rec, "Checkpoint", self.topics.checkpoints), rec) for rec in fresh)
            ours = [(cp, rec) for cp, rec in decoded
                    if cp is not None and cp.get("ledger_partition") == partition]
            choice = newest_verified_checkpoint(ours, key, partition=partition, log_name=self.writer.log_name)
            for cp, rec, why in reversed(choice.refused):  # newest first, as read
                if refused < _REFUSED_LOGGED:
                    log.warning("ledger partition %d: %s[%d]@%d (last sequence %s) does not verify under this "
                                "worker's key and is skipped: %s", partition, self.topics.checkpoints,
                                rec.partition, rec.offset, cp.get("last_sequence"), why)
                refused += 1
            if choice.chosen is not None:
                chosen = (dict(choice.chosen[0]), choice.chosen[1])
            return chosen is not None

        read_tail(reader, self.topics.checkpoints, 0, enough, chunk=256, timeout_s=self.recovery_timeout_s)
        if refused > _REFUSED_LOGGED:
            log.warning("ledger partition %d: %d more checkpoint record(s) that do not verify were skipped",
                        partition, refused - _REFUSED_LOGGED)
        return chosen

    def _decode_event(self, rec: StoredRecord) -> dict[str, Any] | None:
        return self._decode(rec, "AuditEvent", self.topics.audit)

    def _decode(self, rec: StoredRecord, schema: str, topic: str) -> dict[str, Any] | None:
        try:
            return dict(self.codec.decode_as(schema, rec.value or b""))
        except Exception as exc:
            log.error("%s[%d]@%d is not a %s (%s); skipped during recovery", topic, rec.partition, rec.offset,
                      schema, exc)
            return None

    def _bounded(self, call: str) -> Any:
        return self._watchdog.bounded(f"{call} ({self.transactional_id})", self.recovery_timeout_s + _TXN_CALL_GRACE_S)

    @staticmethod
    def _require(client: Any) -> Any:
        if client is None:
            raise LedgerStageFailed("the ledger stage is not running")
        return client
