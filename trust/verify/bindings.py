"""Proposal → verdict → outcome by hash, and one decision per action id.

Schema set v2 binds each decision's records to each other (:mod:`trust.bindings`): a
Verdict commits to the proposal it decided (``proposal_sha256``) and the policy version it
applied (``policy_sha256``), an ActionOutcome to the verdict it ran under
(``verdict_sha256``). Ids alone pair records that an attacker holding a processor key
could re-pair; these hashes cannot be re-paired without breaking a signature. This pass
recomputes every binding from the ledger's own payloads (:mod:`trust.verify.decoded`).

Decision table (each finding names the action id and the record it is about):

=================================================================  ===========================
a v2 verdict (``signed_schema`` 2) with a null ``proposal_sha256``   ``unbound_record``
while the ledger holds its proposal, or that allows
a v2 verdict that applied a policy (``policy_name`` set) with a     ``unbound_record``
null ``policy_sha256``
a v2 outcome with a null ``verdict_sha256``                          ``unbound_record``
``proposal_sha256`` differs from the hash of the ledger's proposal  ``verdict_proposal_mismatch``
for that action id (a ``replay`` verdict: of a proposal refused as
a replay); or an allow whose proposal the ledger lacks
``policy_sha256`` names no ``policy`` event; or that policy's        ``verdict_policy_mismatch``
tenant, name or version differ from the verdict's; or it was
published after the verdict was decided (beyond
:data:`CLOCK_SKEW_US`)
``verdict_sha256`` differs from the hash of the verdict embedded in  ``outcome_verdict_mismatch``
the outcome, or from every ledger verdict for that action
more than one proposal (``action`` event) for one action id          ``duplicate_proposal``
more than one final (allow or block) verdict for one action id,     ``duplicate_decision``
not counting ``replay`` blocks and ``invalid_request`` blocks (a
request that could not be read decides no action); the same verdict
bytes chained twice count once
=================================================================  ===========================

Records signed before v2 (``signed_schema`` 1, null hashes) stay verifiable by id as
before; they are counted as *unbound* (:class:`BindingStats`), informationally, not
reported. A null binding on a v2 record is a finding: its signer signed
``signed_schema = 2``, so it cannot have been downgraded.

Partial ledgers: with ``complete=False`` (``verify --since``) a proposal or policy event
before the window may be missing, so absence is not reported; a mismatch still is.

An outcome whose action has no verdict in the ledger is not this pass's finding: only a
``verdict_sha256`` that differs from the verdicts the ledger does hold is. A verdict still
on its way through ``audit-intake`` is the enforcement pass's to judge, with its grace
(:mod:`trust.verify.enforcement`), so both passes agree that such an outcome is pending.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.codec import get_codec
from schemas.errors import CodecError
from trust.bindings import record_sha256
from trust.verify.decoded import DecodedLedger, Located
from trust.verify.findings import Finding, FindingKind

__all__ = ["CLOCK_SKEW_US", "BindingStats", "check_bindings"]

CLOCK_SKEW_US = 5 * 60 * 1_000_000
"""How much later than a verdict's ``decided_at`` its policy's ``published_at`` may read
(the policy is published on one host, applied on another)."""

_FINAL = frozenset({"allow", "block"})
_NOT_DECISIONS = frozenset({"replay", "invalid_request"})


@dataclass
class BindingStats:
    """What the pass looked at: bound (v2) and unbound (v1) verdicts and outcomes."""

    bound_verdicts: int = 0
    unbound_verdicts: int = 0
    bound_outcomes: int = 0
    unbound_outcomes: int = 0


def _hex(value: object) -> str:
    return bytes(value).hex() if isinstance(value, bytes | bytearray) else repr(value)


def _finding(kind: FindingKind, loc: Located, aid: str, message: str) -> Finding:
    return Finding(kind, loc.partition, loc.sequence, loc.event_id, message, action_id=aid)


def check_bindings(ledger: DecodedLedger, *, complete: bool = True,
                   stats: BindingStats | None = None) -> list[Finding]:
    """Every binding and the one-decision rule (module docstring); ``stats`` is filled in."""
    counts = stats if stats is not None else BindingStats()
    findings: list[Finding] = []
    for aid, proposals in ledger.proposals.items():
        for extra in proposals[1:]:
            findings.append(_finding(
                FindingKind.DUPLICATE_PROPOSAL, extra, aid,
                f"action {aid!r} has {len(proposals)} proposals in the ledger (this one and "
                f"partition {proposals[0].partition} sequence {proposals[0].sequence}); one action id "
                "gets one proposal, a repeat must be refused as a replay"))
    for aid, verdicts in ledger.verdicts.items():
        # One verdict chained twice under two event ids (the at-least-once ledger before the
        # exactly-once stage) is one decision: distinct payloads count.
        distinct = {bytes(v.event["payload"]): v for v in reversed(verdicts)}
        decisions = sorted((v for v in distinct.values()
                            if v.record["decision"] in _FINAL and v.record["basis"] not in _NOT_DECISIONS),
                           key=lambda v: v.order)
        for extra in decisions[1:]:
            first = decisions[0]
            findings.append(_finding(
                FindingKind.DUPLICATE_DECISION, extra, aid,
                f"action {aid!r} was decided {len(decisions)} times: this {extra.record['decision']} "
                f"({extra.record['basis']}) after the {first.record['decision']} at partition "
                f"{first.partition} sequence {first.sequence}; a second proposal for one action id "
                "must get a replay block, not a decision"))
        for v in verdicts:
            if v.record.get("signed_schema", 1) < 2:
                counts.unbound_verdicts += 1
                continue
            counts.bound_verdicts += 1
            findings.extend(_check_verdict(ledger, aid, v, complete))
    for out in ledger.outcomes:
        if out.record.get("signed_schema", 1) < 2:
            counts.unbound_outcomes += 1
            continue
        counts.bound_outcomes += 1
        findings.extend(_check_outcome(ledger, out))
    findings.sort(key=Finding.sort_key)
    return findings


def _check_verdict(ledger: DecodedLedger, aid: str, v: Located, complete: bool) -> list[Finding]:
    rec = v.record
    found: list[Finding] = []
    proposals = ledger.proposals.get(aid, [])
    replay = rec["basis"] == "replay"
    candidates = proposals + ledger.replays.get(aid, []) if replay else proposals
    bound = rec.get("proposal_sha256")
    if bound is None:
        if proposals or rec["decision"] == "allow":
            found.append(_finding(
                FindingKind.UNBOUND_RECORD, v, aid,
                f"verdict ({rec['decision']}, {rec['basis']}) for action {aid!r} is signed as schema v2 but "
                "commits to no proposal (proposal_sha256 is null)"))
    elif candidates:
        hashes = [ledger.sha256(p) for p in candidates]
        if bytes(bound) not in hashes:
            found.append(_finding(
                FindingKind.VERDICT_PROPOSAL_MISMATCH, v, aid,
                f"verdict ({rec['decision']}, {rec['basis']}) for action {aid!r} commits to proposal "
                f"{_hex(bound)[:16]}…, but the ledger's proposal for that id hashes to "
                f"{', '.join(h.hex()[:16] + '…' for h in hashes)}: it was made for another proposal "
                "under the same id"))
    elif complete and rec["decision"] == "allow":
        found.append(_finding(
            FindingKind.VERDICT_PROPOSAL_MISMATCH, v, aid,
            f"allow verdict for action {aid!r} commits to proposal {_hex(bound)[:16]}…, but the ledger "
            "holds no proposal for that id"))
    if rec["policy_name"]:
        found.extend(_check_policy(ledger, aid, v, complete))
    return found


def _check_policy(ledger: DecodedLedger, aid: str, v: Located, complete: bool) -> list[Finding]:
    rec = v.record
    bound = rec.get("policy_sha256")
    applied = f"policy {rec['policy_name']!r} v{rec['policy_version']}"
    if bound is None:
        return [_finding(FindingKind.UNBOUND_RECORD, v, aid,
                         f"verdict for action {aid!r} applied {applied} but commits to no policy version "
                         "(policy_sha256 is null)")]
    policy = ledger.policies.get(bytes(bound))
    if policy is None:
        if not complete:
            return []
        return [_finding(FindingKind.VERDICT_POLICY_MISMATCH, v, aid,
                         f"verdict for action {aid!r} says it applied {applied} with hash {_hex(bound)[:16]}…, "
                         "but no policy event in the ledger has that hash")]
    pol = policy.record
    problems = []
    if (pol["tenant"], pol["name"], pol["version"]) != (rec["tenant"], rec["policy_name"], rec["policy_version"]):
        problems.append(f"the policy event with that hash is {pol['tenant']}/{pol['name']} v{pol['version']}, "
                        f"the verdict says {rec['tenant']}/{rec['policy_name']} v{rec['policy_version']}")
    if pol["published_at"] > rec["decided_at"] + CLOCK_SKEW_US:
        problems.append(f"that policy was published at {pol['published_at']}, after the verdict was decided "
                        f"at {rec['decided_at']}")
    return [_finding(FindingKind.VERDICT_POLICY_MISMATCH, v, aid, f"verdict for action {aid!r}: {p}")
            for p in problems]


def _check_outcome(ledger: DecodedLedger, out: Located) -> list[Finding]:
    rec = out.record
    aid = rec["action_id"]
    bound = rec.get("verdict_sha256")
    if bound is None:
        return [_finding(FindingKind.UNBOUND_RECORD, out, aid,
                         f"outcome ({rec['status']}) for action {aid!r} is signed as schema v2 but commits to "
                         "no verdict (verdict_sha256 is null)")]
    bound = bytes(bound)
    if rec.get("verdict") is not None:
        try:
            embedded = record_sha256(get_codec().decode_as("Verdict", rec["verdict"]))
        except CodecError:
            embedded = None  # the enforcement pass names an undecodable embedded verdict
        if embedded is not None and embedded != bound:
            return [_finding(FindingKind.OUTCOME_VERDICT_MISMATCH, out, aid,
                             f"outcome for action {aid!r} commits to verdict {bound.hex()[:16]}…, but the verdict "
                             f"it embeds hashes to {embedded.hex()[:16]}…")]
    verdicts = ledger.verdicts.get(aid, [])
    if verdicts and all(ledger.sha256(v) != bound for v in verdicts):
        return [_finding(FindingKind.OUTCOME_VERDICT_MISMATCH, out, aid,
                         f"outcome for action {aid!r} commits to verdict {bound.hex()[:16]}…, which is none of "
                         f"the {len(verdicts)} verdict(s) the ledger holds for that action")]
    return []
