"""The ledger verification engine: chain, checkpoints, and proof of enforcement.

This is the thin front: :func:`verify_ledger` runs the passes, each in its own module
(:mod:`trust.verify.chain`, :mod:`trust.verify.checkpoints`, :mod:`trust.verify.coverage`,
:mod:`trust.verify.enforcement`) over the findings model of :mod:`trust.verify.findings`.
:func:`compare_copies` (:mod:`trust.verify.copies`) compares two copies of the ledger (the
store and the replay topics) record by record. What readers see of the store — derived
columns, the per-action summary — is checked on the edge that knows how the store derives
it (``sinks.view_check``), producing the same :class:`Finding` objects.

Pure: it reads AuditEvent dicts (as stored, in any order) and Checkpoint dicts, and
returns :class:`Finding` objects sorted by partition and sequence, so that for every
partition the first finding names the first bad record. It talks to nothing.

What is checked
===============

1. **Chain** (per ``ledger_partition``): rows are grouped by partition and sorted by
   ``sequence`` (then by storage position, when one is given). Each row's ``hash`` is
   recomputed (:func:`trust.chain.event_hash`, contract in
   ``docs/CONTRACTS.md``); ``prev_hash`` must equal the hash of the row before it; the
   partition starts at sequence 0 with ``prev_hash = GENESIS`` (or at an *anchor*, for a
   ledger whose prefix was pruned on purpose); sequences are contiguous.

   A byte-identical duplicate row (every field equal) is collapsed silently: at-least-once
   storage (a retried insert before a ReplacingMergeTree merge) produces those, and they
   add no information. Any other second row at a sequence is an insertion.

2. **Checkpoints**: the Ed25519 signature (processor keyring, key expiry judged at the
   checkpoint's ``created_at``), then the RFC 6962 root over the stored hashes of
   ``first_sequence..last_sequence`` and the stored hash at ``last_sequence``. A whole-log
   checkpoint (a C2SP signed note, :mod:`trust.tlog`) covers ``0..size - 1``; consecutive
   whole-log checkpoints of a partition must be consistent (RFC 9162 §2.1.4).

2a. **Cosignatures** (only when witness keys are given): the newest whole-log checkpoint
   of every partition carries a valid cosignature of each witness
   (:mod:`trust.verify.cosignatures`).

3. **Completeness** (:mod:`trust.verify.coverage`, its own decision table): an event id
   stored at two places is a ``duplicate_event``; with a :class:`CoverageRule`, a run of
   events older than twice the checkpoint interval that no validly signed checkpoint
   covers is an ``uncovered_event``.

5. **Reviews** (:mod:`trust.verify.reviews`, run by the caller with the reviewer registry):
   every allow through a review had enough valid approvals from eligible reviewers, none
   from the requester, all before the commit; every break-glass action's post-hoc review
   is complete.

4. **Enforcement** (from decoded payloads): every ``committed`` ActionOutcome needs a
   validly signed ``allow`` Verdict for its action in the ledger, decided no later than
   the outcome was recorded; the Verdict embedded in the outcome must be for the same
   action, validly signed, and equal to a ledger verdict for that action. With a
   :class:`VerdictRule`, an outcome chained within the grace whose action has no verdict
   event in the ledger yet, but which embeds a valid allow, is *pending*
   (:class:`PendingVerdicts`), not a finding: its verdict is still on its way through
   ``audit-intake`` (:mod:`trust.verify.enforcement`). On a ledger verified from anchors,
   the verdicts of in-window outcomes chained before the window are passed in as
   ``context_verdicts`` and judged the same way (a deleted one is still named).

5. **Bindings and one decision per action** (:mod:`trust.verify.bindings`, with the
   enforcement pass): proposal → verdict → outcome by hash, each verdict's policy version
   against the ledger's ``policy`` events, at most one proposal and one final decision
   per action id.

6. **Decisions reproducible** (:mod:`trust.verify.decisions`, on request): each recorded
   proposal re-evaluated under the recorded policy version by a policy engine the caller
   passes in (this package knows no engine).

Decision table (chain)
======================

``self-consistent`` = the recomputed hash equals the stored ``hash``.
``links`` = ``prev_hash`` equals the stored hash of the chosen row one sequence lower.

=====================================================  =====================  ===========
Observation                                            Finding                Named row
=====================================================  =====================  ===========
sequence ``s`` absent, rows exist above it             ``deleted_record``     ``s`` (the
                                                                              first gap)
two distinct rows at ``s``: the one that is            ``inserted_record``    each extra
self-consistent, links, and is linked from ``s+1``                            row
is kept; the rest are extras
row not self-consistent; it *is* self-consistent with  ``reordered_records``  the row
another row's sequence (its ``sequence`` was swapped),
or with another row's sequence and chain fields (its
content was swapped)
rows from ``a`` up are each self-consistent one        ``deleted_record``     ``a``
sequence *higher* and nobody claims ``a``
(a deletion, then renumbering to hide the gap)
rows from ``a+1`` up are each self-consistent one      ``inserted_record``    ``a``
sequence *lower*, nobody claims the run's top
(an insertion, then renumbering to make room)
row not self-consistent, no other place explains it    ``modified_record``    the row
row self-consistent but does not link; the next row    ``modified_record``    ``s-1``
links to it (row ``s-1`` was edited and re-hashed:
its successor still commits to the old hash)
row self-consistent, does not link, nothing links to   ``modified_record``    the row
it, though a row follows (replaced, or its
``prev_hash`` edited, then re-hashed)
as above, but no row follows to arbitrate (the tail    ``modified_record``    ``s-1``
of the stored chain, or just before a gap): either
row may have been re-hashed; the earlier is named,
the message names both
position (storage/insertion order) decreases while     ``reordered_records``  each row
sequence increases: rows outside the longest                                  out of
increasing run of positions                                                   place
=====================================================  =====================  ===========

A link break right after a row that is already flagged is not reported again (the
flagged row explains it).

Decision table (checkpoints)
============================

Every stored checkpoint record is checked on its own, in any order; only field-for-field
identical copies (every Checkpoint field equal) are one record.

=========================================================  ======================
signature does not verify, key unknown or expired           ``forged_checkpoint``
(when a validly signed copy with the same id is stored, the  (the edited copy; the
finding names the fields this one differs in from it)        signed one counts)
two whole-log copies, both valid, same signed note (their   ``forged_checkpoint``
cosignature lines aside), different unsigned fields          (one, naming the fields)
(``head_hash``, ``created_at``, ``processor_id``)
valid; ``last_sequence`` beyond the stored head, or the     ``truncated_tail``
partition is absent (the newest checkpoint decides)
valid; newest for its partition; stored hash at             ``truncated_tail``
``last_sequence`` differs from ``head_hash`` (the tail was
cut and re-appended)
valid; Merkle root or head differs from the stored hashes   ``altered_checkpoint``
(history re-hashed after it was checkpointed)
two valid whole-log checkpoints of one size, other roots    ``inconsistent_checkpoints``
whole-log: the stored history reproduces the newer of two   ``inconsistent_checkpoints``
consecutive checkpoints, and the consistency proof built    (names the older)
from it to the older one fails (history before the older
was deleted, reordered or rewritten, then re-signed)
=========================================================  ======================

Whole-log roots need every event from sequence 0: a partition verified from an anchor
(``--since``) gets its whole-log checkpoints' signatures and truncation checked, not
their roots.

A Merkle root says *that* an interval differs, not *where*: ``altered_checkpoint``
names the interval's first record, and the message says so. An interval with a sequence
gap is not root-checked (the gap is already a ``deleted_record``).

Limits (by design, stated so nobody relies on more): a wholesale re-chained ledger after
the last checkpoint, or events appended after it, are indistinguishable from genuine
ones — checkpoints bound what can be rewritten; verdict signatures bound what can be
forged. A second copy closes that gap: :func:`compare_copies` against the replay topics
names a rewritten tail at its first differing record. Storage positions, when given, must
be comparable within a partition (e.g. the audit topic offset).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from trust.cosignature import CosignatureV1Verifier
from trust.keys import Keyring
from trust.verify.bindings import BindingStats, check_bindings
from trust.verify.chain import verify_chain
from trust.verify.checkpoints import signed_checkpoints, verify_checkpoints
from trust.verify.copies import CopiesReport, compare_copies
from trust.verify.cosignatures import verify_cosignatures
from trust.verify.coverage import CoverageRule, duplicate_events, uncovered_events
from trust.verify.decoded import DecodedLedger
from trust.verify.enforcement import PendingVerdicts, VerdictRule, reconcile_enforcement, unanswered_actions
from trust.verify.findings import Event, Finding, FindingKind, PartitionState
from trust.verify.outcomes import OutcomeRule, missing_outcomes
from trust.verify.reviews import verify_reviews

__all__ = [
    "BindingStats",
    "CopiesReport",
    "CoverageRule",
    "DecodedLedger",
    "Finding",
    "FindingKind",
    "OutcomeRule",
    "PartitionState",
    "PendingVerdicts",
    "VerdictRule",
    "check_bindings",
    "compare_copies",
    "reconcile_enforcement",
    "unanswered_actions",
    "verify_chain",
    "verify_checkpoints",
    "verify_cosignatures",
    "verify_ledger",
    "verify_reviews",
]


def verify_ledger(
    events: Iterable[Event],
    checkpoints: Iterable[Mapping[str, Any]],
    keyring: Keyring,
    *,
    position_key: str | None = None,
    anchors: Mapping[int, tuple[int, bytes]] | None = None,
    enforcement: bool = True,
    coverage: CoverageRule | None = None,
    outcomes: OutcomeRule | None = None,
    witnesses: Sequence[CosignatureV1Verifier] = (),
    log_name: str | None = None,
    decoded: DecodedLedger | None = None,
    bindings: BindingStats | None = None,
    verdicts: VerdictRule | None = None,
    pending: PendingVerdicts | None = None,
    context_verdicts: Iterable[Event] = (),
) -> list[Finding]:
    """Everything: chain, checkpoints, duplicates, (with ``coverage``) uncovered events,
    cosignatures (when ``witnesses`` are given), and (unless ``enforcement=False``)
    enforcement.

    Findings are sorted by (partition, sequence, kind); an empty list means the ledger
    verified. ``keyring`` holds the processor's public keys (checkpoints and verdicts).
    ``coverage`` needs the current time and the checkpoint interval, so it is the caller's
    choice (the CLI always passes it); without it nothing is judged by age. ``outcomes``,
    when given, reports old allows with no outcome (:mod:`trust.verify.outcomes`). ``log_name``,
    when given, is the log whole-log checkpoints must name. With enforcement, the bindings
    pass runs over ``decoded`` (built from ``events`` when not given) and fills ``bindings``.
    ``verdicts``, when given, lets a committed outcome wait for a verdict event still in flight
    (:mod:`trust.verify.enforcement`); those outcomes go to ``pending``, not to the findings.
    Without it every outcome is judged now (strict). ``context_verdicts``, for a ledger read
    from ``anchors``, are the verdict events chained before the window for the outcomes in it
    (:func:`unanswered_actions`); they are judged as the outcomes' verdicts, not chain-checked
    (:mod:`trust.verify.enforcement`).
    """
    rows = events if isinstance(events, list) else list(events)
    cps = checkpoints if isinstance(checkpoints, list) else list(checkpoints)
    findings, states = verify_chain(rows, position_key=position_key, anchors=anchors)
    signed = signed_checkpoints(cps, keyring, log_name=log_name)
    findings.extend(verify_checkpoints(cps, states, keyring, log_name=log_name, signed=signed))
    findings.extend(verify_cosignatures(cps, states, keyring, witnesses, log_name=log_name))
    findings.extend(duplicate_events(rows))
    if coverage is not None:
        findings.extend(uncovered_events(rows, signed.valid, coverage))
    if outcomes is not None:
        findings.extend(missing_outcomes(rows, keyring, outcomes))
    if enforcement:
        findings.extend(reconcile_enforcement(rows, keyring, rule=verdicts, pending=pending,
                                              context_verdicts=context_verdicts))
        ledger = decoded if decoded is not None else DecodedLedger.build(rows)
        findings.extend(check_bindings(ledger, complete=not anchors, stats=bindings))
    findings.sort(key=Finding.sort_key)
    return findings

