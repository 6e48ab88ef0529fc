"""Proof of enforcement: every committed outcome ran under a valid, earlier allow verdict.

Works on decoded payloads: verdict and outcome events are decoded with the schema codec,
verdict signatures checked against the processor keyring (expiry at ``decided_at``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from schemas.codec import get_codec
from schemas.errors import CodecError
from trust.canonical import canonical_bytes
from trust.keys import Keyring
from trust.signatures import verify_record
from trust.verify.findings import Event, Finding, FindingKind

__all__ = ["reconcile_enforcement"]


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


def reconcile_enforcement(events: Iterable[Event], keyring: Keyring) -> list[Finding]:
    """Proof of enforcement: every committed outcome ran under a valid, earlier allow.

    ``keyring`` holds the processor's verdict keys (expiry judged at ``decided_at``).
    """
    codec = get_codec()
    verdicts: dict[str, list[_LedgerVerdict]] = {}
    outcomes: list[tuple[Event, dict[str, Any]]] = []
    findings: list[Finding] = []
    for ev in events:
        kind = ev.get("kind")
        if kind not in ("verdict", "outcome"):
            continue
        name = "Verdict" if kind == "verdict" else "ActionOutcome"
        part, seq, eid = _loc(ev)
        payload = ev.get("payload")
        try:
            if not isinstance(payload, bytes):
                raise CodecError(f"payload is {type(payload).__name__}, not bytes")
            rec = codec.decode_as(name, payload)
        except CodecError as exc:
            findings.append(
                Finding(
                    FindingKind.UNDECODABLE_PAYLOAD,
                    part,
                    seq,
                    eid,
                    f"{kind} event payload is not a {name} record: {exc}",
                )
            )
            continue
        if kind == "outcome":
            outcomes.append((ev, rec))
            continue
        valid = verify_record(rec, "signature", b"", keyring, at_us=rec["decided_at"])
        verdicts.setdefault(rec["action_id"], []).append(_LedgerVerdict(rec, canonical_bytes(rec), valid))
        if not valid:
            findings.append(
                Finding(
                    FindingKind.FORGED_VERDICT,
                    part,
                    seq,
                    eid,
                    f"verdict for action {rec['action_id']!r} in the ledger does not verify "
                    f"against the processor keyring (key_id {rec.get('key_id')!r})",
                    action_id=rec["action_id"],
                )
            )

    for ev, out in outcomes:
        if out["status"] != "committed":
            continue
        findings.extend(_check_outcome(ev, out, verdicts.get(out["action_id"], []), keyring))
    findings.sort(key=Finding.sort_key)
    return findings


def _check_outcome(
    ev: Event, out: dict[str, Any], ledger: list[_LedgerVerdict], keyring: Keyring
) -> list[Finding]:
    part, seq, eid = _loc(ev)
    aid: str = out["action_id"]
    recorded_at: int = out["recorded_at"]
    found: list[Finding] = []

    def add(kind: FindingKind, message: str) -> None:
        found.append(Finding(kind, part, seq, eid, message, action_id=aid))

    allows = [v for v in ledger if v.valid and v.record["decision"] == "allow"]
    if not allows:
        others = sorted({v.record["decision"] if v.valid else "forged" for v in ledger})
        add(
            FindingKind.COMMIT_WITHOUT_ALLOW,
            f"outcome committed action {aid!r} but the ledger holds no validly signed allow "
            f"verdict for it (ledger verdicts: {', '.join(others) or 'none'})",
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

