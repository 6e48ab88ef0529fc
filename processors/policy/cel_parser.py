"""Parse a CEL expression into a small syntax tree with source offsets.

Why a parser of our own: the ``common-expression-language`` package compiles and runs CEL
but exposes no syntax tree, type checker or cost estimate, only the names an expression
references. Validation needs more than names: member chains (to reject
``action.no_such_field``), the macro structure (to bound what a comprehension may cost)
and source offsets (to put a deadline check into every comprehension body, see
:func:`processors.policy.cel_analysis.instrument`).

``cel.compile`` stays the authority on what is valid CEL: callers compile first and report
its error. This parser only has to agree with it on expressions it accepts; where it cannot
read one it raises :class:`CelSyntaxError` and the policy is refused (fail closed), never
run unanalysed.

The grammar is CEL's (https://github.com/google/cel-spec/blob/master/doc/langdef.md),
without the optional-syntax forms (``a.?b``, ``[?x]``) that cel-rust rejects too::

    expr     = or ["?" or ":" expr]
    or       = and {"||" and}
    and      = rel {"&&" rel}
    rel      = add {("<" | "<=" | ">=" | ">" | "==" | "!=" | "in") add}
    add      = mul {("+" | "-") mul}
    mul      = unary {("*" | "/" | "%") unary}
    unary    = {"!" | "-"} member
    member   = primary {"." IDENT ["(" [args] ")"] | "[" expr "]"}
    primary  = ["."] IDENT ["(" [args] ")"] | "(" expr ")" | "[" [args] [","] "]"
             | "{" [entries] [","] "}" | IDENT {"." IDENT} "{" [fields] [","] "}" | literal

Macros are recognised here as CEL defines them: ``has(a.b)`` becomes a test-only
:class:`Select`; ``r.all(x, p)``, ``exists``, ``exists_one``, ``filter`` and the two- and
three-argument ``map`` become :class:`Comprehension`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

__all__ = [
    "MACROS",
    "Binary",
    "Call",
    "CelSyntaxError",
    "Comprehension",
    "Conditional",
    "Ident",
    "Index",
    "ListLit",
    "Literal",
    "MapLit",
    "Message",
    "Node",
    "Select",
    "Unary",
    "parse",
]

#: Comprehension macros (receiver-style), with the argument counts CEL defines for each.
MACROS: dict[str, tuple[int, ...]] = {
    "all": (2,),
    "exists": (2,),
    "exists_one": (2,),
    "filter": (2,),
    "map": (2, 3),
}


class CelSyntaxError(ValueError):
    """The expression is not CEL this parser reads; ``offset`` is where it stopped."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Node:
    """A syntax-tree node; ``start``/``end`` delimit its source text (end exclusive)."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """``kind``: int, uint, double, string, bytes, bool or null; ``size`` the length of a
    string or bytes value once escapes are decoded (0 for the others)."""

    kind: str
    value: object
    size: int


@dataclass(frozen=True, slots=True)
class Ident(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Select(Node):
    """``operand.field``; ``test_only`` for ``has(operand.field)``."""

    operand: Node
    field: str
    test_only: bool = False


@dataclass(frozen=True, slots=True)
class Index(Node):
    operand: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    """A function call: ``function(args)`` or, with ``target``, ``target.function(args)``."""

    function: str
    target: Node | None
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Comprehension(Node):
    """``range.macro(var, *args)``: ``args`` is ``(body,)``, or ``(predicate, transform)``
    for the three-argument ``map``."""

    macro: str
    range: Node
    var: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class ListLit(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapLit(Node):
    entries: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True, slots=True)
class Message(Node):
    """``pkg.Type{field: value}``: parsed so it can be refused with a clear message."""

    name: str
    fields: tuple[tuple[str, Node], ...]


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Conditional(Node):
    condition: Node
    then: Node
    otherwise: Node


_STRING = (
    r"(?P<string>(?:[rR][bB]?|[bB][rR]?)?"
    r"(?:\"\"\"(?:\\.|[^\\])*?\"\"\"|'''(?:\\.|[^\\])*?'''"
    r"|\"(?:\\.|[^\\\"\n\r])*\"|'(?:\\.|[^\\'\n\r])*'))"
)
_TOKEN = re.compile(
    r"(?P<skip>\s+|//[^\n]*)"
    r"|" + _STRING + r"|(?P<double>\d*\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)"
    r"|(?P<hex>0[xX][0-9a-fA-F]+[uU]?)"
    r"|(?P<int>\d+[uU]?)"
    r"|(?P<ident>[_a-zA-Z][_a-zA-Z0-9]*)"
    r"|(?P<op>\|\||&&|==|!=|<=|>=|[<>!+\-*/%?:.,()\[\]{}])",
    re.DOTALL,
)
# Raw strings end at the first closing quote: a backslash does not escape it.
_RAW_STRING = re.compile(
    r"[rR][bB]?|[bB][rR]",
)
_RAW_BODY = {
    '"""': re.compile(r'"""(.*?)"""', re.DOTALL),
    "'''": re.compile(r"'''(.*?)'''", re.DOTALL),
    '"': re.compile(r'"([^"\n\r]*)"'),
    "'": re.compile(r"'([^'\n\r]*)'"),
}
_ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-3][0-7]{2}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
}
_RELATIONS = frozenset({"<", "<=", ">=", ">", "==", "!=", "in"})
_KEYWORDS = frozenset({"true", "false", "null", "in"})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, double, hex, int, ident, op, end
    text: str
    start: int
    end: int


def _tokens(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    length = len(source)
    while position < length:
        if source[position] in "rRbB" and (raw := _raw_string(source, position)) is not None:
            tokens.append(raw)
            position = raw.end
            continue
        match = _TOKEN.match(source, position)
        if match is None:
            raise CelSyntaxError(f"unexpected character {source[position]!r}", position)
        kind = match.lastgroup or "op"
        if kind != "skip":
            tokens.append(_Token(kind, match.group(), position, match.end()))
        position = match.end()
    tokens.append(_Token("end", "", length, length))
    return tokens


def _raw_string(source: str, position: int) -> _Token | None:
    prefix = _RAW_STRING.match(source, position)
    if prefix is None:
        return None
    after = prefix.end()
    for quote, body in _RAW_BODY.items():
        if source.startswith(quote, after):
            found = body.match(source, after)
            if found is None:
                raise CelSyntaxError("unterminated raw string", position)
            return _Token("string", source[position : found.end()], position, found.end())
    return None  # an identifier starting with r/b, e.g. ``roles``


def _decode_string(text: str) -> tuple[str, object, int]:
    """(kind, value, size) of a string or bytes literal token."""
    prefix_len = 0
    while text[prefix_len] not in "\"'":
        prefix_len += 1
    prefix = text[:prefix_len].lower()
    triple = text[prefix_len : prefix_len + 3]
    quote = triple if triple in ('"""', "'''") else text[prefix_len]
    body = text[prefix_len + len(quote) : len(text) - len(quote)]
    if "r" not in prefix:
        body = _ESCAPE.sub(_unescape, body)
    kind = "bytes" if "b" in prefix else "string"
    value: object = body.encode("utf-8", "surrogatepass") if kind == "bytes" else body
    return kind, value, len(body)


def _unescape(match: re.Match[str]) -> str:
    escape = match.group()[1:]
    if escape[0] in "xuU":
        return chr(int(escape[1:], 16)) if int(escape[1:], 16) <= 0x10FFFF else ""
    if escape[0] in "0123" and len(escape) == 3:
        return chr(int(escape, 8))
    return _SIMPLE_ESCAPES.get(escape, escape)


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.position = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.position]

    def at(self, text: str) -> bool:
        token = self.tokens[self.position]
        return token.text == text and token.kind in ("op", "ident")

    def advance(self) -> _Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def expect(self, text: str) -> _Token:
        if not self.at(text):
            token = self.token
            found = repr(token.text) if token.kind != "end" else "the end"
            raise CelSyntaxError(f"expected {text!r}, found {found}", token.start)
        return self.advance()

    def parse(self) -> Node:
        node = self.expr()
        if self.token.kind != "end":
            raise CelSyntaxError(f"unexpected {self.token.text!r}", self.token.start)
        return node

    def expr(self) -> Node:
        condition = self.or_()
        if not self.at("?"):
            return condition
        self.advance()
        then = self.or_()
        self.expect(":")
        otherwise = self.expr()
        return Conditional(condition.start, otherwise.end, condition, then, otherwise)

    def or_(self) -> Node:
        left = self.and_()
        while self.at("||"):
            self.advance()
            right = self.and_()
            left = Binary(left.start, right.end, "||", left, right)
        return left

    def and_(self) -> Node:
        left = self.relation()
        while self.at("&&"):
            self.advance()
            right = self.relation()
            left = Binary(left.start, right.end, "&&", left, right)
        return left

    def relation(self) -> Node:
        left = self.addition()
        while self.token.text in _RELATIONS and self.token.kind in ("op", "ident"):
            op = self.advance().text
            right = self.addition()
            left = Binary(left.start, right.end, op, left, right)
        return left

    def addition(self) -> Node:
        left = self.multiplication()
        while self.token.kind == "op" and self.token.text in ("+", "-"):
            op = self.advance().text
            right = self.multiplication()
            left = Binary(left.start, right.end, op, left, right)
        return left

    def multiplication(self) -> Node:
        left = self.unary()
        while self.token.kind == "op" and self.token.text in ("*", "/", "%"):
            op = self.advance().text
            right = self.unary()
            left = Binary(left.start, right.end, op, left, right)
        return left

    def unary(self) -> Node:
        # Mixed prefixes (``!-1``) are accepted: cel reads ``-1`` as a literal there.
        ops: list[_Token] = []
        while self.token.kind == "op" and self.token.text in ("!", "-"):
            ops.append(self.advance())
        node = self.member()
        for op in reversed(ops):
            node = Unary(op.start, node.end, op.text, node)
        return node

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.at("."):
                self.advance()
                name = self.identifier()
                if self.at("("):
                    args, end = self.arguments()
                    node = self.member_call(node, name.text, args, end)
                else:
                    node = Select(node.start, name.end, node, name.text)
            elif self.at("["):
                self.advance()
                index = self.expr()
                end = self.expect("]").end
                node = Index(node.start, end, node, index)
            elif self.at("{") and _qualified_name(node) is not None:
                node = self.message(node)
            else:
                return node

    def member_call(self, target: Node, function: str, args: tuple[Node, ...], end: int) -> Node:
        counts = MACROS.get(function)
        if counts is not None and len(args) in counts and isinstance(args[0], Ident):
            return Comprehension(target.start, end, function, target, args[0].name, args[1:])
        return Call(target.start, end, function, target, args)

    def identifier(self) -> _Token:
        token = self.token
        if token.kind != "ident" or token.text in _KEYWORDS:
            raise CelSyntaxError(f"expected a field or function name, found {token.text!r}", token.start)
        return self.advance()

    def arguments(self) -> tuple[tuple[Node, ...], int]:
        self.expect("(")
        args: list[Node] = []
        if not self.at(")"):
            args.append(self.expr())
            while self.at(","):
                self.advance()
                args.append(self.expr())
        return tuple(args), self.expect(")").end

    def primary(self) -> Node:
        token = self.token
        if (token.kind == "ident" and token.text not in _KEYWORDS) or self.at("."):
            start = token.start
            if self.at("."):
                self.advance()
                token = self.identifier()
                name = "." + token.text
            else:
                self.advance()
                name = token.text
            if self.at("("):
                args, end = self.arguments()
                if name == "has":
                    return self.has(start, args, end)
                return Call(start, end, name, None, args)
            return Ident(start, token.end, name)
        if self.at("("):
            start = self.advance().start
            inner = self.expr()
            end = self.expect(")").end
            # The span covers the parentheses, so text inserted around it stays balanced.
            return replace(inner, start=start, end=end)
        if self.at("["):
            return self.list_literal()
        if self.at("{"):
            return self.map_literal()
        return self.literal()

    def has(self, start: int, args: tuple[Node, ...], end: int) -> Node:
        if len(args) != 1 or not isinstance(args[0], Select):
            raise CelSyntaxError("has() takes one field selection, e.g. has(action.attributes.rows)", start)
        select = args[0]
        return Select(start, end, select.operand, select.field, test_only=True)

    def list_literal(self) -> Node:
        start = self.expect("[").start
        items: list[Node] = []
        while not self.at("]"):
            items.append(self.expr())
            if not self.at(","):
                break
            self.advance()
        end = self.expect("]").end
        return ListLit(start, end, tuple(items))

    def map_literal(self) -> Node:
        start = self.expect("{").start
        entries: list[tuple[Node, Node]] = []
        while not self.at("}"):
            key = self.expr()
            self.expect(":")
            entries.append((key, self.expr()))
            if not self.at(","):
                break
            self.advance()
        end = self.expect("}").end
        return MapLit(start, end, tuple(entries))

    def message(self, name_node: Node) -> Node:
        name = _qualified_name(name_node) or ""
        self.expect("{")
        fields: list[tuple[str, Node]] = []
        while not self.at("}"):
            field = self.identifier().text
            self.expect(":")
            fields.append((field, self.expr()))
            if not self.at(","):
                break
            self.advance()
        end = self.expect("}").end
        return Message(name_node.start, end, name, tuple(fields))

    def literal(self) -> Node:
        token = self.advance()
        start, end = token.start, token.end
        if token.kind == "string":
            kind, value, size = _decode_string(token.text)
            return Literal(start, end, kind, value, size)
        if token.kind == "double":
            return Literal(start, end, "double", float(token.text), 0)
        if token.kind in ("int", "hex"):
            unsigned = token.text[-1] in "uU"
            digits = token.text[:-1] if unsigned else token.text
            value = int(digits, 16) if token.kind == "hex" else int(digits)
            return Literal(start, end, "uint" if unsigned else "int", value, 0)
        if token.kind == "ident" and token.text in ("true", "false"):
            return Literal(start, end, "bool", token.text == "true", 0)
        if token.kind == "ident" and token.text == "null":
            return Literal(start, end, "null", None, 0)
        found = repr(token.text) if token.kind != "end" else "the end"
        raise CelSyntaxError(f"expected a value, found {found}", start)


def _qualified_name(node: Node) -> str | None:
    if isinstance(node, Ident):
        return node.name
    if isinstance(node, Select) and not node.test_only:
        prefix = _qualified_name(node.operand)
        return None if prefix is None else f"{prefix}.{node.field}"
    return None


def parse(source: str) -> Node:
    """Parse ``source`` into a syntax tree; raises :class:`CelSyntaxError` if it cannot."""
    return _Parser(source).parse()
