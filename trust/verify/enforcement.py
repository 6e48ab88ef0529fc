"""Proof of enforcement: every committed outcome ran under a valid, earlier allow verdict.

Works on decoded payloads: verdict and outcome events are decoded with the schema codec,
verdict signatures checked against the processor keyring (expiry at ``decided_at``).

Verdicts still in flight
========================

The ledger stage chains an outcome straight from the ``outcomes`` topic, but the action's
verdict through ``audit-intake`` (:mod:`processors.ledger_stage`): a committed outcome can
be in the ledger a moment before its verdict. A run in that instant must not cry
``commit_without_allow`` for an action that is fine a second later — a false tamper alarm
teaches people to ignore the alarm. With a :class:`VerdictRule`, a committed outcome is
*pending* (counted in :class:`PendingVerdicts`, not a finding; a later run judges it) when
all of these hold:

* the ledger holds **no verdict event at all** for its action id — none valid, none forged,
  none undecodable. Any verdict there means the normal judgement applies at once: pending
  never hides a block, a forged verdict, or one that differs from the embedded one;
* the verdict **embedded in the outcome** is a validly signed ``allow`` for the same action,
  decided no later than the outcome was recorded: the outcome itself shows the Guard ran
  the body under an allow, and only the ledger's copy of that verdict is missing. Without
  one (missing, forged, a block) the outcome is a finding at once;
* the outcome **event was chained within the grace**: its ``recorded_at`` (the ledger event's,
  set by the ledger stage when it chained the outcome; not the payload's, which is the
  service's clock and can be hours old for an outcome delivered from a Guard's spool) is at
  or after ``now_us - grace_us``;
* and **not in the future** by more than ``skew_us`` (default :data:`FUTURE_SKEW_US`): an
  event dated ahead of the verifier's clock would otherwise stay young for as long as its
  forger liked; it is a finding at once, and its message says why.

Everything else stays ``commit_without_allow``. Without a rule (the library default) and
with ``grace_us = 0`` the pass is strict: nothing is pending. A ledger exported and verified
later is strict by itself, as every event is older than the grace by then.

Partial ledgers (``verify --since``)
====================================

A window that starts at an anchor can hold an outcome whose verdict was chained before the
anchor. Skipping such outcomes would let a *deleted* verdict pass, so the caller reads the
verdict events of those actions from before the window (:func:`unanswered_actions` names
the actions) and passes them as ``context_verdicts``. A context verdict is judged exactly
as a verdict in the window — it counts for an outcome only if its payload is for the
outcome's action, validly signed, an ``allow``, and decided no later than the outcome was
recorded (else ``verdict_after_commit``), and the outcome's embedded verdict must equal one
of the action's verdicts — but it is outside the window, so it is not chain-checked and a
valid one is not reported. A context verdict that is forged or does not decode *is*
reported (``forged_verdict`` / ``undecodable_payload`` at its own partition and sequence,
the message saying it lies before the window): it is what the store shows for that action,
and a reader looking the action up sees it. An outcome whose action has a verdict in
neither set is ``commit_without_allow``, as on a full ledger.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import get_codec
from schemas.errors import CodecError
from trust.canonical import canonical_bytes
from trust.keys import Keyring
from trust.signatures import verify_record
from trust.verify.decoded import DecodedLedger
from trust.verify.findings import Event, Finding, FindingKind

__all__ = [
    "FUTURE_SKEW_US",
    "PENDING_LISTED",
    "PendingVerdicts",
    "VerdictRule",
    "reconcile_enforcement",
    "unanswered_actions",
]

FUTURE_SKEW_US = 60 * 1_000_000
"""How far ahead of the verifier's clock an outcome event may be dated and still be pending:
the ledger stage's host and the verifier's may disagree by this much. Beyond it the outcome
earns no grace (module docstring); a forger gains at most ``grace + skew`` of silence."""

PENDING_LISTED = 100
"""How many pending action ids a report lists (the count is always whole)."""


@dataclass(frozen=True)
class VerdictRule:
    """How long a committed outcome may wait for its verdict event: outcome events chained
    at or after ``now_us - grace_us`` and at most ``skew_us`` after ``now_us`` are pending
    when the ledger holds no verdict for their action (module docstring)."""

    grace_us: int
    now_us: int
    skew_us: int = FUTURE_SKEW_US

    def young(self, chained_at: int) -> bool:
        return self.grace_us > 0 and self.now_us - self.grace_us <= chained_at <= self.now_us + self.skew_us


@dataclass
class PendingVerdicts:
    """Committed outcomes whose verdict has not reached the ledger yet, within the grace:
    their action ids in ledger order. Not findings; a later run judges them."""

    action_ids: list[str] = field(default_factory=list)


@dataclass
class _LedgerVerdict:
    record: dict[str, Any]
    canonical: bytes
    valid: bool


def _loc(event: Event) -> tuple[int | None, int | None, str | None]:
    part, seq, eid = event.get("ledger_partition"), event.get("sequence"), event.get("event_id")
    return (
        part if type(part) is int else None,
        seq if type(seq) is int else None,
        eid if isinstance(eid, str) else None,
    )


def unanswered_actions(ledger: DecodedLedger) -> list[str]:
    """The action ids of committed outcomes in ``ledger`` with no decodable verdict event there,
    sorted: on a partial ledger, the actions whose verdicts the caller reads from before the
    window (module docstring)."""
    return sorted({o.record["action_id"] for o in ledger.outcomes
                   if o.record["status"] == "committed" and o.record["action_id"] not in ledger.verdicts})


def reconcile_enforcement(
    events: Iterable[Event],
    keyring: Keyring,
    *,
    rule: VerdictRule | None = None,
    pending: PendingVerdicts | None = None,
    context_verdicts: Iterable[Event] = (),
) -> list[Finding]:
    """Proof of enforcement: every committed outcome ran under a valid, earlier allow.

    ``keyring`` holds the processor's verdict keys (expiry judged at ``decided_at``).
    ``rule``, when given, lets a committed outcome wait for a verdict still in flight
    (module docstring); the outcomes that wait are added to ``pending``. Without it, every
    outcome is judged now. ``context_verdicts``, for a partial ledger, are verdict events
    chained before the window, read for the outcomes in it (module docstring); other kinds
    among them are ignored.
    """
    verdicts: dict[str, list[_LedgerVerdict]] = {}
    verdict_events: set[str] = set()
    outcomes: list[tuple[Event, dict[str, Any]]] = []
    findings: list[Finding] = []
    waiting = pending if pending is not None else PendingVerdicts()
    for ev in events:
        kind = ev.get("kind")
        if kind == "verdict":
            findings.extend(_take_verdict(ev, keyring, verdicts, verdict_events, context=False))
        elif kind == "outcome":
            rec, undecodable = _decode(ev, "ActionOutcome", "")
            findings.extend(undecodable)
            if rec is not None:
                outcomes.append((ev, rec))
    for ev in context_verdicts:
        if ev.get("kind") == "verdict":
            findings.extend(_take_verdict(ev, keyring, verdicts, verdict_events, context=True))

    for ev, out in outcomes:
        if out["status"] != "committed":
            continue
        aid = out["action_id"]
        wait = None if aid in verdict_events else rule
        judged = _check_outcome(ev, out, verdicts.get(aid, []), keyring, wait)
        if judged is None:
            waiting.action_ids.append(aid)
        else:
            findings.extend(judged)
    findings.sort(key=Finding.sort_key)
    return findings


_BEFORE_WINDOW = " (chained before the verified window; read for an outcome in it)"


def _decode(ev: Event, name: str, where: str) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The event's payload decoded as ``name``, or an ``undecodable_payload`` finding."""
    part, seq, eid = _loc(ev)
    payload = ev.get("payload")
    try:
        if not isinstance(payload, bytes):
            raise CodecError(f"payload is {type(payload).__name__}, not bytes")
        return get_codec().decode_as(name, payload), []
    except CodecError as exc:
        return None, [Finding(FindingKind.UNDECODABLE_PAYLOAD, part, seq, eid,
                              f"{ev.get('kind')} event payload{where} is not a {name} record: {exc}")]


def _take_verdict(ev: Event, keyring: Keyring, verdicts: dict[str, list[_LedgerVerdict]],
                  verdict_events: set[str], *, context: bool) -> list[Finding]:
    """Index one verdict event under its payload's action id; findings if it does not decode
    or verify. A ``context`` verdict lies before the window: its findings say so."""
    if isinstance(ev.get("action_id"), str):
        verdict_events.add(ev["action_id"])  # decodable or not: a verdict event is there
    where = _BEFORE_WINDOW if context else ""
    rec, found = _decode(ev, "Verdict", where)
    if rec is None:
        return found
    valid = verify_record(rec, "signature", b"", keyring, at_us=rec["decided_at"])
    verdict_events.add(rec["action_id"])
    verdicts.setdefault(rec["action_id"], []).append(_LedgerVerdict(rec, canonical_bytes(rec), valid))
    if valid:
        return []
    part, seq, eid = _loc(ev)
    return [Finding(
        FindingKind.FORGED_VERDICT, part, seq, eid,
        f"verdict for action {rec['action_id']!r} in the ledger{where} does not verify "
        f"against the processor keyring (key_id {rec.get('key_id')!r})",
        action_id=rec["action_id"],
    )]


def _embedded_allow(out: dict[str, Any], keyring: Keyring) -> bool:
    """Whether the outcome embeds a validly signed allow for its own action, decided no later
    than the outcome was recorded (the verdict the Guard ran the body under)."""
    raw = out.get("verdict")
    if not isinstance(raw, bytes):
        return False
    try:
        emb = get_codec().decode_as("Verdict", raw)
    except CodecError:
        return False
    return bool(emb["action_id"] == out["action_id"] and emb["decision"] == "allow"
                and emb["decided_at"] <= out["recorded_at"]
                and verify_record(emb, "signature", b"", keyring, at_us=emb["decided_at"]))


def _no_grace(ev: Event, rule: VerdictRule) -> str:
    """Why an outcome with no ledger verdict and a valid embedded allow is judged now."""
    chained = ev.get("recorded_at")
    if type(chained) is not int:
        return "; its event carries no recorded_at to judge a grace by"
    if chained > rule.now_us + rule.skew_us:
        return (f"; its event claims to be chained at {chained}, {(chained - rule.now_us) // 1_000_000}s after "
                "this run's clock: a future timestamp earns no verdict grace")
    if rule.grace_us <= 0:
        return ""
    return (f"; it was chained at {chained}, more than the verdict grace of "
            f"{rule.grace_us / 1e6:g}s ago, so the verdict is not merely in flight")


def _check_outcome(
    ev: Event, out: dict[str, Any], ledger: list[_LedgerVerdict], keyring: Keyring,
    rule: VerdictRule | None,
) -> list[Finding] | None:
    """The findings about one committed outcome; ``None`` when it is pending (``rule`` is
    only given when the ledger holds no verdict event for the action)."""
    part, seq, eid = _loc(ev)
    aid: str = out["action_id"]
    recorded_at: int = out["recorded_at"]
    found: list[Finding] = []

    def add(kind: FindingKind, message: str) -> None:
        found.append(Finding(kind, part, seq, eid, message, action_id=aid))

    allows = [v for v in ledger if v.valid and v.record["decision"] == "allow"]
    if not allows:
        why = ""
        if rule is not None and _embedded_allow(out, keyring):
            chained = ev.get("recorded_at")
            if type(chained) is int and rule.young(chained):
                return None
            why = _no_grace(ev, rule)
        others = sorted({v.record["decision"] if v.valid else "forged" for v in ledger})
        add(
            FindingKind.COMMIT_WITHOUT_ALLOW,
            f"outcome committed action {aid!r} but the ledger holds no validly signed allow "
            f"verdict for it (ledger verdicts: {', '.join(others) or 'none'}){why}",
        )
    elif all(v.record["decided_at"] > recorded_at for v in allows):
        add(
            FindingKind.VERDICT_AFTER_COMMIT,
            f"the allow verdict for {aid!r} was decided at "
            f"{min(v.record['decided_at'] for v in allows)}, after the commit was recorded "
            f"at {recorded_at}",
        )

    raw = out.get("verdict")
    if raw is None:
        add(
            FindingKind.EMBEDDED_VERDICT_MISSING,
            f"committed outcome for {aid!r} carries no verdict",
        )
        return found
    try:
        emb = get_codec().decode_as("Verdict", raw)
    except CodecError as exc:
        add(FindingKind.EMBEDDED_VERDICT_FORGED, f"embedded verdict is not a Verdict record: {exc}")
        return found
    if emb["action_id"] != aid:
        add(
            FindingKind.VERDICT_FOR_OTHER_ACTION,
            f"outcome for action {aid!r} embeds a verdict for action {emb['action_id']!r}",
        )
        return found
    if not verify_record(emb, "signature", b"", keyring, at_us=emb["decided_at"]):
        add(
            FindingKind.EMBEDDED_VERDICT_FORGED,
            f"the verdict embedded in the outcome for {aid!r} does not verify against the "
            f"processor keyring (key_id {emb.get('key_id')!r})",
        )
        return found
    if ledger and all(v.canonical != canonical_bytes(emb) for v in ledger):
        add(
            FindingKind.EMBEDDED_VERDICT_MISMATCH,
            f"the verdict embedded in the outcome for {aid!r} ({emb['decision']}, decided at "
            f"{emb['decided_at']}) differs from every verdict the ledger holds for that action",
        )
    elif (
        emb["decided_at"] > recorded_at
        and allows
        and not any(f.kind is FindingKind.VERDICT_AFTER_COMMIT for f in found)
    ):
        add(
            FindingKind.VERDICT_AFTER_COMMIT,
            f"the embedded verdict for {aid!r} was decided at {emb['decided_at']}, after the "
            f"commit was recorded at {recorded_at}",
        )
    return found

