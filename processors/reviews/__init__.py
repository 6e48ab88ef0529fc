"""Reviews in the processor: holding an action for approval, break-glass, and the review agent.

* :mod:`processors.reviews.requests` — the decide stage's hook: a ``review`` decision
  becomes a pending verdict with its :class:`ReviewState`; a missing justification
  blocks; break-glass overrides with a justification and opens a post-hoc review.
* :mod:`processors.reviews.desk` — the review agent's pure core over the reviews topic
  (:class:`trust.reviews.ReviewBook`): judges votes, records them on the ledger, closes
  reviews with a signed final verdict, expires them.
* :mod:`processors.reviews.rebuilds` — when the desk rebuilds a partition: when the group
  assigns it, checked again against the first record the agent is handed.
* :mod:`processors.reviews.webhook` — HMAC-signed JSON POSTs to configured URLs.

Where pending-review state lives: in the ``reviews`` topic itself. Every record that
changes a review (proposal, pending verdict, vote, closure) is on it, keyed by review id,
so the state of a partition's reviews is the fold of that partition's log. A worker the
group assigns a partition rebuilds the fold at once by reading the partition up to where the
group resumes it — the first record it will be handed — whether or not another record ever
comes (:mod:`processors.reviews.rebuilds`), so its reviews expire on time after a restart;
nothing else has to survive a restart, and every reader (``lockgate reviews list``, the
dashboard) folds the same log the same way.
"""
