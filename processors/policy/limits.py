"""The limits that keep one tenant's policy from stalling every tenant's decisions.

A processor decides the actions of every tenant on its partitions one at a time, and a
CEL program runs in native code that holds the GIL until it returns: a rule that takes a
second takes that second from everyone (measured before these limits: one tenant's
``200³`` comprehension held every tenant's decision for 4.4 s, most of a Guard's 5 s
timeout). Nothing can interrupt native code from outside, so the limits work at four
points, each fail-closed:

1. **Size, before anything is parsed.** A policy file over :attr:`PolicyLimits.max_policy_bytes`
   or with more than :attr:`~PolicyLimits.max_rules` rules, or a ``when`` longer than
   :attr:`~PolicyLimits.max_when_chars`, is refused (``PolicyTooLarge`` / ``PolicyInvalid``)
   before YAML or CEL sees it: parsing itself costs memory and time (a 1 MiB policy took
   444 MB of RSS to validate), cel-rust's parser overflows its stack on expressions a few
   tens of KiB deep, and the policies topic refuses records over ~1 MB.
2. **Input bounds, before evaluation.** The engine measures what it binds into CEL: list
   and map entries (:attr:`~PolicyLimits.max_items`), identifier strings (action type,
   resource, service, tenant, actor id, roles, SQL kinds and tables:
   :attr:`~PolicyLimits.max_name_chars`), attribute values
   (:attr:`~PolicyLimits.max_value_chars`) and the SQL text parsed into ``sql``
   (:attr:`~PolicyLimits.max_sql_chars`; sqlglot spends milliseconds per statement).
   A rule that reads a value over its bound is not run: it is a failed condition (its
   policy's ``on_error``), named in the verdict. Rules that do not read it run normally.
3. **A static cost budget per rule, at validate and at compile.** Within those bounds the
   worst case of an expression is computable: :mod:`processors.policy.cel_analysis`
   estimates it in cost units (comprehensions multiply by their range's bound, ``map`` and
   ``filter`` are quadratic in cel-rust, string work scales with length) and a rule over
   :attr:`~PolicyLimits.rule_cost_budget` is refused with its file:line.
4. **A runtime limit per evaluation.** Once an action's rules have used
   :attr:`~PolicyLimits.evaluation_time_limit_s` of CPU time, the check the engine adds
   to every comprehension step raises, which aborts the native evaluation, and the
   engine runs no further rule. A rule that runs past it, and every rule not yet run, is
   a failed condition under ``on_error``; the verdict's reason names them. CPU time, not
   wall time, so a busy host does not turn cheap rules into blocks. This catches what the
   estimate misses; it is not the first line, because any time limit makes a decision
   depend on the machine, and the budget keeps validated rules far below it.

The defaults are :data:`DEFAULT_LIMITS`; ``docs/benchmarks.md`` has the cost-unit
calibration and the measured stall.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "PolicyLimits"]


@dataclass(frozen=True, slots=True)
class PolicyLimits:
    """Every bound the policy language enforces, in one frozen object (see the module doc).

    The static estimate is computed *under* the input bounds, so the two must travel
    together: a policy validated with one ``PolicyLimits`` is only guaranteed cheap when
    evaluated with the same one.
    """

    #: Policy source size; larger files are refused before YAML parsing.
    max_policy_bytes: int = 256 * 1024
    #: Rules per policy (twice the largest policy benchmarked).
    max_rules: int = 2000
    #: Characters of one ``when`` expression; checked before ``cel.compile``.
    max_when_chars: int = 8192
    #: Worst-case cost units of one rule's ``when`` (see cel_analysis for the unit).
    rule_cost_budget: int = 100_000
    #: CPU seconds (of the processor's thread) one action's evaluation, all its candidate
    #: rules, may use.
    evaluation_time_limit_s: float = 0.05
    #: Entries of any list or map bound into CEL (actor.roles, attributes, sql.tables ...).
    max_items: int = 1000
    #: Characters of an identifier-like string (type, resource, service, tenant, actor.id,
    #: each role, each attribute key, each SQL kind and table name).
    max_name_chars: int = 1024
    #: Characters of one attribute value (action.attributes.*, actor.attributes.*).
    max_value_chars: int = 64 * 1024
    #: Characters of ``attributes.sql`` the engine parses into the ``sql`` variable.
    max_sql_chars: int = 8 * 1024


#: The limits every validation and evaluation uses unless told otherwise.
DEFAULT_LIMITS = PolicyLimits()
