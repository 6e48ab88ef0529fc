"""Evaluate a ProposedAction against a compiled PolicySet: the pure core of the verdict agent.

:meth:`CompiledPolicy.from_record` turns a PolicySet record (schemas/PolicySet.avsc) into
an evaluator once per policy version; :meth:`CompiledPolicy.evaluate` then decides one
action. No Kafka, no I/O: the caller passes ``authenticated`` and ``now_us``; the only
clocks are the evaluation time limit's, and they are injectable.

Decision semantics (in this order):

1. An **enforce** rule that matched with effect ``block`` => ``block``, basis ``rule``.
2. Otherwise an enforce ``block`` that came from a rule whose condition *failed* (effect =
   the policy's ``on_error``) => ``block``, basis ``evaluation_error``; the reason names the
   rule and the error, so "a rule broke" is never confused with "a rule said no".
3. Otherwise an enforce rule that matched with effect ``review`` => ``review``, basis
   ``rule``: the action waits for approvals. The first such rule in policy order sets the
   requirement (``Decision.review``: its id and its ReviewRule); a review rule's failed
   condition follows ``on_error`` like any other (it never asks for a review).
4. Otherwise an enforce rule that matched with effect ``allow`` => ``allow``, basis ``rule``
   (basis ``evaluation_error`` if every such allow came from a failed condition under
   ``on_error: allow``).
5. Otherwise the policy's ``default``, basis ``default``.

**Shadow** rules are evaluated the same way and reported in ``matched_rules`` (with
``mode: shadow``) but never change the decision. A rule *matches* when its ``match``
globs accept the action's type, resource and service and its ``when`` returns ``true``;
a ``when`` that raises (missing key, type error, unknown function) or returns a non-bool is
a failed condition, reported as a MatchedRule with ``error`` set.

**Unparseable ``attributes.sql``**: every candidate rule whose ``when`` reads the ``sql``
variable is a failed condition (error names the parse problem) and so follows
``on_error``; rules that do not read ``sql`` evaluate normally. Binding an empty ``sql``
instead would let ``sql.kind == "DELETE"`` quietly come out false for SQL we could not
read, which is the fail-open outcome this product exists to prevent. SQL longer than
``max_sql_chars`` is treated the same way, unparsed.

**Tenant isolation** (:mod:`processors.policy.limits`): one evaluation may not hold the
processor, and with it every other tenant's decisions, for long. Three checks, each a
failed condition under ``on_error`` whose error the verdict's reason shows:

* *input bounds*: a rule that reads a value over its bound (a list with more than
  ``max_items`` entries, an over-long string) is not run, so the static cost budget its
  condition passed holds; rules that do not read that value run normally;
* *time limit*: once the candidate rules have used ``evaluation_time_limit_s`` of CPU
  time, the deadline check in every comprehension body raises, which stops the rule
  inside native CEL (error ``stopped: exceeded the evaluation time limit``), and every
  rule not yet run is ``not evaluated``; a rule without comprehensions cannot be stopped
  midway, but its cost is bounded by the budget, and the rules after it are not run.
  CPU time of the processor's thread, not wall time, so that a processor descheduled on
  a busy host does not turn a cheap rule into a block (measured: a 50 ms wall-clock
  limit fired on the example policy at a load average of 10). The check reads the cheap
  wall clock at every step, and the CPU clock (a system call) only once that passes;
* a policy whose conditions fail the static checks is refused whole at compile time
  (:class:`~processors.errors.PolicyInvalid`), exactly as validation refuses it.

CEL variables (one ``cel.Context`` per action, reused across its candidate rules: building
it costs tens of µs, executing a program on it under 1 µs; only variables some candidate
reads are bound, and ``attributes.sql`` is parsed only if a candidate reads ``sql``):

``action``  ``{type, resource, service, tenant, attributes, authenticated}``
``actor``   ``{id, roles, attributes}``
``sql``     :func:`processors.policy.sql_facts.sql_facts` of ``attributes.sql`` plus
            ``present: true`` and ``parsed``; when there is no string ``attributes.sql``,
            ``{kind: "", kinds: [], statements: 0, tables: [], has_where: false,
            has_limit: false, present: false, parsed: false}``
``now``     the caller's ``now_us`` as a UTC timestamp

Rule selection uses an index built at compile time, not a scan: exact action types map to
their rules in a dict, type globs are a short list tried per distinct type (memoised), and
only those candidates have their resource/service globs checked and their CEL executed.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import cel

from processors.errors import PolicyInvalid, PolicyProblem, SqlUnparseable
from processors.policy.cel_analysis import FLATTENED, TICK_FUNCTION
from processors.policy.conditions import compile_condition
from processors.policy.files import EFFECTS, MODES, RULE_EFFECTS
from processors.policy.limits import DEFAULT_LIMITS, PolicyLimits
from processors.policy.sql_facts import empty_sql_facts, sql_facts

__all__ = ["CompiledPolicy", "Decision", "no_policy_decision"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GLOB_CHARS = frozenset("*?[")
_MAX_ERROR_CHARS = 240
_TYPE_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of evaluating one action; the policy-derived fields of a Verdict.

    ``decision`` is ``"allow"`` or ``"block"``; ``basis`` one of the Verdict ``Basis``
    symbols; ``matched_rules`` MatchedRule records (schemas/MatchedRule.avsc) in policy
    order, enforce and shadow alike (treat the list as read-only); ``reason`` is for
    humans and names the deciding rule ids and their messages.
    """

    decision: str
    basis: str
    matched_rules: list[dict[str, Any]]
    reason: str
    policy_name: str
    policy_version: int
    policy_sha256: bytes | None = None
    review: tuple[str, dict[str, Any]] | None = None  # (rule id, ReviewRule) for decision review
    break_glass_roles: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        """True only for an allow decision."""
        return self.decision == "allow"

    def verdict_fields(self) -> dict[str, Any]:
        """The Verdict fields this decision supplies, ready to merge into a Verdict record."""
        return {
            "decision": self.decision,
            "basis": self.basis,
            "matched_rules": [dict(m) for m in self.matched_rules],
            "policy_name": self.policy_name,
            "policy_version": self.policy_version,
            "policy_sha256": self.policy_sha256,
            "reason": self.reason,
        }


def no_policy_decision(tenant: str) -> Decision:
    """The fail-closed decision when no policy is loaded for ``tenant``: block, basis no_policy."""
    return Decision(
        decision="block",
        basis="no_policy",
        matched_rules=[],
        reason=(
            f"no policy is loaded for tenant {tenant!r}, so every action is blocked "
            "(fail-closed); publish a policy set for this tenant to the policies topic"
        ),
        policy_name="",
        policy_version=0,
    )


class _Globs:
    """A set of glob patterns compiled into one regex (None = matches anything)."""

    __slots__ = ("_regex",)

    def __init__(self, patterns: Sequence[str]) -> None:
        self._regex = (
            re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)) if patterns else None
        )

    def accepts(self, value: str) -> bool:
        return self._regex is None or self._regex.match(value) is not None


@dataclass(frozen=True, slots=True)
class _Rule:
    position: int
    id: str
    effect: str
    mode: str
    message: str
    review: dict[str, Any] | None
    program: Any  # cel.Program, instrumented with the deadline check
    variables: frozenset[str]  # which of action/actor/sql/now the condition reads
    reads: frozenset[tuple[str, ...]]  # member paths it reads, for the input bounds
    bindings: frozenset[str]  # names the instrumented program reads (cel_analysis.Analysis)
    whole: frozenset[str]  # variables it reads whole (bound with their flattened fields)
    reads_sql: bool
    cost: int  # worst-case cost units (cel_analysis)
    loops: bool  # has comprehensions, so calls the deadline check
    resources: _Globs
    services: _Globs


class _DeadlineExceeded(Exception):
    """Raised by the deadline check inside a comprehension body to stop native CEL."""


class CompiledPolicy:
    """One PolicySet version, compiled: CEL programs and the rule-selection index.

    Build with :meth:`from_record`; immutable afterwards except for an internal, bounded
    memo of candidates per action type and the deadline of the evaluation in progress.
    Not thread-safe (neither is ``cel.Context``); use one per worker, which is how Faust
    runs agents anyway.
    """

    def __init__(
        self,
        *,
        name: str,
        tenant: str,
        version: int,
        default: str,
        on_error: str,
        source_sha256: str,
        rules: Sequence[_Rule],
        sha256: bytes | None = None,
        exact_types: Mapping[str, Sequence[int]],
        type_globs: Sequence[tuple[re.Pattern[str], Sequence[int]]],
        any_type: Sequence[int],
        break_glass_roles: Sequence[str] = (),
        limits: PolicyLimits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.name = name
        self.tenant = tenant
        self.version = version
        self.default = default
        self.on_error = on_error
        self.source_sha256 = source_sha256
        self.sha256 = sha256
        self._rules = tuple(rules)
        self._exact_types = {k: tuple(v) for k, v in exact_types.items()}
        self._type_globs = tuple((rx, tuple(v)) for rx, v in type_globs)
        self._any_type = tuple(any_type)
        self.break_glass_roles = tuple(break_glass_roles)
        self._reviews = {r.id: r.review for r in self._rules if r.review is not None}
        self._by_type: dict[str, tuple[_Rule, ...]] = {}
        self.limits = limits
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._deadline = 0.0
        self._cpu_start = 0.0
        self._stopped = False
        self._functions = {TICK_FUNCTION: self._tick}

    def review_rule(self, rule_id: str) -> dict[str, Any] | None:
        """The ReviewRule record of review rule ``rule_id`` (``None``: no such review rule)."""
        return self._reviews.get(rule_id)

    @classmethod
    def from_record(
        cls,
        record: Mapping[str, Any],
        *,
        sha256: bytes | None = None,
        limits: PolicyLimits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> CompiledPolicy:
        """Compile a PolicySet record dict (as produced by ``processors.policy.files`` or the codec).

        Raises :class:`~processors.errors.PolicyInvalid` (file = ``policyset
        tenant/name vN``, line 0) if a rule's condition fails the checks validation makes
        under ``limits`` (compiles, known fields and functions, cost budget, length) or an
        enum is bad, or the record has more than ``limits.max_rules`` rules; for a record
        that came through ``processors.policy.files`` that means a bug, a hand-made record
        or one validated under other limits. ``sha256``: the policy version's hash
        (:func:`trust.bindings.policy_sha256` of the record's bytes as published), carried
        into every :class:`Decision` as ``policy_sha256``; ``None`` for a record that was
        never published (a file being tested). ``clock`` (wall, seconds) and ``cpu_clock``
        (this thread's CPU seconds) time the evaluation limit; tests pass fake ones.
        """
        where = (
            f"policyset {record.get('tenant', '?')}/{record.get('name', '?')} v{record.get('version', '?')}"
        )
        problems: list[PolicyProblem] = []
        try:
            default = str(record["default"])
            on_error = str(record["on_error"])
            raw_rules = list(record["rules"])
            name = str(record["name"])
        except (KeyError, TypeError) as exc:
            raise PolicyInvalid(
                [PolicyProblem(where, 0, None, f"not a PolicySet record: missing {exc}")]
            ) from exc
        for key, value in (("default", default), ("on_error", on_error)):
            if value not in EFFECTS:
                problems.append(PolicyProblem(where, 0, None, f"{key} must be allow or block"))
        if len(raw_rules) > limits.max_rules:
            raise PolicyInvalid(
                [PolicyProblem(where, 0, None, f"{len(raw_rules):,} rules; at most {limits.max_rules:,} are allowed")]
            )

        rules: list[_Rule] = []
        exact: dict[str, list[int]] = {}
        globbed: dict[str, list[int]] = {}
        any_type: list[int] = []
        for raw in raw_rules:
            rule_id = str(raw.get("id", ""))
            when = str(raw.get("when", "true"))
            condition = compile_condition(when, limits)
            error = condition.error
            effect, mode = raw.get("effect"), raw.get("mode", "enforce")
            if effect not in RULE_EFFECTS or mode not in MODES or (effect == "review") != bool(raw.get("review")):
                error = error or f"effect {effect!r} / mode {mode!r} not valid"
            if error is not None:
                problems.append(PolicyProblem(where, 0, rule_id, f"rule {rule_id!r}: {error}"))
                continue
            match = raw.get("match") or {}
            position = len(rules)
            rules.append(
                _Rule(
                    position=position,
                    id=rule_id,
                    effect=str(effect),
                    mode=str(mode),
                    message=str(raw.get("message", "")),
                    review=dict(raw["review"]) if raw.get("review") else None,
                    program=condition.program,
                    variables=condition.variables,
                    reads=condition.reads,
                    bindings=condition.bindings,
                    whole=condition.whole,
                    reads_sql="sql" in condition.variables,
                    cost=condition.cost,
                    loops=TICK_FUNCTION in condition.program.source,
                    resources=_Globs(list(match.get("resources") or [])),
                    services=_Globs(list(match.get("services") or [])),
                )
            )
            types = list(match.get("types") or [])
            if not types:
                any_type.append(position)
            for pattern in dict.fromkeys(types):
                bucket = globbed if _GLOB_CHARS & set(pattern) else exact
                bucket.setdefault(pattern, []).append(position)
        if problems:
            raise PolicyInvalid(problems)
        return cls(
            name=name,
            tenant=str(record.get("tenant", "default")),
            version=int(record.get("version", 0)),
            default=default,
            on_error=on_error,
            source_sha256=str(record.get("source_sha256", "")),
            rules=rules,
            sha256=sha256,
            exact_types=exact,
            type_globs=[(re.compile(fnmatch.translate(p)), v) for p, v in globbed.items()],
            any_type=any_type,
            break_glass_roles=[str(r) for r in record.get("break_glass_roles") or []],
            limits=limits,
            clock=clock,
            cpu_clock=cpu_clock,
        )

    @property
    def rule_ids(self) -> list[str]:
        """Ids of all rules, in policy order."""
        return [r.id for r in self._rules]

    @property
    def rule_costs(self) -> dict[str, int]:
        """Worst-case cost units of each rule's condition (budget: ``limits.rule_cost_budget``)."""
        return {r.id: r.cost for r in self._rules}

    def _rules_for_type(self, action_type: str) -> tuple[_Rule, ...]:
        cached = self._by_type.get(action_type)
        if cached is not None:
            return cached
        positions = set(self._exact_types.get(action_type, ()))
        positions.update(self._any_type)
        for regex, members in self._type_globs:
            if regex.match(action_type):
                positions.update(members)
        found = tuple(self._rules[p] for p in sorted(positions))
        if len(self._by_type) >= _TYPE_CACHE_LIMIT:  # types come from requests: stay bounded
            self._by_type.clear()
        self._by_type[action_type] = found
        return found

    def candidate_rule_ids(self, action: Mapping[str, Any]) -> list[str]:
        """Ids of the rules whose type/resource/service globs accept ``action`` (no CEL run)."""
        return [r.id for r in self._candidates(action)]

    def _candidates(self, action: Mapping[str, Any]) -> list[_Rule]:
        resource, service = action["resource"], action["service"]
        return [
            r
            for r in self._rules_for_type(action["type"])
            if r.resources.accepts(resource) and r.services.accepts(service)
        ]

    def evaluate(self, action: Mapping[str, Any], *, authenticated: bool, now_us: int) -> Decision:
        """Decide one decoded ProposedAction (see the module docstring for the semantics).

        ``authenticated`` says whether the producing service's signature verified; it is
        exposed to rules as ``action.authenticated``. ``now_us`` (µs since epoch UTC) is
        bound as ``now``. Never raises for a schema-valid action: a rule that cannot be
        evaluated becomes a failed condition under ``on_error``.
        """
        candidates = self._candidates(action)
        matched: list[dict[str, Any]] = []
        if candidates:
            context, sql_error, over = _context(
                action, candidates, authenticated, now_us, self.limits, self._functions
            )
            self._run(candidates, context, sql_error, over, matched)
        return self._decide(matched)

    def _run(
        self,
        candidates: Sequence[_Rule],
        context: Any,
        sql_error: str | None,
        over: Mapping[tuple[str, ...], str],
        matched: list[dict[str, Any]],
    ) -> None:
        """Run the candidates' conditions in order under the time limit (module docstring)."""
        limit_ms = f"{self.limits.evaluation_time_limit_s * 1000:g} ms"
        self._stopped = False
        self._cpu_start = self._cpu_clock()
        self._deadline = self._clock() + self.limits.evaluation_time_limit_s
        spent_by: str | None = None  # the rule during which the deadline passed
        for rule in candidates:
            if spent_by is not None:
                matched.append(
                    self._failed(
                        rule,
                        f"not evaluated: this action's evaluation time limit of {limit_ms} was used up "
                        f"(by rule {spent_by!r})",
                    )
                )
                continue
            if rule.reads_sql and sql_error is not None:
                matched.append(self._failed(rule, sql_error))
                continue
            if over and (bound := _over_bound(rule, over)) is not None:
                matched.append(self._failed(rule, bound))
                continue
            try:
                result = rule.program.execute(context)
            except Exception as exc:  # cel raises KeyError/TypeError/RuntimeError/...
                if self._stopped:
                    spent_by = rule.id
                    matched.append(
                        self._failed(
                            rule,
                            f"stopped: exceeded this action's evaluation time limit of {limit_ms}, which "
                            "keeps one policy from holding every tenant's decisions; make the condition "
                            "cheaper (fewer or smaller nested comprehensions)",
                        )
                    )
                else:
                    matched.append(self._failed(rule, _describe(exc)))
            else:
                if result is True:
                    matched.append(_matched(rule.id, rule.effect, rule.mode, rule.message, None))
                elif result is not False:
                    matched.append(
                        self._failed(
                            rule,
                            f"condition returned {type(result).__name__} {result!r:.60}, "
                            "expected a bool; make `when` a boolean expression",
                        )
                    )
            if spent_by is None and self._clock() > self._deadline and self._cpu_spent():
                spent_by = rule.id

    def _tick(self) -> bool:
        """The deadline check instrumented into every comprehension body."""
        if self._clock() > self._deadline and self._cpu_spent():
            self._stopped = True
            raise _DeadlineExceeded("evaluation time limit exceeded")
        return True

    def _cpu_spent(self) -> bool:
        """Once the wall-clock deadline has passed: has the evaluation used its CPU time?

        If not (the thread was descheduled), the wall-clock deadline moves to when the rest
        of the CPU allowance would run out, and evaluation goes on.
        """
        left = self.limits.evaluation_time_limit_s - (self._cpu_clock() - self._cpu_start)
        if left <= 0:
            return True
        self._deadline = self._clock() + left
        return False

    def _failed(self, rule: _Rule, error: str) -> dict[str, Any]:
        return _matched(rule.id, self.on_error, rule.mode, rule.message, error)

    def _decide(self, matched: list[dict[str, Any]]) -> Decision:
        enforced = [m for m in matched if m["mode"] == "enforce"]
        shadow = [m for m in matched if m["mode"] == "shadow"]
        decision, basis, reason = self.default, "default", ""
        review: tuple[str, dict[str, Any]] | None = None
        for effect in ("block", "review", "allow"):
            said = [m for m in enforced if m["effect"] == effect and m["error"] is None]
            broke = [m for m in enforced if m["effect"] == effect and m["error"] is not None]
            verb = {"block": "blocked", "review": "held for review", "allow": "allowed"}[effect]
            if said:
                decision, basis = effect, "rule"
                reason = f"{verb} by rule {_list_rules(said)}"
                if effect == "review":
                    review = (said[0]["id"], self._reviews[said[0]["id"]])
                if broke:
                    reason += f"; also failed to evaluate: {_list_errors(broke)}"
                break
            if broke:
                decision, basis = effect, "evaluation_error"
                reason = (
                    f"{verb} because rule {_list_errors(broke)} could not be evaluated and the "
                    f"policy's on_error is {self.on_error}; fix the rule's `when` or the "
                    "action's attributes"
                )
                break
        if basis == "default":
            reason = f"no enforced rule matched; policy {self.name!r} default is {self.default}"
        if shadow:
            notes = ", ".join(
                f"{m['id']} would {m['effect']}" + (f" ({m['error']})" if m["error"] else "") for m in shadow
            )
            reason += f" [shadow, not enforced: {notes}]"
        return Decision(
            decision=decision,
            basis=basis,
            matched_rules=matched,
            reason=reason,
            policy_name=self.name,
            policy_version=self.version,
            policy_sha256=self.sha256,
            review=review,
            break_glass_roles=self.break_glass_roles,
        )


def _context(
    action: Mapping[str, Any],
    candidates: Sequence[_Rule],
    authenticated: bool,
    now_us: int,
    limits: PolicyLimits,
    functions: Mapping[str, Callable[[], bool]],
) -> tuple[Any, str | None, dict[tuple[str, ...], str]]:
    """One ``cel.Context`` for all candidate rules, the ``attributes.sql`` error, and what is over bounds.

    Only what some candidate reads is bound: converting a nested map into CEL costs about
    1 µs per entry, so binding ``actor`` or ``sql`` that no candidate reads would be most
    of the cost of an evaluation. Collection fields are bound as variables of their own
    (:data:`~processors.policy.cel_analysis.FLATTENED`; cel-rust deep-copies a collection
    each time it is selected out of a map) and left out of their variable unless a
    candidate reads that variable whole. The third value maps each member path whose
    value is over its input bound to why (see :func:`_over_bounds`).
    """
    needed: set[str] = set()
    whole: set[str] = set()
    for rule in candidates:
        needed |= rule.bindings
        whole |= rule.whole
    roots = {name for name in needed if name in _ROOTS}
    roots |= {root for (root, _), flat in FLATTENED.items() if flat in needed}
    values: dict[str, Any] = {}
    attributes = action.get("attributes") or {}
    sql_error: str | None = None
    if "action" in roots:
        values["action"] = {
            "type": action["type"],
            "resource": action["resource"],
            "service": action["service"],
            "tenant": action.get("tenant", ""),
            "attributes": dict(attributes),
            "authenticated": bool(authenticated),
        }
    if "actor" in roots:
        actor = action.get("actor") or {}
        values["actor"] = {
            "id": actor.get("id", ""),
            "roles": list(actor.get("roles") or []),
            "attributes": dict(actor.get("attributes") or {}),
        }
    if "sql" in roots:
        values["sql"], sql_error = _sql_variable(attributes, limits)
    variables: dict[str, Any] = {}
    for root, value in values.items():
        if root in whole:
            variables[root] = value
        elif root in needed:
            variables[root] = {k: v for k, v in value.items() if (root, k) not in FLATTENED}
    for (root, name), flat in FLATTENED.items():
        if flat in needed:
            variables[flat] = values[root][name]
    if "now" in needed:
        variables["now"] = _EPOCH + timedelta(microseconds=now_us)
    # Registering the deadline check costs ~20 µs per context: only when a loop may call it.
    ticks = any(rule.loops for rule in candidates)
    return cel.Context(variables, dict(functions) if ticks else None), sql_error, _over_bounds(values, limits)


_ROOTS = frozenset({"action", "actor", "sql", "now"})
_NAMES = {"action": ("type", "resource", "service", "tenant"), "actor": ("id",), "sql": ("kind",)}
_LISTS = {"actor": ("roles",), "sql": ("kinds", "tables")}


def _over_bounds(variables: Mapping[str, Any], limits: PolicyLimits) -> dict[tuple[str, ...], str]:
    """Member paths of the bound variables whose values exceed the input bounds, and why.

    A path names what a rule must read to be affected: ``("actor", "roles")`` for a list
    that is too long or holds an over-long item, ``("action", "attributes")`` for a map
    with too many entries or an over-long key (only iterating over it is affected),
    ``("action", "attributes", "k")`` for an over-long value (only rules reading ``k``, or
    the whole map, are affected). Empty, and cheap, for a normal action.
    """
    over: dict[tuple[str, ...], str] = {}
    if _within_bounds(variables, limits):
        return over
    max_name, max_items, max_value = limits.max_name_chars, limits.max_items, limits.max_value_chars
    for variable, value in variables.items():
        if not isinstance(value, dict):
            continue
        for name in _NAMES.get(variable, ()):
            text = value.get(name)
            if isinstance(text, str) and len(text) > max_name:
                over[(variable, name)] = _too_long(f"{variable}.{name}", len(text), max_name)
        for name in _LISTS.get(variable, ()):
            items = value.get(name) or []
            if len(items) > max_items:
                over[(variable, name)] = _too_many(f"{variable}.{name}", len(items), max_items)
            elif (longest := _longest(items)) > max_name:
                over[(variable, name)] = _too_long(f"an entry of {variable}.{name}", longest, max_name)
        attributes = value.get("attributes") if variable in ("action", "actor") else None
        if not attributes:
            continue
        path = (variable, "attributes")
        if len(attributes) > max_items:
            over[path] = _too_many(f"{variable}.attributes", len(attributes), max_items)
        elif (longest := _longest(attributes)) > max_name:
            over[path] = _too_long(f"a key of {variable}.attributes", longest, max_name)
        if _longest(attributes.values()) > max_value:  # the rare case: find which
            for key, item in attributes.items():
                if isinstance(item, str) and len(item) > max_value:
                    over[(*path, key)] = _too_long(f"{variable}.attributes.{key:.40}", len(item), max_value)
    return over


def _within_bounds(values: Mapping[str, Any], limits: PolicyLimits) -> bool:
    """The common case, checked with a few C-level passes: every bound holds."""
    max_name, max_items = limits.max_name_chars, limits.max_items
    action, actor, sql = values.get("action"), values.get("actor"), values.get("sql")
    if action is not None and (
        max(len(action["type"]), len(action["resource"]), len(action["service"]), len(action["tenant"])) > max_name
        or not _map_within(action["attributes"], limits)
    ):
        return False
    if actor is not None and (
        len(actor["id"]) > max_name
        or len(actor["roles"]) > max_items
        or _longest(actor["roles"]) > max_name
        or not _map_within(actor["attributes"], limits)
    ):
        return False
    return sql is None or not (
        len(sql["kind"]) > max_name
        or max(len(sql["kinds"]), len(sql["tables"])) > max_items
        or max(_longest(sql["kinds"]), _longest(sql["tables"])) > max_name
    )


def _map_within(attributes: Mapping[str, Any], limits: PolicyLimits) -> bool:
    return not attributes or (
        len(attributes) <= limits.max_items
        and _longest(attributes) <= limits.max_name_chars
        and _longest(attributes.values()) <= limits.max_value_chars
    )


def _longest(values: Iterable[Any]) -> int:
    """Length of the longest string among ``values`` (0 if none)."""
    return max(map(len, [v for v in values if type(v) is str]), default=0)


def _too_many(what: str, count: int, bound: int) -> str:
    return f"{what} has {count:,} entries, over the bound of {bound:,}"


def _too_long(what: str, length: int, bound: int) -> str:
    return f"{what} is {length:,} characters, over the bound of {bound:,}"


def _over_bound(rule: _Rule, over: Mapping[tuple[str, ...], str]) -> str | None:
    """Why ``rule`` may not run on this action, if it reads a value that is over its bound.

    A rule is affected when one of its read paths is a prefix of (or equal to) an
    over-bound path: reading ``actor.roles`` is affected by a too-long roles list; reading
    ``action.attributes.rows`` is not affected by a too-long ``action.attributes.blob``.
    """
    for path, why in over.items():
        for read in rule.reads:
            if path[: len(read)] == read:
                return (
                    f"not evaluated: {why}; the rule reads it, and its cost is only bounded for "
                    "inputs within the engine's bounds (tenant isolation)"
                )
    return None


def _matched(rule_id: str, effect: str, mode: str, message: str, error: str | None) -> dict[str, Any]:
    return {"id": rule_id, "effect": effect, "mode": mode, "message": message, "error": error}


def _list_rules(matches: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(f"{m['id']}" + (f" ({m['message']})" if m["message"] else "") for m in matches)


def _list_errors(matches: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(f"{m['id']} ({m['error']})" for m in matches)


def _describe(exc: BaseException) -> str:
    """``Type: first sentence`` of a CEL error (its advice paragraphs are too long to keep).

    Names of flattened fields are put back as the policy wrote them.
    """
    message = str(exc).strip().split(". ")[0].rstrip(".")
    for (root, name), flat in FLATTENED.items():
        message = message.replace(flat, f"{root}.{name}")
    return _clip(f"{type(exc).__name__}: {message}")


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def _sql_variable(attributes: Mapping[str, Any], limits: PolicyLimits) -> tuple[dict[str, Any], str | None]:
    """The ``sql`` binding and, if ``attributes.sql`` does not parse, the error to report.

    Text over ``limits.max_sql_chars`` is not parsed (sqlglot spends milliseconds per
    statement, in every dialect we try) and is reported like unparseable text.
    """
    text = attributes.get("sql")
    facts = empty_sql_facts()
    if not isinstance(text, str):
        return {**facts, "present": False, "parsed": False}, None
    if len(text) > limits.max_sql_chars:
        error = (
            f"attributes.sql is {len(text):,} characters, over the bound of {limits.max_sql_chars:,} "
            "the engine parses; send smaller statements"
        )
        return {**facts, "present": True, "parsed": False}, error
    try:
        facts = sql_facts(text)
    except SqlUnparseable as exc:
        error = _clip(f"attributes.sql is not parseable SQL: {exc.detail}")
        return {**facts, "present": True, "parsed": False}, error
    return {**facts, "present": True, "parsed": True}, None
