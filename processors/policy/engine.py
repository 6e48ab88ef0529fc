"""Evaluate a ProposedAction against a compiled PolicySet: the pure core of the verdict agent.

:meth:`CompiledPolicy.from_record` turns a PolicySet record (schemas/PolicySet.avsc) into
an evaluator once per policy version; :meth:`CompiledPolicy.evaluate` then decides one
action. No Kafka, no clock, no I/O: the caller passes ``authenticated`` and ``now_us``.

Decision semantics (in this order):

1. An **enforce** rule that matched with effect ``block`` => ``block``, basis ``rule``.
2. Otherwise an enforce ``block`` that came from a rule whose condition *failed* (effect =
   the policy's ``on_error``) => ``block``, basis ``evaluation_error``; the reason names the
   rule and the error, so "a rule broke" is never confused with "a rule said no".
3. Otherwise an enforce rule that matched with effect ``allow`` => ``allow``, basis ``rule``
   (basis ``evaluation_error`` if every such allow came from a failed condition under
   ``on_error: allow``).
4. Otherwise the policy's ``default``, basis ``default``.

**Shadow** rules are evaluated the same way and reported in ``matched_rules`` (with
``mode: shadow``) but never change the decision. A rule *matches* when its ``match``
globs accept the action's type, resource and service and its ``when`` returns ``true``;
a ``when`` that raises (missing key, type error, unknown function) or returns a non-bool is
a failed condition, reported as a MatchedRule with ``error`` set.

**Unparseable ``attributes.sql``**: every candidate rule whose ``when`` reads the ``sql``
variable is a failed condition (error names the parse problem) and so follows
``on_error``; rules that do not read ``sql`` evaluate normally. Binding an empty ``sql``
instead would let ``sql.kind == "DELETE"`` quietly come out false for SQL we could not
read, which is the fail-open outcome this product exists to prevent.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import cel

from processors.errors import PolicyInvalid, PolicyProblem, SqlUnparseable
from processors.policy.files import CEL_VARIABLES, EFFECTS, MODES, check_cel
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
    program: Any  # cel.Program
    variables: frozenset[str]  # which of action/actor/sql/now the condition reads
    reads_sql: bool
    resources: _Globs
    services: _Globs


class CompiledPolicy:
    """One PolicySet version, compiled: CEL programs and the rule-selection index.

    Build with :meth:`from_record`; immutable afterwards except for an internal, bounded
    memo of candidates per action type. Not thread-safe (neither is ``cel.Context``); use
    one per worker, which is how Faust runs agents anyway.
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
        exact_types: Mapping[str, Sequence[int]],
        type_globs: Sequence[tuple[re.Pattern[str], Sequence[int]]],
        any_type: Sequence[int],
    ) -> None:
        self.name = name
        self.tenant = tenant
        self.version = version
        self.default = default
        self.on_error = on_error
        self.source_sha256 = source_sha256
        self._rules = tuple(rules)
        self._exact_types = {k: tuple(v) for k, v in exact_types.items()}
        self._type_globs = tuple((rx, tuple(v)) for rx, v in type_globs)
        self._any_type = tuple(any_type)
        self._by_type: dict[str, tuple[_Rule, ...]] = {}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> CompiledPolicy:
        """Compile a PolicySet record dict (as produced by ``processors.policy.files`` or the codec).

        Raises :class:`~processors.errors.PolicyInvalid` (file = ``policyset
        tenant/name vN``, line 0) if a rule's CEL does not compile or an enum is bad, which
        for a record that came through ``processors.policy.files`` means a bug or a hand-made record.
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

        rules: list[_Rule] = []
        exact: dict[str, list[int]] = {}
        globbed: dict[str, list[int]] = {}
        any_type: list[int] = []
        for raw in raw_rules:
            rule_id = str(raw.get("id", ""))
            when = str(raw.get("when", "true"))
            error = check_cel(when)
            effect, mode = raw.get("effect"), raw.get("mode", "enforce")
            if effect not in EFFECTS or mode not in MODES:
                error = error or f"effect {effect!r} / mode {mode!r} not valid"
            if error is not None:
                problems.append(PolicyProblem(where, 0, rule_id, f"rule {rule_id!r}: {error}"))
                continue
            program = cel.compile(when)
            variables = frozenset(program.variables()) & CEL_VARIABLES
            match = raw.get("match") or {}
            position = len(rules)
            rules.append(
                _Rule(
                    position=position,
                    id=rule_id,
                    effect=str(effect),
                    mode=str(mode),
                    message=str(raw.get("message", "")),
                    program=program,
                    variables=variables,
                    reads_sql="sql" in variables,
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
            exact_types=exact,
            type_globs=[(re.compile(fnmatch.translate(p)), v) for p, v in globbed.items()],
            any_type=any_type,
        )

    @property
    def rule_ids(self) -> list[str]:
        """Ids of all rules, in policy order."""
        return [r.id for r in self._rules]

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
            context, sql_error = _context(action, candidates, authenticated, now_us)
            for rule in candidates:
                if rule.reads_sql and sql_error is not None:
                    matched.append(self._failed(rule, sql_error))
                    continue
                try:
                    result = rule.program.execute(context)
                except Exception as exc:  # cel raises KeyError/TypeError/RuntimeError/...
                    matched.append(self._failed(rule, _describe(exc)))
                    continue
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
        return self._decide(matched)

    def _failed(self, rule: _Rule, error: str) -> dict[str, Any]:
        return _matched(rule.id, self.on_error, rule.mode, rule.message, error)

    def _decide(self, matched: list[dict[str, Any]]) -> Decision:
        enforced = [m for m in matched if m["mode"] == "enforce"]
        shadow = [m for m in matched if m["mode"] == "shadow"]
        decision, basis, reason = self.default, "default", ""
        for effect in ("block", "allow"):
            said = [m for m in enforced if m["effect"] == effect and m["error"] is None]
            broke = [m for m in enforced if m["effect"] == effect and m["error"] is not None]
            verb = "blocked" if effect == "block" else "allowed"
            if said:
                decision, basis = effect, "rule"
                reason = f"{verb} by rule {_list_rules(said)}"
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
        )


def _context(
    action: Mapping[str, Any], candidates: Sequence[_Rule], authenticated: bool, now_us: int
) -> tuple[Any, str | None]:
    """One ``cel.Context`` for all candidate rules, and the ``attributes.sql`` parse error.

    Only the variables some candidate reads are bound: converting a nested map into CEL
    costs about 1 µs per entry, so binding ``actor`` or ``sql`` that no candidate reads
    would be most of the cost of an evaluation.
    """
    needed: set[str] = set()
    for rule in candidates:
        needed |= rule.variables
    variables: dict[str, Any] = {}
    attributes = action.get("attributes") or {}
    sql_error: str | None = None
    if "action" in needed:
        variables["action"] = {
            "type": action["type"],
            "resource": action["resource"],
            "service": action["service"],
            "tenant": action.get("tenant", ""),
            "attributes": dict(attributes),
            "authenticated": bool(authenticated),
        }
    if "actor" in needed:
        actor = action.get("actor") or {}
        variables["actor"] = {
            "id": actor.get("id", ""),
            "roles": list(actor.get("roles") or []),
            "attributes": dict(actor.get("attributes") or {}),
        }
    if "sql" in needed:
        variables["sql"], sql_error = _sql_variable(attributes)
    if "now" in needed:
        variables["now"] = _EPOCH + timedelta(microseconds=now_us)
    return cel.Context(variables), sql_error


def _matched(rule_id: str, effect: str, mode: str, message: str, error: str | None) -> dict[str, Any]:
    return {"id": rule_id, "effect": effect, "mode": mode, "message": message, "error": error}


def _list_rules(matches: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(f"{m['id']}" + (f" ({m['message']})" if m["message"] else "") for m in matches)


def _list_errors(matches: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(f"{m['id']} ({m['error']})" for m in matches)


def _describe(exc: BaseException) -> str:
    """``Type: first sentence`` of a CEL error (its advice paragraphs are too long to keep)."""
    message = str(exc).strip().split(". ")[0].rstrip(".")
    return _clip(f"{type(exc).__name__}: {message}")


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def _sql_variable(attributes: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The ``sql`` binding and, if ``attributes.sql`` does not parse, the error to report."""
    text = attributes.get("sql")
    facts = empty_sql_facts()
    if not isinstance(text, str):
        return {**facts, "present": False, "parsed": False}, None
    try:
        facts = sql_facts(text)
    except SqlUnparseable as exc:
        error = _clip(f"attributes.sql is not parseable SQL: {exc.detail}")
        return {**facts, "present": True, "parsed": False}, error
    return {**facts, "present": True, "parsed": True}, None
