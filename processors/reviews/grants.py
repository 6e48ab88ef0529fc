"""Every worker's view of every time-boxed grant: a fold of *all* partitions of the reviews topic.

Why all partitions, on every worker: a grant is used by the decide agent, which owns
partitions of ``actions`` (keyed by action id), while the review that opened the grant
lives on one partition of ``reviews`` (keyed by review id) that some — usually another —
worker owns. One actor's actions hash to every ``actions`` partition, so every worker must
know every grant. The reviews topic already is the durable, replayable record of every
approval (each closure is a processor-signed final verdict that carries its approvals), so
each worker folds the whole topic into a :class:`GrantIndex` (:class:`GrantFeed` reads it
from the beginning and then follows it) instead of keeping a second, derived record that
could disagree with it. Reviews are human-paced, so the fold is small; a restart or a
``kill -9`` loses nothing, because the state is re-read from the topic.

Fail closed: until the feed has read every partition to its end once
(:attr:`GrantIndex.ready`), and whenever it has failed since, :meth:`GrantIndex.find`
finds nothing, so the action is held for review as if no grant existed. A grant approved a
moment ago may likewise not be seen yet by another worker (the feed follows the topic within
its fetch wait, 100 ms): such an action is held for review too, never allowed without one.
The worker that owns the approving review's partition adds the grant itself when its review
agent consumes the approval (:meth:`GrantIndex.add`), which happens before the requester is
answered.

Which grants apply, and what the verdict says, is :mod:`trust.grants`.

The reviewer registry: the index folds with a :class:`~trust.reviewers.ReviewerRegistry` of
its own (the feed runs in its own thread; the review desk's is not shared across threads)
and follows ``reviewers.json`` like every other reader does
(:class:`trust.registry_reload.RegistryReloader`): before each record it folds, under the
index's lock, so a reload never lands in the middle of a record's fold. A refused reload
(unsafe permissions, bad JSON) keeps the last good registry and is logged as a warning and
shown in :meth:`GrantIndex.status`; it is not ledgered here — the review desk already puts
one ``security`` event per refused state of the file on the ledger. What the registry
decides in this fold is only how votes are judged on the way; a grant comes from the
review's *closure*, the processor-signed final verdict, which carries its approvals and was
judged by the desk against the registry of its time. So a reviewer removed (or a key
rotated out) later takes nothing back: grants already folded stay valid until their window
ends, and a restarted feed that re-reads the topic folds them again. To end a window early,
change the policy (:func:`trust.grants.grant_covers` judges every grant under today's terms).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from lockgate.kernel.partition_reader import committed_reader
from schemas.codec import get_codec
from trust.grants import Grant, GrantTerms, grant_covers, grant_from_review, requester_of
from trust.keys import Keyring
from trust.registry_reload import RegistryReloader
from trust.reviewers import ReviewerRegistry
from trust.reviews import Review, ReviewBook

__all__ = ["GrantFeed", "GrantIndex"]

log = logging.getLogger("lockgate.processor.grants")

_Key = tuple[str, str, str, str, str]  # tenant, service, canonical actor, type, rule id


class GrantIndex:
    """Grants folded from every reviews partition (module docstring). Thread-safe: the feed
    thread applies records while the decide agent looks grants up."""

    def __init__(self, processor_keys: Keyring, registry: ReviewerRegistry) -> None:
        self.keys = processor_keys
        self.registry = registry
        self._reviewers = RegistryReloader(registry, what="reviewer registry")
        self._lock = threading.Lock()
        self._books: dict[int, ReviewBook] = {}
        self._grants: dict[_Key, dict[str, Grant]] = {}
        self._expected: frozenset[int] = frozenset()
        self._at_end: set[int] = set()
        self._failed: str | None = "not read yet"

    def reset(self, partitions: Iterable[int]) -> None:
        """Forget everything: the feed starts over from the beginning of ``partitions``."""
        with self._lock:
            self._books = {}
            self._grants = {}
            self._expected = frozenset(partitions)
            self._at_end = set()
            self._failed = None

    @property
    def ready(self) -> bool:
        """Every partition read to its end once since the last reset, and no failure since."""
        return self._failed is None and bool(self._expected) and self._expected <= self._at_end

    def status(self) -> dict[str, Any]:
        with self._lock:
            refused = self._reviewers.refused
            return {"ready": self.ready, "partitions_read": sorted(self._at_end), "partitions": sorted(self._expected),
                    "failed": self._failed, "grants": sum(len(g) for g in self._grants.values()),
                    "registry_refused": None if refused is None else refused.to_json()}

    def failed(self, reason: str) -> None:
        """The feed broke: find nothing until it has started over and caught up."""
        with self._lock:
            self._failed = reason

    def at_end(self, partition: int) -> bool:
        """The feed reached the end of ``partition`` (it stays counted while the feed follows
        it); whether that was the first time."""
        with self._lock:
            first = partition not in self._at_end
            self._at_end.add(partition)
            return first

    def apply(self, partition: int, raw: bytes | None, at_us: int) -> Grant | None:
        """Fold one reviews record of ``partition`` in log order, against the reviewer registry
        as ``reviewers.json`` now says (module docstring); the grant it opened, if any."""
        with self._lock:
            refusal = self._reviewers.check()
            if refusal is not None:
                log.warning("grant index: %s", refusal.describe())
            book = self._books.get(partition)
            if book is None:
                book = self._books[partition] = ReviewBook(self.keys, self.registry, get_codec())
            applied = book.apply(raw, at_us)
            if applied.kind != "closure" or not applied.first or applied.review is None:
                return None
            return self._add(applied.review)

    def add(self, review: Review) -> Grant | None:
        """Count the grant of ``review`` if it opened one (the review agent's own approvals)."""
        with self._lock:
            return self._add(review)

    def _add(self, review: Review) -> Grant | None:
        grant = grant_from_review(review)
        if grant is not None:
            key = (grant.tenant, grant.service, grant.actor, grant.type, grant.rule_id)
            self._grants.setdefault(key, {})[grant.review_id] = grant
        return grant

    def find(self, proposal: dict[str, Any], terms: GrantTerms, now_us: int) -> Grant | None:
        """The grant covering ``proposal`` decided at ``now_us`` under ``terms``: of the ones that
        do, the latest approved. ``None`` when none does, or while the index is not ready."""
        service, actor = requester_of(proposal)
        key = (str(proposal.get("tenant", "")), service, actor, str(proposal["type"]), terms.rule_id)
        with self._lock:
            if not self.ready:
                return None
            candidates = list(self._grants.get(key, {}).values())
        covering = [g for g in candidates if grant_covers(g, terms, proposal, now_us) is None]
        return max(covering, key=lambda g: (g.approved_at, g.review_id), default=None)

    def grants(self) -> list[Grant]:
        """Every grant folded so far (valid or not under today's policy), oldest first."""
        with self._lock:
            found = [g for by_id in self._grants.values() for g in by_id.values()]
        return sorted(found, key=lambda g: (g.approved_at, g.review_id))


class GrantFeed:
    """Reads every partition of the reviews topic from the beginning into a :class:`GrantIndex`,
    then follows it; on any error it marks the index failed and starts over."""

    def __init__(self, bootstrap: str, topic: str, index: GrantIndex, fetch_wait_ms: int = 100) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.index = index
        self.fetch_wait_ms = fetch_wait_ms
        self._running = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lockgate-grant-feed", daemon=True)

    def start(self) -> None:
        self._running.set()
        self._thread.start()

    def stop(self) -> None:
        self._running.clear()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while self._running.is_set():
            try:
                self._follow()
            except Exception as exc:  # any failure: fail closed, start over
                self.index.failed(f"{type(exc).__name__}: {exc}")
                log.error("grant feed on %s failed; grants unavailable until it catches up again: %s",
                          self.topic, exc)
                time.sleep(1.0)

    def _follow(self) -> None:
        consumer = committed_reader(self.bootstrap, "grants", fetch_wait_ms=self.fetch_wait_ms)
        try:
            meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise RuntimeError(f"topic {self.topic} not found")
            self.index.reset(meta.partitions)
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)])
            while self._running.is_set():
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            if self.index.at_end(int(msg.partition() or 0)):
                                log.info("grant feed: %s[%s] read to its end", self.topic, msg.partition())
                            continue
                        raise RuntimeError(f"reading {self.topic}[{msg.partition()}]: {err.str()}")
                    grant = self.index.apply(int(msg.partition() or 0), msg.value(), int(msg.timestamp()[1]) * 1000)
                    if grant is not None:
                        log.info("grant %s: %s %s %s under rule %s", grant.review_id, grant.actor, grant.type,
                                 grant.resource, grant.rule_id)
        finally:
            consumer.close()
