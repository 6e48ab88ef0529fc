"""Static analysis of a rule's ``when``: what it reads, what it calls, what it may cost.

:func:`analyse` walks the syntax tree of :mod:`processors.policy.cel_parser` against the
documented shape of the variables the engine binds and returns an :class:`Analysis`:

* **problems** that make the expression unusable, each a sentence saying what to change:
  an unknown variable, an unknown field of ``action``/``actor``/``sql`` (with "did you
  mean"), a field of something that has none (``now.x``, ``action.type.x``, an
  attribute value), a function the engine does not provide, message construction, a
  result that can never be a bool, and a worst-case cost over the rule budget;
* **reads**: the member paths it reads (``("action", "attributes", "rows")``,
  ``("actor", "roles")``), so the engine knows which rules an over-bound input affects;
* **cost**: the worst-case cost in units, under :class:`~processors.policy.limits.PolicyLimits`;
* **edits** and **bindings**: how :func:`instrument` rewrites the expression the engine
  runs, and which names that rewritten expression needs bound (see below).

Variables (``attributes`` maps are *free*: any key may be read; a missing key is a
runtime error, which ``has()`` guards against)::

    action  type, resource, service, tenant: string; authenticated: bool;
            attributes: map of string to null | bool | int | double | string   (free)
    actor   id: string; roles: list of string; attributes: map of string to string (free)
    sql     kind: string; kinds, tables: list of string; statements: int;
            has_where, has_limit, present, parsed: bool
    now     timestamp (methods getFullYear() ... getMilliseconds())

**What the engine runs.** cel-rust deep-copies a list or map each time an expression
selects it *out of a map*: ``action.attributes.rows`` copies every attribute,
``actor.roles`` every role (measured: ~150 µs for 1,000 entries, per access, also inside a
loop), while resolving a top-level variable costs the same for any size. So the engine
binds the collection fields :data:`FLATTENED` as top-level variables of their own and
:func:`instrument` rewrites the expression to read them (``action.attributes.rows``
becomes ``__lockgate_action_attributes.rows``); ``action``, ``actor`` and ``sql``
themselves are bound without those fields unless the expression reads the whole variable
(``size(action)``, ``action[k]``). :func:`instrument` also puts the deadline check
:data:`TICK_FUNCTION` at the start of every comprehension body.

**Cost model.** One unit is one interpreter step: a literal, a variable, a field, an
operator on scalars (``docs/benchmarks.md`` calibrates it against measured times). On top
of that:

* a comprehension costs its range plus, per element of the range's bound,
  :data:`ITERATION` units (the step and its deadline check) plus its body: nesting
  multiplies;
* ``map`` and ``filter`` add :data:`ACCUMULATED` units per element already in the result
  each time they append, because cel-rust copies the result list on every append (they
  are quadratic: 1,000 elements took ~0.4 s in a measurement, where ``all`` took ~2 ms);
* a list or map built by a literal, a concatenation or a macro costs :data:`ELEMENT`
  units per element (literals are rebuilt on every evaluation, also inside loops), and
  so does every entry of a collection copied out of a map that is not flattened;
* string and bytes work (comparison, ``+``, ``in`` a map, ``contains``, ``startsWith``,
  ``endsWith``, conversions) costs one unit per :data:`CHARS_PER_UNIT` characters of the
  bound length; ``matches`` costs the text length times the pattern length at the same
  rate (the worst case of a regex engine without backtracking); merely reading or copying
  a string costs one unit per :data:`COPY_CHARS_PER_UNIT` characters.

The sizes come from the bounds: ``actor.roles`` has at most ``max_items`` entries of at
most ``max_name_chars`` characters; literals have their own size; ``map``/``filter``
results have their range's size; concatenations the sum. The estimate is an upper bound
by construction, not a prediction: typical actions cost far less.

The estimate leans high on purpose: the budget exists to refuse rules whose *worst case*
could hold every tenant's decisions, and the runtime limit (see
:mod:`processors.policy.limits`) catches what the model misses.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field

from processors.policy.cel_parser import (
    Binary,
    Call,
    CelSyntaxError,
    Comprehension,
    Conditional,
    Ident,
    Index,
    ListLit,
    Literal,
    MapLit,
    Message,
    Node,
    Select,
    Unary,
    parse,
)
from processors.policy.limits import DEFAULT_LIMITS, PolicyLimits

__all__ = [
    "ACCUMULATED",
    "CHARS_PER_UNIT",
    "COPY_CHARS_PER_UNIT",
    "ELEMENT",
    "FLATTENED",
    "FREE_MAPS",
    "FUNCTIONS",
    "ITERATION",
    "METHODS",
    "TICK_FUNCTION",
    "VARIABLES",
    "Analysis",
    "analyse",
    "instrument",
]

ITERATION = 20
ACCUMULATED = 6
ELEMENT = 5
CHARS_PER_UNIT = 64
COPY_CHARS_PER_UNIT = 1024

#: The engine's deadline check, called at the start of every comprehension body.
TICK_FUNCTION = "__lockgate_tick"
#: The variables a condition may read.
VARIABLES = ("action", "actor", "now", "sql")
#: Collection fields the engine binds as top-level variables of their own (module doc).
FLATTENED: dict[tuple[str, str], str] = {
    ("action", "attributes"): "__lockgate_action_attributes",
    ("actor", "roles"): "__lockgate_actor_roles",
    ("actor", "attributes"): "__lockgate_actor_attributes",
    ("sql", "kinds"): "__lockgate_sql_kinds",
    ("sql", "tables"): "__lockgate_sql_tables",
}
#: Maps whose keys are free (any key may be read); every other member is fixed.
FREE_MAPS = ("action.attributes", "actor.attributes")
#: Global functions the engine provides (cel-rust's standard library, nothing added).
FUNCTIONS = ("bytes", "double", "duration", "dyn", "int", "size", "string", "timestamp", "type", "uint")
_TIME_ACCESSORS = (
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getSeconds",
)
#: Receiver-style functions (``x.f(...)``) the engine provides, besides the macros.
METHODS = ("contains", "endsWith", "matches", "size", "startsWith", *_TIME_ACCESSORS)

_TEXT = frozenset({"string", "bytes"})


@dataclass(frozen=True, eq=False)
class Shape:
    """What a value may be: its kind and the bound on its size.

    ``kind`` is bool, int, uint, double, null, timestamp, duration, type, string, bytes,
    list, map, ``scalar`` (an attribute value: null, bool, int, double or a string of at
    most ``size`` characters) or ``dyn`` (unknown; ``size`` bounds it if it is a string or
    collection). ``size`` bounds the length of strings/bytes and the entries of lists/maps.
    ``fields`` is set for the fixed-member maps ``action``, ``actor`` and ``sql``.
    """

    kind: str
    size: int = 0
    elem: Shape | None = None
    key: Shape | None = None
    fields: Mapping[str, Shape] | None = None
    name: str = ""

    def named(self, name: str) -> Shape:
        return Shape(self.kind, self.size, self.elem, self.key, self.fields, name)


_BOOL = Shape("bool")
_INT = Shape("int")
_DYN = Shape("dyn")


def _join(a: Shape, b: Shape) -> Shape:
    """A shape covering both (for a conditional's branches, a literal's elements)."""
    if a.kind == b.kind and a.fields is None and b.fields is None:
        elem = _join(a.elem, b.elem) if a.elem and b.elem else (a.elem or b.elem)
        key = _join(a.key, b.key) if a.key and b.key else (a.key or b.key)
        return Shape(a.kind, max(a.size, b.size), elem, key)
    if a.fields is not None and a is b:
        return a
    elem = _join(a.elem, b.elem) if a.elem and b.elem else (a.elem or b.elem)
    return Shape("dyn", max(a.size, b.size), elem)


def _record(name: str, fields: dict[str, Shape]) -> Shape:
    named = {key: value.named(f"{name}.{key}") for key, value in fields.items()}
    elem = None
    for value in named.values():
        elem = value if elem is None else _join(elem, value)
    key = Shape("string", max(len(k) for k in fields))
    return Shape("map", len(fields), elem, key, named, name)


def variable_shapes(limits: PolicyLimits) -> dict[str, Shape]:
    """The documented shape of every variable, under ``limits``'s input bounds."""
    name = Shape("string", limits.max_name_chars)
    names = Shape("list", limits.max_items, name)
    action = _record(
        "action",
        {
            "type": name,
            "resource": name,
            "service": name,
            "tenant": name,
            "attributes": Shape("map", limits.max_items, Shape("scalar", limits.max_value_chars), name),
            "authenticated": _BOOL,
        },
    )
    actor = _record(
        "actor",
        {
            "id": name,
            "roles": names,
            "attributes": Shape("map", limits.max_items, Shape("string", limits.max_value_chars), name),
        },
    )
    sql = _record(
        "sql",
        {
            "kind": name,
            "kinds": names,
            "statements": _INT,
            "tables": names,
            "has_where": _BOOL,
            "has_limit": _BOOL,
            "present": _BOOL,
            "parsed": _BOOL,
        },
    )
    return {"action": action, "actor": actor, "sql": sql, "now": Shape("timestamp", name="now")}


@dataclass(frozen=True)
class Analysis:
    """The result of :func:`analyse` (see the module docstring).

    ``edits`` are ``(start, end, text)`` source edits for :func:`instrument` (an insertion
    when ``start == end``). ``bindings`` are the names the instrumented expression reads:
    variables (``action`` meaning the variable without its :data:`FLATTENED` fields) and
    flattened fields; ``whole`` the variables it reads whole, to be bound with every field.
    """

    problems: tuple[str, ...]
    reads: frozenset[tuple[str, ...]]
    cost: int
    edits: tuple[tuple[int, int, str], ...]
    bindings: frozenset[str]
    whole: frozenset[str]
    result: str

    @property
    def variables(self) -> frozenset[str]:
        """The engine variables the expression reads."""
        return frozenset(path[0] for path in self.reads)


@dataclass
class _Walk:
    limits: PolicyLimits
    variables: Mapping[str, Shape]
    problems: list[str] = field(default_factory=list)
    reads: set[tuple[str, ...]] = field(default_factory=set)
    edits: list[tuple[int, int, str]] = field(default_factory=list)
    bindings: set[str] = field(default_factory=set)
    whole: set[str] = field(default_factory=set)

    def problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)

    # --- paths and members ----------------------------------------------------------

    def path(self, node: Node, scope: Mapping[str, Shape]) -> tuple[str, ...] | None:
        """The static member path of ``node`` if it reads an engine variable, else None."""
        if isinstance(node, Ident):
            return (node.name,) if node.name in self.variables and node.name not in scope else None
        if isinstance(node, Select) and not node.test_only:
            prefix = self.path(node.operand, scope)
            return None if prefix is None else (*prefix, node.field)
        if isinstance(node, Index) and isinstance(node.index, Literal) and node.index.kind == "string":
            prefix = self.path(node.operand, scope)
            return None if prefix is None else (*prefix, str(node.index.value))
        return None

    def read(self, node: Node, path: tuple[str, ...], scope: Mapping[str, Shape], *, test_only: bool = False) -> None:
        """Record that ``node`` (whose static path is ``path``) is read: the read path, the
        binding it needs, and the edit that points a flattened field at its own variable."""
        self.reads.add(path)
        flat = FLATTENED.get((path[0], path[1])) if len(path) >= 2 else None
        if flat is not None and (len(path) > 2 or not test_only):
            prefix = node
            while (prefix_path := self.path(prefix, scope)) is not None and len(prefix_path) > 2:
                prefix = prefix.operand  # type: ignore[attr-defined]  # Select and Index have one
            self.edits.append((prefix.start, prefix.end, flat))
            self.bindings.add(flat)
        elif len(path) == 1 or flat is not None:  # the variable itself, or has(action.attributes)
            self.bindings.add(path[0])
            self.whole.add(path[0])
        else:
            self.bindings.add(path[0])

    def resolve(self, path: tuple[str, ...]) -> Shape:
        """The shape at ``path``, reporting unknown members on the way."""
        shape = self.variables[path[0]]
        for name in path[1:]:
            shape = self.member(shape, name)
        return shape

    def member(self, shape: Shape, name: str) -> Shape:
        if shape.fields is not None:
            found = shape.fields.get(name)
            if found is not None:
                return found
            known = sorted(shape.fields)
            free = f"; facts of your own go in {shape.name}.attributes.<key>" if "attributes" in known else ""
            self.problem(
                f"{shape.name} has no field {name!r}{_did_you_mean(name, known)} "
                f"(its fields: {', '.join(known)}){free}"
            )
            return _DYN
        if shape.kind == "map":
            elem = shape.elem or _DYN  # maps always carry their value shape
            return elem.named(f"{shape.name}.{name}" if shape.name else "")
        if shape.kind == "scalar":
            self.problem(
                f"{shape.name or 'an attribute value'} is an attribute value (null, bool, int, double or "
                f"string) and has no field {name!r}; attributes are flat"
            )
            return _DYN
        if shape.kind == "dyn":
            return Shape("dyn", shape.size, shape.elem)
        what = shape.name or f"a {shape.kind}"
        self.problem(f"{what} is a {shape.kind} and has no field {name!r}")
        return _DYN

    # --- the walk ---------------------------------------------------------------------

    def visit(self, node: Node, scope: Mapping[str, Shape]) -> tuple[int, Shape]:
        """(worst-case cost, shape) of ``node``."""
        path = self.path(node, scope)
        if path is not None:
            self.read(node, path, scope)
            shape = self.resolve(path)
            # A variable or a flattened field resolves without a copy; anything selected
            # out of one is copied (a string memcpy, a collection deep-copied).
            copied = len(path) > 2 or (len(path) == 2 and path not in FLATTENED)
            return len(path) + (_copy_cost(shape) if copied else 0), shape
        if isinstance(node, Literal):
            return 1, Shape(node.kind, node.size)
        if isinstance(node, Ident):
            if node.name in scope:
                return 1, scope[node.name]
            self.problem(
                f"unknown variable {node.name!r}; the engine binds only "
                f"{', '.join(VARIABLES)}{_did_you_mean(node.name, VARIABLES)}"
            )
            return 1, _DYN
        if isinstance(node, Select):
            if node.test_only:
                prefix = self.path(node.operand, scope)
                if prefix is not None:  # has(action.attributes.rows) reads that one key
                    full = (*prefix, node.field)
                    self.read(node.operand if len(full) > 2 else node, full, scope, test_only=True)
                    self.resolve(full)
                    return len(full), _BOOL
                cost, shape = self.visit(node.operand, scope)
                self.member(shape, node.field)
                return cost + 1, _BOOL
            cost, shape = self.visit(node.operand, scope)
            result = self.member(shape, node.field)
            return cost + 1 + _copy_cost(result), result
        if isinstance(node, Index):
            return self.index(node, scope)
        if isinstance(node, Call):
            return self.call(node, scope)
        if isinstance(node, Comprehension):
            return self.comprehension(node, scope)
        if isinstance(node, ListLit):
            cost, elem = 1, None
            for item in node.items:
                item_cost, item_shape = self.visit(item, scope)
                cost += item_cost + ELEMENT
                elem = item_shape if elem is None else _join(elem, item_shape)
            return cost, Shape("list", len(node.items), elem or _DYN)
        if isinstance(node, MapLit):
            cost, key, value = 1, None, None
            for k, v in node.entries:
                key_cost, key_shape = self.visit(k, scope)
                value_cost, value_shape = self.visit(v, scope)
                cost += key_cost + value_cost + ELEMENT
                key = key_shape if key is None else _join(key, key_shape)
                value = value_shape if value is None else _join(value, value_shape)
            return cost, Shape("map", len(node.entries), value or _DYN, key or _DYN)
        if isinstance(node, Message):
            self.problem(f"message construction ({node.name}{{...}}) is not supported; use a map literal")
            return 1, _DYN
        if isinstance(node, Unary):
            cost, shape = self.visit(node.operand, scope)
            return cost + 1, _BOOL if node.op == "!" else shape
        if isinstance(node, Binary):
            return self.binary(node, scope)
        if isinstance(node, Conditional):
            cond_cost, _ = self.visit(node.condition, scope)
            then_cost, then_shape = self.visit(node.then, scope)
            else_cost, else_shape = self.visit(node.otherwise, scope)
            return cond_cost + max(then_cost, else_cost) + 1, _join(then_shape, else_shape)
        raise CelSyntaxError(f"unhandled syntax {type(node).__name__}", node.start)

    def index(self, node: Index, scope: Mapping[str, Shape]) -> tuple[int, Shape]:
        cost, shape = self.visit(node.operand, scope)
        index_cost, _ = self.visit(node.index, scope)
        cost += index_cost + 1
        if shape.kind in ("list", "map"):
            elem = shape.elem or _DYN  # for a record and a dynamic key: any of its fields
            return cost + _copy_cost(elem), elem
        if shape.kind == "dyn":
            return cost + _copy_cost(shape), Shape("dyn", shape.size, shape.elem)
        self.problem(f"{shape.name or 'a ' + shape.kind} is a {shape.kind} and cannot be indexed with [...]")
        return cost, _DYN

    def call(self, node: Call, scope: Mapping[str, Shape]) -> tuple[int, Shape]:
        cost = 1
        target: Shape | None = None
        if node.target is not None:
            target_cost, target = self.visit(node.target, scope)
            cost += target_cost
        args: list[Shape] = []
        for arg in node.args:
            arg_cost, arg_shape = self.visit(arg, scope)
            cost += arg_cost
            args.append(arg_shape)
        name = node.function
        if target is None and name in FUNCTIONS:
            return self.global_call(name, args, cost)
        if target is not None and name in METHODS:
            return self.method_call(name, target, args, cost)
        if target is None and name in METHODS:
            self.problem(f"{name}() is called on a value, e.g. x.{name}(...), not as {name}(x, ...)")
        elif target is not None and name in FUNCTIONS:
            self.problem(f"{name}() is called as a function, {name}(x), not as x.{name}()")
        else:
            known = sorted({*FUNCTIONS, *METHODS})
            self.problem(
                f"unknown function {name}(){_did_you_mean(name, known)}; the engine provides "
                f"{', '.join(known)} and the macros has, all, exists, exists_one, map, filter"
            )
        return cost, _DYN

    def global_call(self, name: str, args: list[Shape], cost: int) -> tuple[int, Shape]:
        if len(args) != 1:
            self.problem(f"{name}() takes exactly one argument, got {len(args)}")
            return cost, _DYN
        arg = args[0]
        work = cost + _chars(arg.size)
        if name == "size":
            return cost, _INT
        if name in ("int", "uint", "double"):
            return work, Shape(name)
        if name in ("string", "bytes"):
            return work, Shape(name, arg.size if arg.kind in _TEXT | {"scalar", "dyn"} else 64)
        if name in ("timestamp", "duration"):
            return work, Shape(name)
        if name == "dyn":
            return cost, arg
        return cost, Shape("type")

    def method_call(self, name: str, target: Shape, args: list[Shape], cost: int) -> tuple[int, Shape]:
        if name == "size":
            if args:
                self.problem(f"x.size() takes no argument, got {len(args)}")
            return cost, _INT
        if name in _TIME_ACCESSORS:
            if args:
                self.problem(f"{name}() takes no argument here (time zones are not supported), got {len(args)}")
            if target.kind not in ("timestamp", "duration", "dyn"):
                self.problem(f"{name}() reads a timestamp, e.g. now.{name}(); {_what(target)} is a {target.kind}")
            return cost, _INT
        if len(args) != 1:
            self.problem(f"{name}() takes exactly one argument, got {len(args)}")
            return cost, _BOOL
        if target.kind not in _TEXT | {"scalar", "dyn"}:
            self.problem(f"{name}() works on strings; {_what(target)} is a {target.kind}")
        arg = args[0]
        if name == "matches":
            return cost + _chars(max(target.size, 1) * max(arg.size, 1)), _BOOL
        if name == "contains":
            return cost + _chars(target.size + arg.size), _BOOL
        return cost + _chars(min(target.size, arg.size)), _BOOL  # startsWith, endsWith

    def comprehension(self, node: Comprehension, scope: Mapping[str, Shape]) -> tuple[int, Shape]:
        range_cost, shape = self.visit(node.range, scope)
        if shape.kind == "list":
            var = shape.elem or _DYN
        elif shape.kind == "map":
            var = shape.key or Shape("string", self.limits.max_name_chars)
        elif shape.kind == "dyn":
            var = Shape("dyn", shape.size, shape.elem)
        else:
            scalar = "an attribute value (null, bool, int, double or string)"
            kind = scalar if shape.kind == "scalar" else f"a {shape.kind}"
            self.problem(f"{node.macro}() iterates over a list or map; {_what(shape)} is {kind}")
            var = _DYN
        n = shape.size if shape.kind in ("list", "map", "dyn") else 0
        inner = {**scope, node.var: var.named(node.var)}
        self.edits.append((node.args[0].start, node.args[0].start, f"({TICK_FUNCTION}() ? ("))
        self.edits.append((node.args[0].end, node.args[0].end, ") : null)"))
        per_step = ITERATION + _copy_cost(var)
        body_shape = _BOOL
        for arg in node.args:
            arg_cost, body_shape = self.visit(arg, inner)
            per_step += arg_cost
        cost = range_cost + n * per_step
        if node.macro in ("all", "exists", "exists_one"):
            return cost, _BOOL
        cost += ACCUMULATED * n * (n - 1) // 2 + ELEMENT * n
        elem = var if node.macro == "filter" else body_shape
        return cost, Shape("list", n, elem)

    def binary(self, node: Binary, scope: Mapping[str, Shape]) -> tuple[int, Shape]:
        left_cost, left = self.visit(node.left, scope)
        right_cost, right = self.visit(node.right, scope)
        cost = left_cost + right_cost + 1
        op = node.op
        if op in ("&&", "||"):
            return cost, _BOOL
        if op in ("==", "!=", "<", "<=", ">", ">="):
            return cost + _compare(left, right), _BOOL
        if op == "in":
            if right.kind == "list" or (right.kind == "dyn" and right.size):
                return cost + right.size * (1 + _compare(left, right.elem or _DYN)), _BOOL
            return cost + _chars(left.size), _BOOL
        if op == "+":
            return self.plus(left, right, cost)
        if left.kind in ("int", "uint", "double", "duration", "timestamp"):
            return cost, Shape(left.kind)
        return cost, _DYN

    def plus(self, left: Shape, right: Shape, cost: int) -> tuple[int, Shape]:
        size = left.size + right.size
        kinds = {left.kind, right.kind}
        if kinds & {"list", "map", "dyn"}:
            # A list concatenation (or, for unknown operands, the dearer reading of one).
            elem = _join(left.elem or _DYN, right.elem or _DYN)
            return cost + ELEMENT * size, Shape("list" if kinds == {"list"} else "dyn", size, elem)
        if kinds & (_TEXT | {"scalar"}):
            kind = left.kind if len(kinds) == 1 else "scalar"
            return cost + _chars(size), Shape(kind, size)
        if kinds == {"timestamp", "duration"}:
            return cost, Shape("timestamp")
        return cost, Shape(left.kind)


def _compare(left: Shape, right: Shape) -> int:
    """Worst-case units to compare two values beyond the operator's own step."""
    size = min(left.size, right.size)
    if left.kind == "list" or right.kind == "list" or left.kind == "map" or right.kind == "map":
        inner = _compare(left.elem or _DYN, right.elem or _DYN) if left.elem and right.elem else 0
        return size * (1 + inner)
    return _chars(size)


def _chars(length: int) -> int:
    return -(-length // CHARS_PER_UNIT)


def _copy_cost(shape: Shape) -> int:
    """Units to copy a value of ``shape`` (what cel-rust does when it selects it out of a map)."""
    if shape.kind in ("list", "map"):
        return shape.size * (ELEMENT + _copy_cost(shape.elem or _DYN))
    return -(-shape.size // COPY_CHARS_PER_UNIT)


def _what(shape: Shape) -> str:
    return shape.name or "the value"


def _did_you_mean(name: str, candidates: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def analyse(expression: str, limits: PolicyLimits = DEFAULT_LIMITS) -> Analysis:
    """Analyse a ``when`` expression that ``cel.compile`` accepted (see the module docstring).

    Never raises for such an expression: what it cannot read (syntax this parser does
    not know, nesting deeper than Python's recursion allows) becomes a problem, so the
    rule is refused rather than run unanalysed.
    """
    walk = _Walk(limits, variable_shapes(limits))
    try:
        cost, shape = walk.visit(parse(expression), {})
    except CelSyntaxError as exc:
        return _unusable(f"the policy checker cannot read this expression: {exc}")
    except RecursionError:
        return _unusable("the expression nests too deeply for the policy checker; split it or simplify it")
    problems = list(walk.problems)
    if shape.kind not in ("bool", "dyn", "scalar"):
        problems.append(f"a condition must be a bool, but this expression yields {shape.kind}")
    if cost > limits.rule_cost_budget:
        problems.append(
            f"worst-case cost {cost:,} units is over the budget of {limits.rule_cost_budget:,} per rule "
            f"(inputs at their bounds: {limits.max_items:,} list/map entries, {limits.max_name_chars:,}-character "
            f"names, {limits.max_value_chars:,}-character attribute values); nested comprehensions multiply, "
            "map() and filter() are quadratic, and list literals are rebuilt on each use: flatten the nesting, "
            "test membership with `in`, or match on fewer items"
        )
    return Analysis(
        tuple(problems),
        frozenset(walk.reads),
        cost,
        tuple(walk.edits),
        frozenset(walk.bindings),
        frozenset(walk.whole),
        shape.kind,
    )


def _unusable(problem: str) -> Analysis:
    return Analysis((problem,), frozenset(), 0, (), frozenset(), frozenset(), "dyn")


def instrument(expression: str, analysis: Analysis) -> str:
    """The expression the engine runs: flattened fields and a deadline check per loop step.

    Each comprehension body ``B`` becomes ``(__lockgate_tick() ? (B) : null)``: the tick
    returns true (so the result is ``B``'s) or raises once the evaluation's deadline has
    passed, which aborts the whole evaluation at once (cel-rust does not absorb errors
    raised in a comprehension). Each read of a :data:`FLATTENED` field is pointed at its
    own variable. Edits apply from the end of the text so earlier offsets stay valid; at
    one position a replacement goes before an insertion (which then lands in front of it),
    and the end of a body before the start of another.
    """
    text = expression
    order = sorted(analysis.edits, key=lambda e: (e[0], e[1], not e[2].startswith(")")), reverse=True)
    for start, end, insert in order:
        text = text[:start] + insert + text[end:]
    return text
