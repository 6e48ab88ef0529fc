"""Is a consumer group doing its job? Lag and committed progress per partition.

A process can be up, answer ``/healthz`` and still consume nothing: a consumer fenced as a
static member, a consumer that never re-joined after a broker restart, a sink whose every
insert fails. What tells that apart from a process with nothing to do is, per partition,

* **lag** — the end offset minus the group's committed offset: what is still to do;
* **progress** — when the committed offset last moved (or the lag was last zero).

:class:`LagProbe` reads both in a daemon thread with a client of its own that never joins
the group, so it keeps measuring while the process's own consumer is broken and never
blocks the consume loop. :class:`ConsumerHealth` keeps the readings and judges them:

============  ==============================================================================
state         meaning
============  ==============================================================================
consuming     some lag, and every partition with lag committed within ``stall_after_s``
idle          nothing to do (lag 0 everywhere)
stalled       a partition has lag and no commit for ``stall_after_s``: *up but not consuming*
unknown       the lag was never measured (Kafka unreachable since start)
============  ==============================================================================

The judgement is about the whole group: with several members, a partition is stalled
whichever member holds it. A process that re-creates its consumer gives the new one a full
window (:meth:`ConsumerHealth.consumer_started`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

__all__ = ["ConsumerHealth", "LagProbe", "LagReading", "Partition"]

log = logging.getLogger("lockgate.consumer-health")

Partition = tuple[str, int]


@dataclass(frozen=True)
class LagReading:
    """Per partition: records still to do (end minus committed offset) and the committed offset."""

    lag: dict[Partition, int]
    committed: dict[Partition, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.lag.values())


class ConsumerHealth:
    """The latest lag reading and when each partition last made progress; any thread may read it."""

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._since: dict[Partition, float] = {}
        self._grace_from = clock()
        self.reading: LagReading | None = None
        self.measured_at: float | None = None
        self.lag_error: str | None = None

    def consumer_started(self) -> None:
        """A new consumer (or a new assignment): judge nothing stalled for one more window."""
        self._grace_from = self._clock()

    def lag_measured(self, reading: LagReading) -> None:
        now = self._clock()
        before = self.reading.committed if self.reading is not None else {}
        for p, lag in reading.lag.items():
            moved = p in before and reading.committed.get(p) != before[p]
            if lag == 0 or moved or p not in self._since:
                self._since[p] = now
        self.reading, self.measured_at, self.lag_error = reading, now, None

    def lag_failed(self, error: str) -> None:
        self.lag_error = error

    def lag_is_fresh(self, max_age_s: float) -> bool:
        return self.measured_at is not None and self._clock() - self.measured_at <= max_age_s

    def stalled(self, among: Collection[Partition] | None = None) -> list[Partition]:
        """Partitions (of ``among``, default all) with lag and no progress for ``stall_after_s``."""
        if self.reading is None:
            return []
        now = self._clock()
        return sorted(p for p, lag in self.reading.lag.items()
                      if lag > 0 and (among is None or p in among)
                      and now - max(self._since.get(p, now), self._grace_from) >= self.stall_after_s)

    def seconds_since_progress(self) -> float:
        """How long the longest-waiting partition with lag has gone without a commit (0: none waits)."""
        if self.reading is None:
            return 0.0
        now = self._clock()
        waits = [now - max(self._since.get(p, now), self._grace_from)
                 for p, lag in self.reading.lag.items() if lag > 0]
        return max(0.0, *waits) if waits else 0.0

    def state(self) -> str:
        if self.reading is None:
            return "unknown"
        if self.stalled():
            return "stalled"
        return "consuming" if self.reading.total > 0 else "idle"

    def snapshot(self) -> dict[str, Any]:
        """What ``/healthz`` reports; ``state`` as in the module docstring."""
        stalled = self.stalled()
        return {
            "state": self.state(),
            "lag": self.reading.total if self.reading is not None else None,
            "stalled_partitions": [f"{t}[{p}]" for t, p in stalled],
            "seconds_since_progress": round(self.seconds_since_progress(), 1),
            "stall_after_s": self.stall_after_s,
            "lag_error": self.lag_error,
        }


class LagProbe:
    """Measures a group's committed lag on ``topics`` every ``interval_s`` in a daemon thread.

    It reads through a consumer of its own that never subscribes (it does not join the
    group, so it cannot disturb it). Not an ``AdminClient``: librdkafka 2.16 crashes the
    process (SIGSEGV in ``rd_kafka_cgrp_op``) when ``list_consumer_group_offsets`` gets an
    error answer, e.g. while a freshly started broker still loads its group coordinator.
    """

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topics: Sequence[str],
        health: ConsumerHealth,
        on_reading: Callable[[LagReading], None] | None = None,
        *,
        interval_s: float = 2.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.topics = list(topics)
        self.health = health
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._on_reading = on_reading
        # Quiet: while Kafka is down the process's own clients already say so.
        conf: dict[str, object] = {"bootstrap.servers": bootstrap, "group.id": group,
                                   "enable.auto.commit": False, "log_level": 0,
                                   "logger": logging.getLogger("lockgate.consumer-health.probe")}
        self._reader = Consumer(conf)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lockgate-lag-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3 * self.timeout_s)
        self._reader.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reading = self.measure()
            except KafkaException as exc:
                self.health.lag_failed(str(exc.args[0]) if exc.args else "KafkaException")
                log.debug("lag probe failed: %s", exc)
            else:
                self.health.lag_measured(reading)
                if self._on_reading is not None:
                    self._on_reading(reading)
            self._stop.wait(self.interval_s)

    def measure(self) -> LagReading:
        """One reading; raises :class:`KafkaException` when Kafka does not answer in time."""
        t = self.timeout_s
        meta = self._reader.list_topics(timeout=t).topics
        tps = [TopicPartition(topic, p) for topic in self.topics if topic in meta
               for p in sorted(meta[topic].partitions)]
        if not tps:
            return LagReading({})
        committed = {(tp.topic, tp.partition): tp.offset for tp in self._reader.committed(tps, timeout=t)}
        lag: dict[Partition, int] = {}
        for tp in tps:
            low, high = self._reader.get_watermark_offsets(tp, timeout=t, cached=False)
            done = committed.get((tp.topic, tp.partition), -1)
            lag[(tp.topic, tp.partition)] = max(0, high - (done if done >= 0 else low))
        return LagReading(lag, committed)
