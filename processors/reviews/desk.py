"""The review agent's pure core: one reviews-topic record in, what to publish out.

:class:`ReviewDesk` keeps one :class:`trust.reviews.ReviewBook` per partition of the
reviews topic. For each record it is handed (:meth:`ReviewDesk.handle`):

* a **vote** → a ``review`` ledger event (accepted, or refused and why) or a ``security``
  event (forged, ineligible, self-approval, unknown key); a vote that decides a normal
  review adds its **closure** — the final verdict, signed, referencing the approvals — to
  publish on the reviews topic;
* a **closure** (the first for its review) → the final verdict goes to the requester's
  reply partition and onto the ledger (``verdict`` event);
* an **opening** (the first for its review) → a webhook notification;
* anything that has no place there (an unsigned verdict, a stray record) → ``security``.

Effects happen when a record is *consumed*, never when it is produced: a closure is only
answered once it is in the log, so a crash between producing it and answering it re-answers
it from the log, and two closures of one review (a vote processed again after a crash) are
settled by log order — the first wins, the second is ignored. Every event id derives from
the record's coordinates, so processing a record twice yields the same events.

:meth:`ReviewDesk.rebuild` folds a partition's records before the first one a worker is
handed, without effects (the pending-review state after a restart or a rebalance;
:mod:`processors.reviews.rebuilds` decides when: as soon as the worker is assigned the
partition, whether or not a record follows); a review a folded vote decided but whose
closure is not among them gets its closure then (:meth:`ReviewDesk.unclosed`: otherwise
nobody would ever answer its requester), and :meth:`ReviewDesk.expire` closes reviews past
their expiry (block, ``review_expired``) — in the partitions the worker holds now, not in
one :meth:`ReviewDesk.suspend` set aside when the group took it away.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from processors.registry_watch import RegistryWatcher
from processors.stage import Source, StageOutput
from schemas.codec import get_codec
from schemas.records import AuditKind, audit_event
from trust.keys import Keyring, SigningKey
from trust.review_fold import judge_record
from trust.reviewers import ReviewerRegistry
from trust.reviews import Review, ReviewBook, ReviewStatus, VoteOutcome
from trust.signatures import sign_record

__all__ = ["DeskResult", "ReviewDesk", "final_verdict"]


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class DeskResult(StageOutput):
    """What to publish for one reviews-topic record."""

    closures: list[tuple[str, bytes]] = field(default_factory=list)  # (review id, Verdict) → reviews topic
    reply: tuple[str, int, str, bytes] | None = None  # (topic, partition, action id, Verdict) → requester
    notify: dict[str, Any] | None = None  # webhook payload
    metric: str | None = None  # review.requested / approved / denied / expired / break_glass / vote_refused
    closed: Review | None = None  # the review this record closed (first closure), for the grant index


def final_verdict(review: Review, decision: str, basis: str, reason: str, key: SigningKey,
                  processor_id: str, now_us: int) -> dict[str, Any]:
    """The signed final verdict of ``review``: the pending one's bindings, the approvals counted."""
    verdict = dict(review.verdict)
    verdict.update(
        decided_at=now_us, decision=decision, basis=basis, reason=reason, eval_latency_us=0,
        processor_id=processor_id,
        review={**review.state, "approvals": list(review.approvals) if decision == "allow" else []},
        signed_schema=2, signature=b"")
    return sign_record(verdict, "signature", b"", key)


class ReviewDesk:
    """Judges and answers reviews (module docstring). Not thread-safe: one agent drives it."""

    def __init__(self, key: SigningKey, processor_id: str, registry: ReviewerRegistry) -> None:
        self.key = key
        self.processor_id = processor_id
        self.registry = registry
        self.keys = Keyring([key.public()])
        self.codec = get_codec()
        self._books: dict[int, ReviewBook] = {}
        self._next: dict[int, int] = {}
        self._suspended: set[int] = set()
        self._closing: set[str] = set()
        self._watch = RegistryWatcher(registry, what="reviewer registry")
        self._refusals: list[dict[str, Any]] = []

    def refresh_registry(self) -> None:
        """Reload ``reviewers.json`` if it changed: reviewers added by ``lockgate keys
        add-reviewer`` count without a restart. A reload refused (unsafe permissions, bad
        JSON) keeps the last good registry — votes are still judged, against it — and its
        ``security`` event waits in :meth:`refusals` (and goes out with the next record handled)."""
        refusal = self._watch.check()
        if refusal is not None:
            self._refusals.append(refusal)

    def refusals(self) -> list[dict[str, Any]]:
        """The ``security`` events of refused registry reloads not yet handed out (each once)."""
        out, self._refusals = self._refusals, []
        return out

    def needs_rebuild(self, partition: int, offset: int) -> bool:
        """True unless ``offset`` is the next record expected on ``partition``."""
        return self._next.get(partition) != offset

    def next_offset(self, partition: int) -> int | None:
        """The offset of ``partition`` the state expects next (``None``: no state)."""
        return self._next.get(partition)

    def holds(self, partition: int) -> bool:
        """Whether ``partition`` has a state that was not :meth:`suspend`-ed since it was built."""
        return partition in self._next and partition not in self._suspended

    def fold(self, records: Iterable[tuple[bytes | None, int]]) -> ReviewBook:
        """A new book of ``records`` (``(value, timestamp µs)`` in log order), without effects.

        Touches no state of the desk (a worker thread may run it while the agent handles
        other partitions); :meth:`install` makes it the partition's state.
        """
        book = ReviewBook(self.keys, self.registry, self.codec)
        for value, at_us in records:
            judge_record(book, value, at_us)
        return book

    def install(self, partition: int, offset: int, book: ReviewBook) -> None:
        """Make ``book`` — the fold of ``partition`` before ``offset`` — the partition's state."""
        self._books[partition] = book
        self._next[partition] = offset
        self._suspended.discard(partition)

    def rebuild(self, partition: int, offset: int, records: Iterable[tuple[bytes | None, int]]) -> int:
        """Fold ``partition``'s records before ``offset`` and install them; how many there were."""
        self.refresh_registry()
        rows = list(records)
        self.install(partition, offset, self.fold(rows))
        return len(rows)

    def suspend(self, partitions: Iterable[int]) -> None:
        """The group took ``partitions`` away: expire nothing there until each is installed or
        :meth:`resume`-d (the group may hand it back, or another worker may own it now)."""
        self._suspended.update(partitions)

    def resume(self, partition: int) -> None:
        """``partition`` is back, where its state stopped: nothing to rebuild."""
        self._suspended.discard(partition)

    def release(self, partition: int) -> None:
        """Forget ``partition`` (another worker owns it): its state and what it was closing."""
        for review in self._books.pop(partition, ()):
            self._closing.discard(review.review_id)
        self._next.pop(partition, None)
        self._suspended.discard(partition)

    def partitions(self) -> set[int]:
        """The partitions the desk has a state of (held or suspended)."""
        return set(self._next)

    def unclosed(self, partition: int) -> list[tuple[str, bytes]]:
        """Closures for the reviews of ``partition`` that votes already decided but whose
        closure is not in what :meth:`rebuild` folded: the deciding vote was folded as handled
        yet nothing it caused is in the log (its worker died before publishing, or the group's
        committed position passed it unhandled: Faust skipped it and committed past the gap —
        :mod:`processors.reviews.rebuilds` handles what it skips while it runs), so
        without this the requester would never get a final verdict. Publishing again is
        harmless when a closure does follow later in the log: the first closure of a review
        wins (module docstring). Each review once per worker; post-hoc reviews have none."""
        out: list[tuple[str, bytes]] = []
        for review in self._books.get(partition, ()):
            if (review.status in (ReviewStatus.APPROVED, ReviewStatus.DENIED) and review.closure_raw is None
                    and not review.post_hoc and review.review_id not in self._closing):
                out.append(self._close(review, review.status, "denied before this worker took the partition"))
        return out

    def book(self, partition: int) -> ReviewBook:
        return self._books.setdefault(partition, ReviewBook(self.keys, self.registry, self.codec))

    def handle(self, raw: bytes | None, source: Source, at_us: int) -> DeskResult:
        """Fold one record live and say what to publish (module docstring), with the
        ``security`` event of a registry reload refused meanwhile (:meth:`refresh_registry`)."""
        self.refresh_registry()
        out = self._handle(raw, source, at_us)
        out.audit[:0] = self.refusals()
        return out

    def _handle(self, raw: bytes | None, source: Source, at_us: int) -> DeskResult:
        self._next[source.partition] = source.offset + 1
        applied = judge_record(self.book(source.partition), raw, at_us)
        out = DeskResult()
        data = raw or b""
        review = applied.review
        tenant = review.tenant if review is not None else ""
        action_id = review.action_id if review is not None else None
        if applied.kind == "vote" and applied.judgement is not None:
            j = applied.judgement
            tenant = j.vote["tenant"] if j.vote is not None and review is None else tenant
            action_id = action_id or (j.vote["action_id"] if j.vote is not None else None)
            if j.outcome is VoteOutcome.SECURITY:
                out.audit.append(audit_event(AuditKind.SECURITY, tenant, action_id, data,
                                             detail=f"review vote refused: {j.reason}",
                                             event_id=source.event_id(AuditKind.SECURITY)))
                out.metric = "vote_refused"
                return out
            verb = "accepted" if j.outcome is VoteOutcome.ACCEPTED else "refused"
            out.audit.append(audit_event(AuditKind.REVIEW, tenant, action_id, data, detail=f"{verb}: {j.reason}",
                                         event_id=source.event_id(AuditKind.REVIEW)))
            out.metric = "vote_accepted" if verb == "accepted" else "vote_refused"
            if j.decided is not None and review is not None and not review.post_hoc:
                out.closures.append(self._close(review, j.decided, j.reason))
            elif j.decided is not None and review is not None:
                out.notify = {"event": f"post_hoc.{j.decided.value}", **review.summary()}
            return out
        if applied.kind == "open" and applied.first and review is not None:
            kind = "break_glass" if review.post_hoc else "review.requested"
            out.notify = {"event": kind, **review.summary()}
            out.metric = "break_glass" if review.post_hoc else "requested"
            return out
        if applied.kind == "closure" and applied.first and review is not None and review.closure_raw is not None:
            self._closing.discard(review.review_id)
            out.closed = review
            closure = review.closure or {}
            out.audit.append(audit_event(AuditKind.VERDICT, tenant, action_id, review.closure_raw,
                                         event_id=source.event_id(AuditKind.VERDICT)))
            p = review.proposal
            out.reply = (str(p["reply_topic"]), int(p["reply_partition"]), review.action_id, review.closure_raw)
            out.notify = {"event": f"review.{review.status.value}", "decision": closure.get("decision"),
                          **review.summary()}
            out.metric = review.status.value
            return out
        if applied.kind == "ignored":
            out.audit.append(audit_event(AuditKind.SECURITY, tenant, action_id, data[:65536],
                                         detail=f"reviews topic: {applied.note}",
                                         event_id=source.event_id(AuditKind.SECURITY)))
        return out

    def _close(self, review: Review, status: ReviewStatus, why: str) -> tuple[str, bytes]:
        self._closing.add(review.review_id)
        if status is ReviewStatus.APPROVED:
            decision, basis = "allow", "review_approved"
            reason = (f"approved by {', '.join(review.approvers)} ({len(review.approvals)} of "
                      f"{review.min_approvals} required) under rule {review.state['rule_id']}")
        else:
            decision, basis, reason = "block", "review_denied", f"review {review.review_id} {why}"
        verdict = final_verdict(review, decision, basis, reason, self.key, self.processor_id, _now_us())
        return review.review_id, self.codec.encode("Verdict", verdict)

    def expire(self, now_us: int | None = None) -> list[tuple[str, bytes]]:
        """Closures (block, ``review_expired``) for open reviews past their expiry, each once
        (in the partitions the desk holds: not in a suspended one)."""
        now = _now_us() if now_us is None else now_us
        out: list[tuple[str, bytes]] = []
        for partition, book in self._books.items():
            if partition in self._suspended:
                continue
            for review in book.due(now):
                if review.review_id in self._closing:
                    continue
                self._closing.add(review.review_id)
                reason = (f"review {review.review_id} expired: {len(review.approvals)} of {review.min_approvals} "
                          f"approval(s) by {review.expires_at} µs; the action did not run")
                verdict = final_verdict(review, "block", "review_expired", reason, self.key, self.processor_id, now)
                out.append((review.review_id, self.codec.encode("Verdict", verdict)))
        return out
