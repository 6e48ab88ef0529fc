"""The findings model: what ``verify`` reports, and the stored chain state it hands on.

A :class:`Finding` carries its evidence (partition, sequence, event id, message) the way
tessera's ``ErrInconsistency`` does, so a report names the record, not only the problem.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "Finding", "FindingKind", "PartitionState", "finding_at"]

Event = Mapping[str, Any]
"""One stored AuditEvent as a dict (see :class:`trust.source.LedgerSource`)."""


class FindingKind(enum.StrEnum):
    """What is wrong. The first group is the chain, then checkpoints, completeness, enforcement,
    then what readers see (the store's derived views, its copy of the replay topics); kinds
    added later go at the end (whole-log consistency, witness cosignatures, the hash bindings
between proposal, verdict, policy and outcome, one decision per action, reproducibility)."""

    MODIFIED_RECORD = "modified_record"
    DELETED_RECORD = "deleted_record"
    INSERTED_RECORD = "inserted_record"
    REORDERED_RECORDS = "reordered_records"
    TRUNCATED_TAIL = "truncated_tail"
    FORGED_CHECKPOINT = "forged_checkpoint"
    ALTERED_CHECKPOINT = "altered_checkpoint"
    DUPLICATE_EVENT = "duplicate_event"
    UNCOVERED_EVENT = "uncovered_event"
    FORGED_VERDICT = "forged_verdict"
    UNDECODABLE_PAYLOAD = "undecodable_payload"
    COMMIT_WITHOUT_ALLOW = "commit_without_allow"
    VERDICT_AFTER_COMMIT = "verdict_after_commit"
    VERDICT_FOR_OTHER_ACTION = "verdict_for_other_action"
    EMBEDDED_VERDICT_MISSING = "embedded_verdict_missing"
    EMBEDDED_VERDICT_FORGED = "embedded_verdict_forged"
    EMBEDDED_VERDICT_MISMATCH = "embedded_verdict_mismatch"
    ALTERED_VIEW = "altered_view"
    ALTERED_SUMMARY = "altered_summary"
    INSERTED_SUMMARY = "inserted_summary"
    MISSING_SUMMARY = "missing_summary"
    STORE_DIFFERS_FROM_TOPICS = "store_differs_from_topics"
    INCONSISTENT_CHECKPOINTS = "inconsistent_checkpoints"
    MISSING_COSIGNATURE = "missing_cosignature"
    FORGED_COSIGNATURE = "forged_cosignature"
    OUTCOME_MISSING = "outcome_missing"
    REVIEW_APPROVALS_INVALID = "review_approvals_invalid"
    APPROVAL_AFTER_COMMIT = "approval_after_commit"
    BREAK_GLASS_UNREVIEWED = "break_glass_unreviewed"
    UNBOUND_RECORD = "unbound_record"
    VERDICT_PROPOSAL_MISMATCH = "verdict_proposal_mismatch"
    VERDICT_POLICY_MISMATCH = "verdict_policy_mismatch"
    OUTCOME_VERDICT_MISMATCH = "outcome_verdict_mismatch"
    DUPLICATE_PROPOSAL = "duplicate_proposal"
    DUPLICATE_DECISION = "duplicate_decision"
    IRREPRODUCIBLE_DECISION = "irreproducible_decision"
    GRANT_INVALID = "grant_invalid"


_CHAIN_KINDS = frozenset(
    {
        FindingKind.MODIFIED_RECORD,
        FindingKind.DELETED_RECORD,
        FindingKind.INSERTED_RECORD,
        FindingKind.REORDERED_RECORDS,
    }
)
_ORDER = {kind: i for i, kind in enumerate(FindingKind)}


@dataclass(frozen=True)
class Finding:
    """One problem, located as precisely as the evidence allows.

    ``sequence`` is the ledger sequence the finding is about (``None`` when a row has
    none); ``event_id`` the stored row's id when there is a row (a deletion has none).

    A finding about a stored value (a derived column, a summary row, a record that
    differs from its replay copy) also names where it is and both values: ``table`` and
    ``column``, ``stored`` (what a reader of the store sees) and ``ledger`` (what the
    chained record yields); JSON-safe values, ``None`` where one side has no row.
    """

    kind: FindingKind
    partition: int | None
    sequence: int | None
    event_id: str | None
    message: str
    checkpoint_id: str | None = None
    action_id: str | None = None
    table: str | None = None
    column: str | None = None
    stored: Any = None
    ledger: Any = None

    @property
    def is_chain(self) -> bool:
        return self.kind in _CHAIN_KINDS

    def sort_key(self) -> tuple[int, int, int]:
        part = -1 if self.partition is None else self.partition
        seq = -1 if self.sequence is None else self.sequence
        return (part, seq, _ORDER[self.kind])


@dataclass
class PartitionState:
    """The stored chain of one partition after verification, for the checkpoint checks."""

    partition: int
    first_sequence: int = 0
    _contiguous: list[Event] = field(default_factory=list)
    _by_seq: dict[int, Event] | None = None

    @property
    def head_sequence(self) -> int | None:
        """Highest stored sequence (``None`` for an empty partition)."""
        if self._by_seq is not None:
            return max(self._by_seq) if self._by_seq else None
        return self.first_sequence + len(self._contiguous) - 1 if self._contiguous else None

    def row_at(self, sequence: int) -> Event | None:
        if self._by_seq is not None:
            return self._by_seq.get(sequence)
        i = sequence - self.first_sequence
        return self._contiguous[i] if 0 <= i < len(self._contiguous) else None

    def hashes(self, first: int, last: int) -> list[bytes] | None:
        """Stored hashes of ``first..last``, or ``None`` if any of them is missing."""
        if self._by_seq is None and first >= self.first_sequence:
            lo = first - self.first_sequence
            hi = last - self.first_sequence
            if hi < len(self._contiguous):
                return [r["hash"] for r in self._contiguous[lo : hi + 1]]
            return None
        out = []
        for s in range(first, last + 1):
            row = self.row_at(s)
            if row is None or not isinstance(row.get("hash"), bytes):
                return None
            out.append(row["hash"])
        return out


def finding_at(
    kind: FindingKind,
    partition: int | None,
    row: Event | None,
    message: str,
    sequence: int | None = None,
) -> Finding:
    seq = sequence if sequence is not None or row is None else row.get("sequence")
    eid = row.get("event_id") if row is not None else None
    return Finding(
        kind,
        partition,
        seq if isinstance(seq, int) else None,
        eid if isinstance(eid, str) else None,
        message,
        action_id=(row.get("action_id") if row is not None else None),
    )

