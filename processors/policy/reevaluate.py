"""The policy engine as ``verify --decisions`` needs it: a recorded proposal, a recorded
policy version, the verdict's time → what that policy decides.

:class:`Reevaluator` is the :data:`trust.verify.decisions.Reevaluate` the CLI passes to
:func:`trust.verify.decisions.recheck_decisions` (``trust/`` may not import the engine).
It compiles each policy version once, from the PolicySet record of its ledger ``policy``
event, with the same :class:`~processors.policy.engine.CompiledPolicy` the processor uses,
and holds the decision for review or break-glass exactly as the decide stage does
(:func:`processors.reviews.requests.hold_for_review`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processors.policy.engine import CompiledPolicy
from processors.reviews.requests import hold_for_review
from trust.verify.decisions import Reproduced, reproduced
from trust.verify.decoded import PolicyVersion

__all__ = ["Reevaluator"]


class Reevaluator:
    """Decides recorded proposals under recorded policy versions (compiled once each)."""

    def __init__(self) -> None:
        self._compiled: dict[bytes, CompiledPolicy] = {}

    def __call__(self, proposal: Mapping[str, Any], policy: PolicyVersion, now_us: int,
                 authenticated: bool) -> Reproduced:
        compiled = self._compiled.get(policy.sha256)
        if compiled is None:
            compiled = CompiledPolicy.from_record(policy.record, sha256=policy.sha256)
            self._compiled[policy.sha256] = compiled
        decision = compiled.evaluate(proposal, authenticated=authenticated, now_us=now_us)
        # What the decide stage signs: the policy's decision as review and break-glass hold it.
        held = hold_for_review(dict(proposal), decision, now_us).decision
        return reproduced(held.decision, held.basis, held.matched_rules)
