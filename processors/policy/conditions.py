"""Compile a rule's ``when`` once: length cap, ``cel.compile``, analysis, instrumentation.

Validation (:mod:`processors.policy.files`) and the engine
(:meth:`~processors.policy.engine.CompiledPolicy.from_record`, which also receives records
that never went through a file, straight from the policies topic) both go through
:func:`compile_condition`, so the engine only ever runs a condition that validation would
accept under the same :class:`~processors.policy.limits.PolicyLimits`.

The order matters: the length cap comes before ``cel.compile`` because cel-rust's parser
overflows its native stack (killing the process) on expressions a few tens of KiB deep;
``cel.compile`` comes before the analysis so that syntax errors carry cel's own message.

Results are cached by (expression, limits): the processor compiles every new policy
version on its decision path, and a new version mostly repeats the previous one's
conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cel

from processors.policy.cel_analysis import Analysis, analyse, instrument
from processors.policy.limits import DEFAULT_LIMITS, PolicyLimits

__all__ = ["Condition", "compile_condition"]


@dataclass(frozen=True)
class Condition:
    """A compiled ``when``: ``error`` says why it is unusable, else ``program`` runs it.

    ``program`` is the *instrumented* source's program (a deadline check in every
    comprehension body, flattened collection fields; see
    :func:`processors.policy.cel_analysis.instrument`); run it on a ``cel.Context`` that
    binds :attr:`bindings` and :data:`~processors.policy.cel_analysis.TICK_FUNCTION`.
    """

    source: str
    error: str | None
    analysis: Analysis | None
    program: Any  # cel.Program, or None when error is set

    @property
    def reads(self) -> frozenset[tuple[str, ...]]:
        """Member paths the condition reads (empty when it is unusable)."""
        return self.analysis.reads if self.analysis is not None else frozenset()

    @property
    def variables(self) -> frozenset[str]:
        """Engine variables (action, actor, sql, now) the condition reads."""
        return self.analysis.variables if self.analysis is not None else frozenset()

    @property
    def bindings(self) -> frozenset[str]:
        """Names the instrumented program reads (see :class:`~processors.policy.cel_analysis.Analysis`)."""
        return self.analysis.bindings if self.analysis is not None else frozenset()

    @property
    def whole(self) -> frozenset[str]:
        """Variables the program reads whole, to be bound with their flattened fields too."""
        return self.analysis.whole if self.analysis is not None else frozenset()

    @property
    def cost(self) -> int:
        """Worst-case cost in units under the limits it was compiled with."""
        return self.analysis.cost if self.analysis is not None else 0


@lru_cache(maxsize=4096)
def compile_condition(expression: str, limits: PolicyLimits = DEFAULT_LIMITS) -> Condition:
    """Compile and check ``expression``; never raises (an unusable one carries ``error``)."""
    if len(expression) > limits.max_when_chars:
        return Condition(
            expression,
            f"is {len(expression):,} characters; a condition may have at most "
            f"{limits.max_when_chars:,}: split it into several rules",
            None,
            None,
        )
    try:
        cel.compile(expression)
    except Exception as exc:  # cel raises ValueError (and may raise others) on bad input
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Condition(expression, f"CEL does not compile: {first}", None, None)
    analysis = analyse(expression, limits)
    if analysis.problems:
        return Condition(expression, "; also: ".join(analysis.problems), analysis, None)
    instrumented = instrument(expression, analysis)
    try:
        program = cel.compile(instrumented)
    except Exception as exc:  # a bug of ours; refuse the rule rather than run it unguarded
        return Condition(expression, f"the policy checker could not instrument it ({exc})", analysis, None)
    return Condition(expression, None, analysis, program)
