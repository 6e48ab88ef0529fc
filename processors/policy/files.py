"""Load and validate a policy YAML file into a ``PolicySet`` record (schemas/PolicySet.avsc).

A policy file looks like::

    name: payments-db            # required
    tenant: default              # optional, default "default"
    default: allow               # required: allow | block, when no enforced rule matches
    on_error: block              # optional, default block: effect of a rule that fails to evaluate
    rules:
      - id: delete-without-where # required, unique in the file
        description: ...         # optional
        match:                   # optional; each list holds glob patterns, empty/absent = any
          types: [db.query]
          resources: ["db/prod/*"]
          services: []
        when: sql.kind == "DELETE" && !sql.has_where   # CEL, optional, default "true"
        effect: block            # required: allow | block | review
        mode: enforce            # optional, default enforce: enforce | shadow
        message: ...             # optional, shown in the verdict's reason
        review:                  # required with effect review, refused otherwise
          approvers: [dba, sre]  # required: reviewer groups; a member of any one may approve
          min_approvals: 2       # optional, default 1: distinct reviewers needed (1-10)
          require_reason: true   # optional, default false: the requester must give a justification
          expires_after: 30m     # optional, default 1h: unanswered, the request is refused (max 7d)
          grant: action          # optional: action (this action only) | window
          grant_window: 2h       # with grant window: how long the grant lasts
          grant_resource_prefix: db/prod/   # with grant window, required: the resources it covers
    break_glass_roles: [oncall]  # optional: actor roles that may override with a justification

Validation is strict because a typo in a security policy must not silently widen access,
and a condition that cannot run must not be found out by the first action it blocks:
unknown keys, duplicate keys (which plain YAML loaders silently collapse to the last one),
duplicate rule ids, bad enum values, wrong types, CEL that does not compile, CEL that names
a variable other than ``action``, ``actor``, ``sql`` and ``now``, a field those variables
do not have (``action.no_such_field``, ``actor.rolez``: only ``action.attributes`` and
``actor.attributes`` take any key), a function the engine does not provide, a condition
that cannot yield a bool, and a condition whose worst-case cost is over the budget
(:mod:`processors.policy.cel_analysis`) are all reported. Every problem is collected (not
just the first) and carries the file and 1-based line of the offending YAML node; they are
raised together as :class:`~processors.errors.PolicyInvalid`.

Size comes first: a file over ``max_policy_bytes`` or with more than ``max_rules`` rules
(:class:`~processors.policy.limits.PolicyLimits`) raises
:class:`~processors.errors.PolicyTooLarge` before YAML parses it or CEL compiles a rule, so
an oversized file costs neither memory nor time, and is never published.

Line numbers come from PyYAML's composed node tree (``yaml.compose``), which keeps marks
that ``safe_load`` throws away.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from lockgate.kernel.durations import parse_duration_us
from lockgate.kernel.errors import DurationInvalid
from processors.errors import PolicyInvalid, PolicyProblem, PolicyTooLarge
from processors.policy.cel_analysis import VARIABLES
from processors.policy.conditions import compile_condition
from processors.policy.limits import DEFAULT_LIMITS, PolicyLimits

__all__ = [
    "CEL_VARIABLES",
    "EFFECTS",
    "GRANTS",
    "MODES",
    "RULE_EFFECTS",
    "check_cel",
    "compose_yaml",
    "load_policy_file",
    "load_policy_text",
]

EFFECTS = ("allow", "block")
RULE_EFFECTS = ("allow", "block", "review")
GRANTS = ("action", "window")
MAX_MIN_APPROVALS = 10
MAX_REVIEW_EXPIRY_US = 7 * 24 * 3600 * 1_000_000
MODES = ("enforce", "shadow")
#: The variables a rule's ``when`` may read (bound by the policy engine for each action).
CEL_VARIABLES = frozenset(VARIABLES)

_POLICY_KEYS = ("name", "tenant", "default", "on_error", "rules", "break_glass_roles")
_RULE_KEYS = ("id", "description", "match", "when", "effect", "mode", "message", "review")
_REVIEW_KEYS = ("approvers", "min_approvals", "require_reason", "expires_after", "grant", "grant_window",
                "grant_resource_prefix")
_GLOB_CHARS = frozenset("*?[]")
_MATCH_KEYS = ("types", "resources", "services")
_STR_TAG = "tag:yaml.org,2002:str"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def load_policy_file(
    path: str | Path,
    *,
    version: int = 0,
    published_at_us: int = 0,
    published_by: str = "unpublished",
    limits: PolicyLimits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Read, validate and convert the policy file at ``path`` into a PolicySet record dict.

    ``version``, ``published_at_us`` (µs since epoch UTC) and ``published_by`` are not part
    of the file: the publisher fills them in; the defaults mark a local, unpublished load.
    ``source_sha256`` is the hex SHA-256 of the file's bytes, so a verdict's policy can be
    traced back to the exact file.

    Raises :class:`~processors.errors.PolicyTooLarge` for a file over the size or rule-count
    limit (reading no more of it than the limit), :class:`~processors.errors.PolicyInvalid`
    listing every problem found, and ``OSError`` if the file cannot be read.
    """
    path = Path(path)
    with path.open("rb") as file:
        raw = file.read(limits.max_policy_bytes + 1)
        if len(raw) > limits.max_policy_bytes:
            file.seek(0, 2)
            raise _too_large_file(str(path), file.tell(), limits)
    return load_policy_text(
        raw,
        source=str(path),
        version=version,
        published_at_us=published_at_us,
        published_by=published_by,
        limits=limits,
    )


def load_policy_text(
    data: bytes | str,
    *,
    source: str = "<policy>",
    version: int = 0,
    published_at_us: int = 0,
    published_by: str = "unpublished",
    limits: PolicyLimits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Like :func:`load_policy_file`, for policy text already in memory.

    ``source`` is the name used in problem locations (``source:line: message``).
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > limits.max_policy_bytes:
        raise _too_large_file(source, len(raw), limits)
    problems: list[PolicyProblem] = []
    root = compose_yaml(raw, source, problems)
    record: dict[str, Any] | None = None
    if root is not None:
        _refuse_too_many_rules(root, source, limits)
        record = _Checker(source, problems, limits).policy(root)
    if problems or record is None:
        if not problems:
            problems.append(PolicyProblem(source, 1, None, "the file is empty; write a policy"))
        raise PolicyInvalid(problems)
    record.update(
        version=version,
        published_at=published_at_us,
        published_by=published_by,
        source_sha256=hashlib.sha256(raw).hexdigest(),
    )
    # Field order as in schemas/PolicySet.avsc, for readable dumps.
    order = (
        "name",
        "tenant",
        "version",
        "published_at",
        "published_by",
        "source_sha256",
        "default",
        "on_error",
        "rules",
        "break_glass_roles",
    )
    return {key: record[key] for key in order}


def compose_yaml(raw: bytes, source: str, problems: list[PolicyProblem]) -> yaml.Node | None:
    """Compose YAML into a node tree with line marks, or record a problem and return None.

    Also reports duplicate mapping keys anywhere in the document, which ``yaml.safe_load``
    would silently resolve to the last value.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(PolicyProblem(source, 1, None, f"the file is not UTF-8 ({exc.reason})"))
        return None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problems.append(PolicyProblem(source, line, None, f"YAML syntax error: {exc.problem or exc}"))
        return None
    except yaml.YAMLError as exc:
        problems.append(PolicyProblem(source, 1, None, f"YAML error: {exc}"))
        return None
    if root is not None:
        _report_duplicate_keys(root, source, problems)
    return root


def _report_duplicate_keys(node: yaml.Node, source: str, problems: list[PolicyProblem]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                first = seen.setdefault(key.value, key.start_mark.line + 1)
                if first != key.start_mark.line + 1:
                    problems.append(
                        PolicyProblem(
                            source,
                            key.start_mark.line + 1,
                            None,
                            f"duplicate key {key.value!r} (first at line {first}); keep only one",
                        )
                    )
            _report_duplicate_keys(value, source, problems)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _report_duplicate_keys(item, source, problems)


def check_cel(expression: str, limits: PolicyLimits = DEFAULT_LIMITS) -> str | None:
    """Check a CEL ``when`` expression; return None if it is usable, else why not.

    Usable means (see :func:`processors.policy.conditions.compile_condition`): it is within
    the length cap, it compiles, it reads only the variables and fields the engine binds
    (:data:`CEL_VARIABLES`; comprehension variables in their scope), calls only functions
    the engine provides, can yield a bool, and its worst-case cost is within the budget.
    """
    return compile_condition(expression, limits).error


def _too_large_file(source: str, size: int, limits: PolicyLimits) -> PolicyTooLarge:
    return PolicyTooLarge(
        source,
        1,
        f"the file is {size:,} bytes; a policy may be at most {limits.max_policy_bytes:,} bytes "
        f"({limits.max_policy_bytes // 1024} KiB). Nothing was parsed or published. Make it smaller: "
        "merge rules that differ only in their match lists (match takes several globs), keep other "
        "tenants' rules in their own tenant's policy, and delete shadow rules you no longer watch",
    )


def _refuse_too_many_rules(root: yaml.Node, source: str, limits: PolicyLimits) -> None:
    """Raise PolicyTooLarge before any rule is checked if there are too many of them."""
    if not isinstance(root, yaml.MappingNode):
        return
    for key, value in root.value:
        if (
            isinstance(key, yaml.ScalarNode)
            and key.value == "rules"
            and isinstance(value, yaml.SequenceNode)
            and len(value.value) > limits.max_rules
        ):
            raise PolicyTooLarge(
                source,
                _line(key),
                f"the policy has {len(value.value):,} rules; a policy may have at most "
                f"{limits.max_rules:,}. Nothing was compiled or published. Merge rules that differ "
                "only in their match lists, or split tenants into their own policies",
            )


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Checker:
    """Walks the composed node tree, converting what is valid and recording what is not."""

    def __init__(self, source: str, problems: list[PolicyProblem], limits: PolicyLimits) -> None:
        self.source = source
        self.problems = problems
        self.limits = limits

    def problem(self, node: yaml.Node, message: str, rule_id: str | None = None) -> None:
        prefix = f"rule {rule_id!r}: " if rule_id else ""
        self.problems.append(PolicyProblem(self.source, _line(node), rule_id, prefix + message))

    def mapping(
        self, node: yaml.Node, what: str, allowed: tuple[str, ...], rule_id: str | None = None
    ) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{what} must be a mapping (key: value lines)", rule_id)
            return None
        fields: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name not in allowed:
                self.problem(
                    key,
                    f"unknown key {name!r} in {what}; allowed keys: {', '.join(allowed)}",
                    rule_id,
                )
                continue
            fields.setdefault(str(name), value)
        return fields

    def string(
        self,
        fields: dict[str, yaml.Node],
        key: str,
        parent: yaml.Node,
        *,
        default: str | None = None,
        rule_id: str | None = None,
        check: Callable[[str], str | None] | None = None,
        tags: tuple[str, ...] = (_STR_TAG,),
    ) -> str | None:
        node = fields.get(key)
        if node is None:
            if default is None:
                self.problem(parent, f"missing required key {key!r}", rule_id)
            return default
        if not isinstance(node, yaml.ScalarNode) or node.tag not in tags:
            self.problem(
                node,
                f"{key!r} must be a string (quote it if YAML reads it as a number, boolean or null)",
                rule_id,
            )
            return None
        value = str(node.value)
        if check is not None:
            error = check(value)
            if error is not None:
                self.problem(node, f"{key!r} {error}", rule_id)
                return None
        return value

    def enum(
        self,
        fields: dict[str, yaml.Node],
        key: str,
        parent: yaml.Node,
        symbols: tuple[str, ...],
        *,
        default: str | None = None,
        rule_id: str | None = None,
    ) -> str | None:
        def check(value: str) -> str | None:
            if value in symbols:
                return None
            return f"must be one of {', '.join(symbols)}, got {value!r}"

        return self.string(fields, key, parent, default=default, rule_id=rule_id, check=check)

    def policy(self, root: yaml.Node) -> dict[str, Any] | None:
        fields = self.mapping(root, "the policy", _POLICY_KEYS)
        if fields is None:
            return None
        record: dict[str, Any] = {
            "name": self.string(fields, "name", root, check=_non_empty),
            "tenant": self.string(fields, "tenant", root, default="default", check=_non_empty),
            "default": self.enum(fields, "default", root, EFFECTS),
            "on_error": self.enum(fields, "on_error", root, EFFECTS, default="block"),
            "rules": [],
            "break_glass_roles": self.names(fields.get("break_glass_roles"), "break_glass_roles", None),
        }
        rules_node = fields.get("rules")
        if rules_node is None:
            self.problem(root, "missing required key 'rules' (use 'rules: []' for none)")
        elif not isinstance(rules_node, yaml.SequenceNode):
            self.problem(rules_node, "'rules' must be a list of rules")
        else:
            first_line: dict[str, int] = {}
            for rule_node in rules_node.value:
                # Duplicate ids are checked even for rules with other problems, so one
                # round of fixes is enough.
                rule_id = _peek_rule_id(rule_node)
                if rule_id is not None and rule_id in first_line:
                    self.problem(
                        rule_node,
                        f"duplicate rule id (first at line {first_line[rule_id]}); "
                        "rule ids must be unique within a policy",
                        rule_id,
                    )
                    continue
                if rule_id is not None:
                    first_line[rule_id] = _line(rule_node)
                rule = self.rule(rule_node, rule_id)
                if rule is not None:
                    record["rules"].append(rule)
        return record

    def rule(self, node: yaml.Node, rule_id: str | None) -> dict[str, Any] | None:
        fields = self.mapping(node, "a rule", _RULE_KEYS, rule_id)
        if fields is None:
            return None
        before = len(self.problems)
        checked_id = self.string(
            fields, "id", node, check=_check_rule_id, tags=(_STR_TAG, "tag:yaml.org,2002:int")
        )
        description = self.string(fields, "description", node, default="", rule_id=rule_id)
        match = self.match(fields.get("match"), rule_id)
        when = self.string(
            fields,
            "when",
            node,
            default="true",
            rule_id=rule_id,
            check=self.check_when,
            tags=(_STR_TAG, _BOOL_TAG),
        )
        effect = self.enum(fields, "effect", node, RULE_EFFECTS, rule_id=rule_id)
        mode = self.enum(fields, "mode", node, MODES, default="enforce", rule_id=rule_id)
        message = self.string(fields, "message", node, default="", rule_id=rule_id)
        review = None
        if effect == "review":
            if "review" not in fields:
                self.problem(node, "effect review needs a 'review:' block naming its approvers", rule_id)
            else:
                review = self.review(fields["review"], rule_id)
        elif "review" in fields:
            self.problem(fields["review"], f"a 'review:' block only applies to effect review, not {effect}",
                         rule_id)
        if len(self.problems) != before or checked_id is None:
            return None
        return {
            "id": checked_id,
            "description": description,
            "match": match,
            "when": when,
            "effect": effect,
            "mode": mode,
            "message": message,
            "review": review,
        }

    def names(self, node: yaml.Node | None, what: str, rule_id: str | None) -> list[str]:
        """A list of non-empty strings (groups, roles); absent or null is empty."""
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, f"{what} must be a list of names, e.g. {what}: [dba]", rule_id)
            return []
        out: list[str] = []
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode) or item.tag != _STR_TAG or not str(item.value).strip():
                self.problem(item, f"{what} entries must be non-empty strings", rule_id)
                continue
            out.append(str(item.value))
        return list(dict.fromkeys(out))

    def integer(self, fields: dict[str, yaml.Node], key: str, default: int, lo: int, hi: int,
                rule_id: str | None) -> int:
        node = fields.get(key)
        if node is None:
            return default
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:int" or not lo <= int(
                node.value) <= hi:
            self.problem(node, f"{key!r} must be a whole number from {lo} to {hi}", rule_id)
            return default
        return int(node.value)

    def duration(self, fields: dict[str, yaml.Node], key: str, default_us: int, rule_id: str | None) -> int:
        node = fields.get(key)
        if node is None:
            return default_us
        try:
            if not isinstance(node, yaml.ScalarNode):
                raise DurationInvalid(f"{key} must be a duration")
            value = parse_duration_us(str(node.value), key)
        except DurationInvalid as exc:
            self.problem(node, str(exc), rule_id)
            return default_us
        if not 0 < value <= MAX_REVIEW_EXPIRY_US:
            self.problem(node, f"{key!r} must be more than 0 and at most 7d", rule_id)
        return value

    def review(self, node: yaml.Node, rule_id: str | None) -> dict[str, Any] | None:
        """A rule's ``review:`` block as a ReviewRule record (schemas/PolicySet.avsc)."""
        fields = self.mapping(node, "'review'", _REVIEW_KEYS, rule_id)
        if fields is None:
            return None
        approvers = self.names(fields.get("approvers"), "review.approvers", rule_id)
        if not approvers and "approvers" in fields:
            self.problem(fields["approvers"], "review.approvers must name at least one group", rule_id)
        elif "approvers" not in fields:
            self.problem(node, "review needs 'approvers': the groups whose members may approve", rule_id)
        require = fields.get("require_reason")
        if require is not None and (not isinstance(require, yaml.ScalarNode) or require.tag != _BOOL_TAG):
            self.problem(require, "'require_reason' must be true or false", rule_id)
        grant = self.enum(fields, "grant", node, GRANTS, default="action", rule_id=rule_id)
        window_us = 0
        prefix = ""
        if grant == "window":
            if "grant_window" not in fields:
                self.problem(node, "grant window needs 'grant_window', e.g. grant_window: 2h", rule_id)
            window_us = self.duration(fields, "grant_window", 0, rule_id)
            prefix = self.grant_prefix(fields, node, rule_id)
        else:
            for key in ("grant_window", "grant_resource_prefix"):
                if key in fields:
                    self.problem(fields[key], f"{key!r} only applies to grant window", rule_id)
        return {
            "approvers": approvers,
            "min_approvals": self.integer(fields, "min_approvals", 1, 1, MAX_MIN_APPROVALS, rule_id),
            "require_reason": require is not None and str(require.value).lower() in ("true", "yes", "on"),
            "expires_after_s": self.duration(fields, "expires_after", 3600 * 1_000_000, rule_id) // 1_000_000,
            "grant": grant or "action",
            "grant_window_s": window_us // 1_000_000,
            "grant_resource_prefix": prefix,
        }

    def grant_prefix(self, fields: dict[str, yaml.Node], node: yaml.Node, rule_id: str | None) -> str:
        """``grant_resource_prefix``: explicit, ending at a path boundary, no glob characters.

        Required with ``grant: window`` so that what one approval opens is written in the
        policy, never guessed from the approved action's resource. It must end with ``/``
        so ``db/prod/`` can never cover ``db/production/...``, and may not hold ``* ? [ ]``:
        it is compared as a plain prefix, and a glob character would read as a promise it
        does not keep.
        """
        value = fields.get("grant_resource_prefix")
        if value is None:
            self.problem(node, "grant window needs 'grant_resource_prefix', the resources one approval "
                         "covers, e.g. grant_resource_prefix: db/prod/", rule_id)
            return ""
        if not isinstance(value, yaml.ScalarNode) or value.tag != _STR_TAG or not str(value.value).strip():
            self.problem(value, "'grant_resource_prefix' must be a non-empty string such as db/prod/", rule_id)
            return ""
        prefix = str(value.value)
        if not prefix.endswith("/") or prefix == "/":
            self.problem(value, f"'grant_resource_prefix' {prefix!r} must end with '/' after at least one "
                         "segment (db/prod/, not db/prod: that would also cover db/production)", rule_id)
        elif _GLOB_CHARS & set(prefix):
            self.problem(value, f"'grant_resource_prefix' {prefix!r} is a plain prefix; it may not contain "
                         "* ? [ or ]", rule_id)
        elif prefix != prefix.strip():
            self.problem(value, f"'grant_resource_prefix' {prefix!r} has leading or trailing spaces", rule_id)
        return prefix

    def check_when(self, value: str) -> str | None:
        error = check_cel(value, self.limits)
        return None if error is None else f"is not a valid condition: {error}"

    def match(self, node: yaml.Node | None, rule_id: str | None) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {key: [] for key in _MATCH_KEYS}
        if node is None:
            return result
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return result
        fields = self.mapping(node, "'match'", _MATCH_KEYS, rule_id)
        if fields is None:
            return result
        for key, value in fields.items():
            if isinstance(value, yaml.ScalarNode) and value.tag == "tag:yaml.org,2002:null":
                continue
            if not isinstance(value, yaml.SequenceNode):
                self.problem(
                    value,
                    f'match.{key} must be a list of glob patterns, e.g. {key}: ["db/prod/*"]',
                    rule_id,
                )
                continue
            for item in value.value:
                if not isinstance(item, yaml.ScalarNode) or item.tag != _STR_TAG or not str(item.value):
                    self.problem(
                        item,
                        f"match.{key} entries must be non-empty strings (glob patterns; quote them)",
                        rule_id,
                    )
                    continue
                result[key].append(str(item.value))
        return result


def _peek_rule_id(node: yaml.Node) -> str | None:
    """The rule's id if it is well-formed, so every problem in the rule can name it."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "id":
                if isinstance(value, yaml.ScalarNode) and _RULE_ID.match(str(value.value)):
                    return str(value.value)
                return None
    return None


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _check_rule_id(value: str) -> str | None:
    if _RULE_ID.match(value):
        return None
    return (
        f"must be 1-128 characters of letters, digits, '_', '.', ':' or '-' "
        f"starting with a letter or digit, got {value!r}"
    )
