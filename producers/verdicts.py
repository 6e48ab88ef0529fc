"""Typed views of verdicts as the SDK hands them to callers, and their validation.

A :class:`Verdict` exists only after its signature verified against the processor's
public key and it was matched to the request's action id and, given the proposal's hash,
to the exact proposal sent (``proposal_sha256``); :func:`accept_verdict` is the one place
that decides that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from producers.errors import VerdictMisbound, VerdictRejected
from schemas.codec import get_codec
from schemas.errors import CodecError
from trust.bindings import record_sha256
from trust.keys import Keyring, PublicKey
from trust.signatures import verify_record

__all__ = ["MatchedRule", "Verdict", "accept_verdict"]


@dataclass(frozen=True)
class MatchedRule:
    """A rule that applied: ``mode`` "shadow" rules are reported but never block."""

    id: str
    effect: Literal["allow", "block", "review"]
    mode: Literal["enforce", "shadow"]
    message: str
    error: str | None


@dataclass(frozen=True)
class Verdict:
    """A verified decision on one action."""

    action_id: str
    decision: Literal["allow", "block", "review"]
    basis: str
    matched_rules: tuple[MatchedRule, ...]
    policy_name: str
    policy_version: int
    reason: str
    decided_at_us: int
    eval_latency_us: int
    processor_id: str
    key_id: str
    raw: bytes
    sha256: bytes = b""
    """SHA-256 of the verdict's signed fields (:func:`trust.bindings.record_sha256`): what
    the outcome commits to as ``verdict_sha256``."""
    review: dict[str, Any] | None = None  # the ReviewState: pending (decision review) or final

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    @property
    def pending_review(self) -> bool:
        """The action waits for reviewers (decision ``review``); a final verdict follows."""
        return self.decision == "review"

    @property
    def review_id(self) -> str | None:
        return str(self.review["review_id"]) if self.review is not None else None

    @property
    def enforced_rules(self) -> tuple[MatchedRule, ...]:
        return tuple(r for r in self.matched_rules if r.mode == "enforce")

    @property
    def shadow_rules(self) -> tuple[MatchedRule, ...]:
        return tuple(r for r in self.matched_rules if r.mode == "shadow")

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "decision": self.decision,
            "basis": self.basis,
            "matched_rules": [
                {"id": r.id, "effect": r.effect, "mode": r.mode, "message": r.message, "error": r.error}
                for r in self.matched_rules
            ],
            "reason": self.reason,
            "policy_name": self.policy_name,
            "policy_version": self.policy_version,
            "decided_at_us": self.decided_at_us,
            "eval_latency_us": self.eval_latency_us,
            "processor_id": self.processor_id,
            "key_id": self.key_id,
            "review": None if self.review is None else {
                k: v for k, v in self.review.items() if k != "approvals"} | {
                "approvals": len(self.review.get("approvals") or [])},
        }


def accept_verdict(raw: bytes, action_id: str, keys: PublicKey | Keyring,
                   proposal_sha256: bytes | None = None) -> Verdict:
    """Decode, verify and match a verdict, or raise :class:`VerdictRejected`.

    With ``proposal_sha256`` (:func:`trust.bindings.record_sha256` of the proposal as
    sent, decoded), the verdict must commit to exactly that proposal, else
    :class:`VerdictMisbound`; a block that commits to none (a request the processor could
    not read) is still a block.
    """
    try:
        rec = get_codec().decode_as("Verdict", raw)
    except CodecError as exc:
        raise VerdictRejected(f"verdict for action {action_id} is not a valid Verdict record: {exc}") from exc
    if not rec.get("signature"):
        raise VerdictRejected(f"verdict for action {action_id} is unsigned; refusing it (fail-closed)")
    if not verify_record(rec, "signature", b"", keys):
        raise VerdictRejected(
            f"verdict for action {action_id} has a signature that does not verify with the "
            f"processor key (key id {rec.get('key_id')!r}); it may be forged — check "
            "LOCKGATE_VERDICT_PUBLIC_KEY points at the processor's public key"
        )
    if rec["action_id"] != action_id:
        raise VerdictRejected(
            f"verdict names action {rec['action_id']}, but was the reply to action {action_id}"
        )
    if proposal_sha256 is not None:
        _check_binding(rec, proposal_sha256)
    return Verdict(
        action_id=rec["action_id"],
        decision=rec["decision"],
        basis=rec["basis"],
        matched_rules=tuple(
            MatchedRule(m["id"], m["effect"], m["mode"], m.get("message", ""), m.get("error"))
            for m in rec["matched_rules"]
        ),
        policy_name=rec["policy_name"],
        policy_version=rec["policy_version"],
        reason=rec["reason"],
        decided_at_us=rec["decided_at"],
        eval_latency_us=rec["eval_latency_us"],
        processor_id=rec["processor_id"],
        key_id=rec["key_id"],
        raw=bytes(raw),
        sha256=record_sha256(rec),
        review=rec.get("review"),
    )


def _check_binding(rec: dict[str, Any], expected: bytes) -> None:
    bound = rec.get("proposal_sha256")
    if bound is None and rec["decision"] != "allow":
        return
    if bound != expected:
        what = "commits to no proposal" if bound is None else f"commits to proposal {bytes(bound).hex()[:16]}…"
        raise VerdictMisbound(
            f"verdict for action {rec['action_id']} {what}, not to the one this Guard sent "
            f"({expected.hex()[:16]}…); refusing it (fail-closed): a verdict made for another proposal "
            "under this action id means a replay or a misused processor key — investigate with "
            "`lockgate verify`")
