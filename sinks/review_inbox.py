"""The dashboard's review inbox: a live fold of the reviews topic, and votes cast from it.

Where the sink sees pending reviews: in the ``reviews`` topic, the same log the processor
and ``lockgate reviews list`` fold (:mod:`trust.reviews`) — not in the ledger, whose
events land in ClickHouse only after the sink's batch and carry no reviewer registry. From
the first inbox request on, a daemon thread follows every partition of the topic from its start (``read_committed``,
assign only, no group) and folds each record as it arrives, so the inbox is current within
one poll of the broker; when ``reviewers.json`` changes (a reviewer added) it folds the
records it holds again, as a fresh ``reviews list`` would.

The reviewer registry is followed like the processor follows it, through the same core
(:class:`trust.registry_reload.RegistryReloader`): a changed file that cannot be loaded
(unsafe permissions, bad JSON, a malformed entry) is refused, not retried — the inbox keeps
serving and judging with the last good registry, logs a warning once per refused state of
the file, and names the file and why in its listing (``registry_refused``, which the inbox
page shows) until a good file is back. The processor ledgers the refusal; the sink only
shows it.

At start-up there is no last good registry, and a bad ``reviewers.json`` does not stop the
sink: its recording path (audit and checkpoints into ClickHouse) and query API have nothing
to do with reviewers. The inbox loads the registry through
:meth:`~trust.registry_reload.RegistryReloader.load`: a file that cannot be loaded is
refused at start, one warning is logged, and the inbox serves with an empty registry — every
vote in the topic is judged as signed by no registered reviewer's key (a security outcome,
never accepted), and a vote cast from the inbox is refused before it is signed — and shows
the refusal (``serving: none``) until the follower's next look after the file is fixed
loads it and folds everything again. The processor is different: on the decision path it
refuses to start on a bad registry (fail closed, :mod:`processors.registry_watch`).

Votes (:meth:`ReviewInbox.vote`) go through :func:`trust.review_votes.cast_vote`, exactly
as ``lockgate reviews approve|deny`` does: the vote names the reviewer the API token is
bound to and is signed with that reviewer's private key, read at vote time from
``$LOCKGATE_HOME/keys/reviewers/NAME.pem`` on the host the sink runs on; it is published to
the reviews topic keyed by review id (one producer, kept for the sink's lifetime), and its
judgement is read back from this fold. The fold takes every record through
:func:`trust.review_fold.judge_record`, the function the processor's review desk judges
votes with, so the inbox shows the judgement the processor makes (self-approval,
eligibility, one vote each, ...).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from lockgate.kernel.errors import LockgateError
from lockgate.kernel.home import Home
from lockgate.kernel.keyed_publish import KeyedPublisher
from lockgate.kernel.partition_reader import committed_reader
from sinks.errors import SinkError
from trust.errors import KeyMissing, RegistryError
from trust.keys import PublicKey
from trust.registry_reload import RegistryReloader
from trust.review_fold import judge_record
from trust.review_votes import Folded, VoteResult, cast_vote
from trust.reviewers import ReviewerRegistry
from trust.reviews import Judgement, Review, ReviewBook

__all__ = ["ReviewInbox"]

log = logging.getLogger("lockgate.sink.reviews")

_RECENT = 20  # decided reviews the inbox also shows, newest first


class ReviewInbox:
    """Follows the reviews topic in a daemon thread; ``listing`` and ``vote`` serve the API."""

    def __init__(self, bootstrap: str, topic: str, home: Path, *, vote_wait_s: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.home = Home(home)
        self.vote_wait_s = vote_wait_s
        self.registry = ReviewerRegistry(self.home.keys, load=False)  # loaded by the reloader, below
        self._lock = threading.Lock()
        self._records: list[tuple[bytes | None, int]] = []
        self._book: ReviewBook | None = None
        self._judged: dict[str, Judgement] = {}
        self._reviewers = RegistryReloader.load(self.registry, what="reviewer registry")
        if self._reviewers.refused is not None:  # the sink starts anyway (module docstring)
            log.warning("review inbox: %s", self._reviewers.refused.describe())
        self._caught_up: set[int] = set()
        self._partitions: set[int] = set()
        self._problem: str | None = "starting"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publisher: KeyedPublisher | None = None  # made at the first vote, kept (module docstring)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start following (idempotent). The API calls it on the first inbox request, so a
        sink whose inbox nobody opens runs no follower."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="lockgate-review-inbox", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None

    @property
    def ready(self) -> bool:
        """Whether every partition has been read to its end at least once."""
        with self._lock:
            return self._book is not None and bool(self._partitions) and self._caught_up >= self._partitions

    # -- what the API serves -------------------------------------------------------------

    def folded(self) -> Folded:
        self.start()
        with self._lock:
            return Folded(tuple(self._book) if self._book else (), dict(self._judged))

    def listing(self, tenant: str | None) -> dict[str, Any]:
        """Open reviews (oldest first) and the most recently decided, for ``tenant`` (None: all)."""
        self.start()
        with self._lock:
            reviews = [r for r in (self._book or ()) if tenant is None or r.tenant == tenant]
            rows = [r.summary() for r in reviews]
            folded = len(self._records)
            problem = self._problem
        refused = self._reviewers.refused
        pending = sorted((r for r in rows if r["status"] == "open"), key=lambda r: r["opened_at_us"])
        decided = sorted((r for r in rows if r["status"] != "open"), key=lambda r: -r["opened_at_us"])[:_RECENT]
        return {"pending": pending, "decided": decided, "records": folded, "ready": self.ready,
                "problem": problem, "registry_refused": None if refused is None else refused.to_json()}

    def vote(self, reviewer: str, tenant: str | None, ref: str, vote: str, reason: str) -> VoteResult:
        """Vote as ``reviewer`` on a review ``tenant`` may see (module docstring).

        Raises :class:`SinkError` while the fold has not yet read the topic to its end, and
        :class:`RegistryError` while no reviewer registry was loaded since start (nobody
        could vote: the registry would not know the reviewer; this says why).
        """
        self.start()
        refused = self._reviewers.refused
        if refused is not None and not refused.last_good:
            raise RegistryError(f"no vote can be accepted: {refused.describe()}")
        if not self.ready:
            raise SinkError(f"the review inbox is still reading {self.topic} ({self._problem or 'catching up'}); "
                            "retry in a moment")
        def visible(review: Review) -> bool:
            return tenant is None or review.tenant == tenant

        def append(key: bytes, value: bytes) -> None:
            with self._lock:
                if self._publisher is None:
                    self._publisher = KeyedPublisher(self.bootstrap)
                publisher = self._publisher
            publisher.publish(self.topic, key, value)

        return cast_vote(self.folded, append, self.registry, reviewer, ref, vote, reason, visible=visible,
                         wait_s=self.vote_wait_s)

    # -- the follower ----------------------------------------------------------------------

    def _new_book(self) -> ReviewBook | None:
        try:
            key = PublicKey.load(self.home.processor_public_key)
        except KeyMissing:
            self._problem = f"no processor public key at {self.home.processor_public_key} yet"
            return None
        return ReviewBook(key, self.registry)

    def fold(self, value: bytes | None, at_us: int) -> None:
        """Hold one reviews-topic record and fold it (the follower calls it for each record it reads)."""
        with self._lock:
            self._records.append((value, at_us))
            if self._book is not None:
                judge_record(self._book, value, at_us, self._judged)

    def _registry_changed(self) -> bool:
        """Reload ``reviewers.json`` if it changed (module docstring); whether a new registry is
        in force, so the records held must be folded again."""
        reloads = self._reviewers.reloads
        refusal = self._reviewers.check()
        if refusal is not None:
            log.warning("review inbox: %s", refusal.describe())
        return self._reviewers.reloads != reloads

    def _refold(self) -> None:
        """Fold every record held again (a new reviewer registry, or the processor key appeared)."""
        book = self._new_book()
        with self._lock:
            self._book, self._judged = book, {}
            if book is not None:
                for value, at_us in self._records:
                    judge_record(book, value, at_us, self._judged)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except (KafkaException, OSError, LockgateError) as exc:  # broker gone, an unreadable key: retry
                self._problem = f"reviews unreadable: {exc}"
                log.warning("review inbox: %s", self._problem)
                self._stop.wait(2.0)

    def _follow(self) -> None:
        consumer = committed_reader(self.bootstrap, "sink-review-inbox", fetch_wait_ms=500)
        try:
            meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if meta is None or meta.error is not None or not meta.partitions:
                self._problem = f"topic {self.topic} not found yet"
                self._stop.wait(2.0)
                return
            with self._lock:
                self._records, self._judged, self._caught_up = [], {}, set()
                self._partitions = set(meta.partitions)
            self._registry_changed()
            self._refold()
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)])
            self._problem = None
            while not self._stop.is_set():
                if self._registry_changed() or self._book is None:
                    self._refold()
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        with self._lock:
                            self._caught_up.add(int(msg.partition() or 0))
                        continue
                    raise KafkaException(err)
                _kind, ts_ms = msg.timestamp()
                self.fold(msg.value(), int(ts_ms) * 1000)
        finally:
            consumer.close()
