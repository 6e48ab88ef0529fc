"""``verify --decisions``: would the recorded policy have produced each recorded verdict?

A verdict's signature proves the processor key signed it, not that the policy decided
it: a leaked processor key can sign an allow for anything, and such a verdict verifies.
This pass re-evaluates every recorded proposal under the policy version its verdict
recorded, with a policy engine the caller passes in (:data:`Reevaluate`; ``trust/`` knows
no engine — the CLI wires in :mod:`processors.policy.reevaluate`), and reports every
verdict that policy would not have produced as ``irreproducible_decision``.

Which policy: the ``policy`` event whose payload hashes to the verdict's
``policy_sha256``; for a v1 verdict (no hash), the ``policy`` event with the verdict's
tenant, policy name and version. Which time: ``now`` is the verdict's ``decided_at``, so
time-dependent conditions evaluate as they did. Which authentication: a verdict decided
by policy was authenticated unless the processor ran with ``require_service_auth`` off;
the proposal is evaluated as authenticated and, if that does not reproduce, as not.

What is compared: ``decision``, ``basis`` and the matched rules (id, effect, mode, and
whether the rule's condition failed), in policy order. Not compared, and counted as
``time_limited``: a verdict where either evaluation hit the per-action evaluation time
limit (CPU time, which differs between the processor and here).

Verdicts not decided by a policy: ``replay``, ``invalid_request``, ``unauthenticated``,
``no_policy``, ``expired`` and ``unknown``, and any basis without a policy name, must be
blocks (an allow on such a basis is ``irreproducible_decision``). A verdict held for review
(decision ``review``) or allowed by break-glass is re-decided like any other (the engine
passed in holds decisions as the decide stage does); a review's final verdict
(``review_*``: decided by reviewers, not the policy) is counted as ``not_policy``, except an
allow by a time-boxed grant (ReviewState ``grant`` = ``granted``, :mod:`trust.grants`): the
policy decided that one too — it held the action for review under the rule whose grant then
allowed it — so it is re-evaluated and must come out ``review`` (basis ``rule``) with the
recorded matched rules; whether the grant covers it is the review pass's ``grant_invalid``. Verdicts whose proposal or
policy the ledger lacks are counted (``no_proposal``, ``no_policy_event``), not reported:
``verify`` without ``--since`` has already named a missing proposal or policy of a v2 verdict as a binding finding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trust.grants import GRANT_USED
from trust.verify.decoded import DecodedLedger, Located, PolicyVersion
from trust.verify.findings import Finding, FindingKind

__all__ = ["DecisionsReport", "Reevaluate", "Reproduced", "recheck_decisions", "reproduced"]

_POLICY_BASES = frozenset({"rule", "default", "evaluation_error", "break_glass"})
_BLOCK_ONLY = frozenset({"replay", "invalid_request", "unauthenticated", "no_policy", "expired", "unknown"})


@dataclass(frozen=True)
class Reproduced:
    """What a policy decides for one proposal: the fields ``verify --decisions`` compares."""

    decision: str
    basis: str
    rules: tuple[tuple[str, str, str, bool], ...]  # (id, effect, mode, condition failed), in policy order
    time_limited: bool = False


Reevaluate = Callable[[Mapping[str, Any], PolicyVersion, int, bool], Reproduced]
"""``(proposal, policy version, now_us, authenticated) -> Reproduced``; may raise (the
policy does not compile here): the verdict is then reported, naming the error."""


@dataclass
class DecisionsReport:
    findings: list[Finding] = field(default_factory=list)
    checked: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def reproduced(decision: str, basis: str, matched_rules: Iterable[Mapping[str, Any]]) -> Reproduced:
    """The compared fields of a decision (recorded, or made again) and its MatchedRule records."""
    matched = list(matched_rules)
    rules = tuple((str(m["id"]), str(m["effect"]), str(m["mode"]), m.get("error") is not None) for m in matched)
    limited = any(_time_limited(m.get("error")) for m in matched)
    return Reproduced(decision, basis, rules, limited)


def _time_limited(error: object) -> bool:
    return isinstance(error, str) and "evaluation time limit" in error


def _policy_for(ledger: DecodedLedger, verdict: Mapping[str, Any],
                by_version: dict[tuple[str, str, int], PolicyVersion]) -> PolicyVersion | None:
    bound = verdict.get("policy_sha256")
    if bound is not None:
        return ledger.policies.get(bytes(bound))
    return by_version.get((verdict["tenant"], verdict["policy_name"], verdict["policy_version"]))


def _describe(r: Reproduced) -> str:
    rules = ", ".join(f"{i} {e}/{m}" + (" (failed)" if f else "") for i, e, m, f in r.rules) or "no rules"
    return f"{r.decision} ({r.basis}; {rules})"


def recheck_decisions(ledger: DecodedLedger, reevaluate: Reevaluate) -> DecisionsReport:
    """Re-evaluate every recorded verdict's proposal (module docstring)."""
    started = time.perf_counter()
    report = DecisionsReport()
    by_version = {(p.record["tenant"], p.record["name"], p.record["version"]): p for p in ledger.policies.values()}
    for aid, verdicts in ledger.verdicts.items():
        proposals = ledger.proposals.get(aid, [])
        for v in verdicts:
            _recheck(ledger, aid, v, proposals, by_version, reevaluate, report)
    report.findings.sort(key=Finding.sort_key)
    report.seconds = time.perf_counter() - started
    return report


def _recheck(ledger: DecodedLedger, aid: str, v: Located, proposals: list[Located],
             by_version: dict[tuple[str, str, int], PolicyVersion], reevaluate: Reevaluate,
             report: DecisionsReport) -> None:
    rec = v.record
    basis = rec["basis"]

    def irreproducible(message: str) -> None:
        report.findings.append(Finding(FindingKind.IRREPRODUCIBLE_DECISION, v.partition, v.sequence, v.event_id,
                                       message, action_id=aid))

    if basis in _BLOCK_ONLY or (basis in _POLICY_BASES and not rec["policy_name"]):
        report.checked += 1
        if rec["decision"] != "block":
            irreproducible(f"verdict for action {aid!r} is {rec['decision']} with basis {basis}"
                           + ("" if rec["policy_name"] else " and no policy") + ", which only ever blocks")
        return
    granted = basis == "review_approved" and (rec.get("review") or {}).get("grant") == GRANT_USED
    if basis not in _POLICY_BASES and not granted:
        report.skip("not_policy")
        return
    if not proposals:
        report.skip("no_proposal")
        return
    policy = _policy_for(ledger, rec, by_version)
    if policy is None:
        report.skip("no_policy_event")
        return
    # allowed by a grant: the policy itself decided review; the grant is the review pass's to check
    was = reproduced("review", "rule", rec["matched_rules"]) if granted else reproduced(
        rec["decision"], rec["basis"], rec["matched_rules"])
    proposal = proposals[0].record
    try:
        again = reevaluate(proposal, policy, rec["decided_at"], True)
        if again != was and not again.time_limited and not was.time_limited:
            other = reevaluate(proposal, policy, rec["decided_at"], False)
            again = other if other == was or other.time_limited else again
    except Exception as exc:  # the recorded policy does not compile or run here: say so
        irreproducible(f"verdict for action {aid!r} could not be re-evaluated under policy "
                       f"{rec['policy_name']!r} v{rec['policy_version']}: {type(exc).__name__}: {exc}")
        return
    if again.time_limited or was.time_limited:
        report.skip("time_limited")
        return
    report.checked += 1
    if again != was:
        irreproducible(f"verdict for action {aid!r} says {_describe(was)}, but policy {rec['policy_name']!r} "
                       f"v{rec['policy_version']} decides {_describe(again)} for the recorded proposal at its "
                       f"decided_at ({rec['decided_at']})")
