"""Folding the reviews topic record by record: the one path every vote takes to its judgement.

The processor's review desk (:mod:`processors.reviews.desk`) acts on each vote's judgement
(ledger events, closures); the sink's review inbox (:mod:`sinks.review_inbox`) and
``lockgate reviews`` (:func:`trust.review_votes.fold_records`) show it. All of them fold a
record through :func:`judge_record`, against a reviewer registry reloaded when
``reviewers.json`` changes (``lockgate keys add-reviewer``) — by a :class:`ReviewerWatch`
in the inbox; the processor's watcher also keeps the last good registry when a reload is
refused and ledgers the refusal — so what the inbox or the CLI shows is the judgement the processor makes
(the rules themselves: :meth:`trust.reviews.ReviewBook.judge`). No I/O here but a
``stat`` and the registry's own reload.
"""

from __future__ import annotations

import os

from trust.reviewers import ReviewerRegistry
from trust.reviews import Applied, Judgement, ReviewBook

__all__ = ["ReviewerWatch", "judge_record"]

Stamp = tuple[int, int]


def judge_record(book: ReviewBook, raw: bytes | None, at_us: int,
                 judged: dict[str, Judgement] | None = None) -> Applied:
    """Fold one reviews-topic record (written at broker time ``at_us``) into ``book``.

    A vote is judged on the way in; when ``judged`` is given, its judgement is also kept
    there by vote id (what a reader looks a cast vote up by).
    """
    applied = book.apply(raw, at_us)
    j = applied.judgement
    if judged is not None and j is not None and j.vote is not None:
        judged[str(j.vote["vote_id"])] = j
    return applied


class ReviewerWatch:
    """Notices when ``registry``'s file changed (size or mtime) since it last looked."""

    def __init__(self, registry: ReviewerRegistry) -> None:
        self.registry = registry
        self._stamp = self._now()

    def _now(self) -> Stamp | None:
        try:
            st = os.stat(self.registry.path)
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def changed(self) -> bool:
        """Whether the file changed since the last look (this one counts as a look)."""
        stamp = self._now()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True

    def refresh(self) -> bool:
        """Reload the registry if its file changed; True if it did. A reload that raises
        leaves the change unseen, so the next call tries again."""
        stamp = self._now()
        if stamp == self._stamp:
            return False
        self.registry.reload()
        self._stamp = stamp
        return True
