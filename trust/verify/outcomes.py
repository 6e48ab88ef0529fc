"""Missing outcomes: an allowed action whose outcome never reached the ledger.

Not tampering, and not proof of loss either: an allow verdict says the body *may* run, not
that it did. A body that crashed its process, a Guard killed before it spooled, or an action
that was only checked (``Guard.check``, ``lockgate submit``) all leave an allow without an
outcome. So this pass is opt-in (``verify --outcome-grace``), judged only for verdicts older
than the grace period (a spooled outcome may arrive late), and its finding is its own kind,
``outcome_missing``, named at the verdict's place in the ledger.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.codec import get_codec
from schemas.errors import CodecError
from trust.keys import Keyring
from trust.signatures import verify_record
from trust.verify.findings import Event, Finding, FindingKind, finding_at

__all__ = ["OutcomeRule", "missing_outcomes"]


@dataclass(frozen=True)
class OutcomeRule:
    """An allow decided before ``now_us - grace_us`` should have an outcome by now."""

    grace_us: int
    now_us: int


def missing_outcomes(rows: Iterable[Event], keyring: Keyring, rule: OutcomeRule) -> list[Finding]:
    """An ``outcome_missing`` finding per validly signed, old-enough allow with no outcome event.

    Undecodable or forged verdicts are the enforcement pass's findings, not this one's.
    """
    codec = get_codec()
    allows: dict[str, tuple[Event, int]] = {}
    with_outcome: set[str] = set()
    cutoff = rule.now_us - rule.grace_us
    for ev in rows:
        kind, aid = ev.get("kind"), ev.get("action_id")
        if not isinstance(aid, str):
            continue
        if kind == "outcome":
            with_outcome.add(aid)
            continue
        if kind != "verdict" or aid in allows:
            continue
        payload = ev.get("payload")
        try:
            rec = codec.decode_as("Verdict", payload if isinstance(payload, bytes) else b"")
        except CodecError:
            continue
        decided = rec.get("decided_at")
        if (rec.get("decision") == "allow" and type(decided) is int and decided < cutoff
                and verify_record(rec, "signature", b"", keyring, at_us=decided)):
            allows[aid] = (ev, decided)
    findings: list[Finding] = []
    for aid, (ev, decided) in allows.items():
        if aid in with_outcome:
            continue
        part = ev.get("ledger_partition")
        found = finding_at(
            FindingKind.OUTCOME_MISSING, part if type(part) is int else None, ev,
            f"action {aid!r} was allowed at {decided} and no outcome reached the ledger within the grace "
            f"period of {rule.grace_us // 1_000_000}s: the body may not have run (crash, check only), or its "
            "outcome is still spooled on the Guard's host (`lockgate spool list` there)")
        findings.append(found)
    return findings
