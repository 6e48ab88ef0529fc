"""Errors of the processors room.

::

    lockgate.kernel.errors.LockgateError
    ├── PolicyError                  anything wrong with a policy or what it evaluates
    │   ├── PolicyInvalid            a policy file failed validation (every problem, file:line)
    │   │   ├── PolicyTooLarge       over the size or rule-count limit: refused before parsing
    │   │   └── PolicyCasesInvalid   a ``policy test`` cases file failed validation
    │   └── SqlUnparseable           ``attributes.sql`` is not SQL that sqlglot can parse
    └── StageError                   a stage cannot process a record, or cannot keep its guarantees
        ├── NullRecord               a record without a value (a tombstone) where one is needed
        └── LedgerStageFailed        the ledger stage stopped: fenced by another worker, or broken

Every message says what went wrong and what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lockgate.kernel.errors import LockgateError

__all__ = [
    "LedgerStageFailed",
    "NullRecord",
    "PolicyCasesInvalid",
    "PolicyError",
    "PolicyInvalid",
    "PolicyProblem",
    "PolicyTooLarge",
    "SqlUnparseable",
    "StageError",
]


class PolicyError(LockgateError):
    """Base class of policy-language errors (loading, compiling, evaluating facts)."""


@dataclass(frozen=True)
class PolicyProblem:
    """One validation problem, located at the YAML node that caused it.

    ``line`` is 1-based; ``rule_id`` is the id of the rule the node belongs to, or ``None``
    for policy-level problems (and for rules whose id is itself missing or invalid).
    """

    file: str
    line: int
    rule_id: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class PolicyInvalid(PolicyError):
    """A policy file failed validation; ``problems`` lists every problem found, in file order.

    Validation does not stop at the first problem, so one edit-and-retry cycle can fix all of
    them.
    """

    what = "policy file"

    def __init__(self, problems: Sequence[PolicyProblem]) -> None:
        self.problems: list[PolicyProblem] = sorted(problems, key=lambda p: (p.file, p.line))
        files = sorted({p.file for p in self.problems}) or ["<unknown>"]
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"{self.what} {', '.join(files)} is invalid ({len(self.problems)} problem(s)); "
            f"fix each of these and load it again:\n{lines}"
        )


class PolicyTooLarge(PolicyInvalid):
    """A policy is over the size or rule-count limit (``processors.policy.limits``).

    Raised before the file is parsed (or, for the rule count, before any rule is
    compiled), so an oversized policy costs neither memory nor time and is never
    published. One problem, located at ``file:line``, says the limit and what to do.
    """

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__([PolicyProblem(file, line, None, message)])


class PolicyCasesInvalid(PolicyInvalid):
    """A ``policy test`` cases file failed validation (same shape as :class:`PolicyInvalid`)."""

    what = "policy cases file"


class SqlUnparseable(PolicyError):
    """``attributes.sql`` could not be parsed as SQL by any of the dialects we try.

    The policy engine turns this into an evaluation error for every rule that reads the
    ``sql`` variable, so those rules follow the policy's ``on_error``.
    """

    def __init__(self, text: str, detail: str) -> None:
        self.text = text
        self.detail = detail
        excerpt = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(
            f"attributes.sql is not parseable SQL ({detail}): {excerpt!r}; send the exact "
            "statement text the service will run, without templating placeholders"
        )


class StageError(LockgateError):
    """A processing stage cannot process a record, or cannot keep its guarantees."""


class NullRecord(StageError):
    """A record arrived without a value (a tombstone, or a producer bug).

    Nothing can be decided or recorded from it; the stage dead-letters it and puts the
    refusal on the ledger, so the record is accounted for.
    """

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        super().__init__(
            f"record {topic}[{partition}]@{offset} has no value (a tombstone); only the SDK may "
            "write to this topic, and it never writes empty records — find the producer that did"
        )


class LedgerStageFailed(StageError):
    """The ledger stage stopped and the worker must restart to resume it.

    Raised for a fenced transactional producer (another worker runs with the same
    ``LOCKGATE_PROCESSOR_ID``) and for other fatal Kafka errors.
    """
