"""Folding the reviews topic record by record: the one path every vote takes to its judgement.

The processor's review desk (:mod:`processors.reviews.desk`) acts on each vote's judgement
(ledger events, closures); the sink's review inbox (:mod:`sinks.review_inbox`) and
``lockgate reviews`` (:func:`trust.review_votes.fold_records`) show it. All of them fold a
record through :func:`judge_record`, against the reviewer registry as ``reviewers.json``
says: the CLI reads it fresh; the processor and the inbox reload it when it changes
(``lockgate keys add-reviewer``) through :class:`trust.registry_reload.RegistryReloader`,
which keeps the last good registry when a reload is refused — so what the inbox or the CLI
shows is the judgement the processor makes (the rules themselves:
:meth:`trust.reviews.ReviewBook.judge`). No I/O here.
"""

from __future__ import annotations

from trust.reviews import Applied, Judgement, ReviewBook

__all__ = ["judge_record"]


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
