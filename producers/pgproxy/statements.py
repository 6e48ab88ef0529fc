"""What the proxy needs to know about a statement's text before and after it runs.

* :func:`split_statements` cuts a simple-query string into the statements PostgreSQL
  will run, with sqlglot's PostgreSQL tokenizer (standard strings, ``E''`` escapes,
  dollar quotes and nested comments behave as in PostgreSQL with
  ``standard_conforming_strings`` on — the session refuses statements while it is off).
  Each piece is judged on its own. If the text does not tokenize, it stays one piece:
  the processor then sees exactly what PostgreSQL would, and unparseable SQL follows the
  policy's ``on_error``.
* :func:`transaction_control` recognises BEGIN/COMMIT/ROLLBACK/SAVEPOINT/RELEASE, which
  pass through unjudged (they change no data; they decide whether judged changes commit).
  The grammar is strict — any token it does not expect makes the statement an ordinary,
  judged one — so nothing can ride along with a COMMIT.
* :func:`sql_prepare_command` sees SQL-level ``PREPARE``/``EXECUTE``/``DEALLOCATE``, so
  ``EXECUTE p`` is judged as the statement ``p`` holds.
* :func:`redact_secrets` masks ``PASSWORD '…'`` in role statements before they are
  proposed: proposals land in the audit ledger, and passwords must not.
* :func:`dml_target` finds the table an UPDATE/DELETE/INSERT/MERGE changes, and the raw
  text of its target, FROM/USING and WHERE clauses, for the before/after images.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.tokenizer_core import Token, TokenType

__all__ = [
    "Control",
    "DmlTarget",
    "PrepareCommand",
    "dml_target",
    "redact_secrets",
    "split_statements",
    "sql_prepare_command",
    "transaction_control",
]

_DIALECT = sqlglot.Dialect.get_or_raise("postgres")
# sqlglot warns when it falls back to an opaque Command; for us that is an expected answer.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


def _tokens(text: str) -> list[Token] | None:
    try:
        return list(_DIALECT.tokenize(text))
    except Exception:  # any tokenizer failure: the caller keeps the text whole
        return None


def split_statements(text: str) -> list[str]:
    """The statements of a simple-query string, each without its terminating semicolon.

    Empty statements (only whitespace, comments or ``;``) are dropped, as PostgreSQL does.
    """
    tokens = _tokens(text)
    if tokens is None:
        return [text.strip()] if text.strip() else []
    pieces: list[str] = []
    start = 0
    has_token = False
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            if has_token:
                pieces.append(text[start:tok.start].strip())
            start, has_token = tok.end + 1, False
        else:
            has_token = True
    if has_token:
        pieces.append(text[start:].strip())
    return pieces


ControlKind = Literal["begin", "commit", "rollback", "savepoint", "release", "rollback_to"]


@dataclass(frozen=True, slots=True)
class _Lexeme:
    kind: Literal["word", "name", "string", "punct"]
    text: str  # word: upper case; name: the identifier as PostgreSQL folds it; string: raw
    start: int
    end: int  # exclusive


_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_IDENT = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")


def _lex(text: str) -> list[_Lexeme] | None:
    """A small PostgreSQL lexer for the commands sqlglot keeps opaque (SAVEPOINT, PREPARE...).

    Comments are dropped (block comments nest, as in PostgreSQL); returns None on an
    unterminated string, identifier or comment.
    """
    out: list[_Lexeme] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("--", i):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while depth and i < n:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                return None
        elif c == '"':
            j = i + 1
            while True:
                j = text.find('"', j)
                if j < 0:
                    return None
                if text.startswith('""', j):
                    j += 2
                    continue
                break
            out.append(_Lexeme("name", text[i + 1:j].replace('""', '"'), i, j + 1))
            i = j + 1
        elif c == "'" or (c in "eE" and text.startswith("'", i + 1)):
            backslash = c != "'"
            j = i + (2 if backslash else 1)
            while True:
                if j >= n:
                    return None
                if backslash and text[j] == "\\":
                    j += 2
                elif text[j] == "'":
                    if text.startswith("''", j):
                        j += 2
                        continue
                    break
                else:
                    j += 1
            out.append(_Lexeme("string", text[i:j + 1], i, j + 1))
            i = j + 1
        elif (m := _DOLLAR.match(text, i)) is not None:
            close = text.find(m.group(0), m.end())
            if close < 0:
                return None
            end = close + len(m.group(0))
            out.append(_Lexeme("string", text[i:end], i, end))
            i = end
        elif (m := _IDENT.match(text, i)) is not None:
            out.append(_Lexeme("word", m.group(0).upper(), i, m.end()))
            i = m.end()
        else:
            out.append(_Lexeme("punct", c, i, i + 1))
            i += 1
    return out


def _as_name(lex: _Lexeme) -> str | None:
    if lex.kind == "name":
        return lex.text
    return lex.text.lower() if lex.kind == "word" else None


@dataclass(frozen=True, slots=True)
class Control:
    """A transaction-control statement: its kind and, for savepoints, the savepoint's name."""

    kind: ControlKind
    savepoint: str | None = None


_MODE_WORDS = frozenset({"WORK", "TRANSACTION", "ISOLATION", "LEVEL", "SERIALIZABLE", "REPEATABLE", "READ",
                         "COMMITTED", "UNCOMMITTED", "WRITE", "ONLY", "NOT", "DEFERRABLE", ","})
_END_WORDS = frozenset({"WORK", "TRANSACTION", "AND", "NO", "CHAIN"})


def _words(lexemes: list[_Lexeme]) -> list[str]:
    """Upper-case words and punctuation; names and strings become markers no keyword equals."""
    return [lx.text if lx.kind in ("word", "punct") else "\x00" for lx in lexemes]


@lru_cache(maxsize=1024)
def transaction_control(text: str) -> Control | None:
    """The :class:`Control` ``text`` is, or None if it is anything else (then it is judged)."""
    lexemes = _lex(text)
    if not lexemes:
        return None
    if lexemes[-1].text == ";":
        lexemes = lexemes[:-1]
    words = _words(lexemes)
    if not words:
        return None
    first, rest = words[0], words[1:]
    if first == "BEGIN" or (first == "START" and rest[:1] == ["TRANSACTION"]):
        return Control("begin") if set(rest) <= _MODE_WORDS else None
    if first in ("COMMIT", "END"):
        return Control("commit") if set(rest) <= _END_WORDS else None
    if first in ("ROLLBACK", "ABORT"):
        if set(rest) <= _END_WORDS:
            return Control("rollback")
        tail = rest[1:] if rest[:1] in (["WORK"], ["TRANSACTION"]) else rest
        if first == "ROLLBACK" and tail[:1] == ["TO"]:
            tail = tail[1:]
            if tail[:1] == ["SAVEPOINT"] and len(tail) == 2:
                tail = tail[1:]
            name = _as_name(lexemes[-1]) if len(tail) == 1 else None
            return Control("rollback_to", name) if name else None
        return None
    if first == "SAVEPOINT" and len(words) == 2:
        name = _as_name(lexemes[1])
        return Control("savepoint", name) if name else None
    if first == "RELEASE" and (len(words) == 2 or (len(words) == 3 and words[1] == "SAVEPOINT")):
        name = _as_name(lexemes[-1])
        return Control("release", name) if name else None
    return None


@dataclass(frozen=True, slots=True)
class PrepareCommand:
    """SQL-level prepared statements: ``PREPARE name AS body``, ``EXECUTE name``, ``DEALLOCATE``."""

    kind: Literal["prepare", "execute", "deallocate"]
    name: str | None  # None: DEALLOCATE ALL
    body: str | None = None  # PREPARE only


def sql_prepare_command(text: str) -> PrepareCommand | None:
    lexemes = _lex(text)
    if not lexemes or len(lexemes) < 2:
        return None
    first = lexemes[0].text if lexemes[0].kind == "word" else ""
    if first == "EXECUTE":
        name = _as_name(lexemes[1])
        return PrepareCommand("execute", name) if name else None
    if first == "DEALLOCATE":
        rest = lexemes[1:]
        if rest and rest[0].text == "PREPARE" and rest[0].kind == "word":
            rest = rest[1:]
        if rest and rest[-1].text == ";":
            rest = rest[:-1]
        if len(rest) != 1:
            return None
        if rest[0].kind == "word" and rest[0].text == "ALL":
            return PrepareCommand("deallocate", None)
        name = _as_name(rest[0])
        return PrepareCommand("deallocate", name) if name else None
    if first == "PREPARE":
        name = _as_name(lexemes[1])
        if name is None or (lexemes[1].kind == "word" and lexemes[1].text == "TRANSACTION"):
            return None
        depth = 0
        for lx in lexemes[2:]:
            if lx.text == "(":
                depth += 1
            elif lx.text == ")":
                depth -= 1
            elif depth == 0 and lx.kind == "word" and lx.text == "AS":
                return PrepareCommand("prepare", name, text[lx.end:].strip())
        return None
    return None


def redact_secrets(text: str) -> str:
    """``text`` with the string after ``PASSWORD`` masked in CREATE/ALTER ROLE/USER/GROUP."""
    if "password" not in text.lower():
        return text
    lexemes = _lex(text)
    if not lexemes or len(lexemes) < 2:
        return text
    words = _words(lexemes)
    if words[0] not in ("CREATE", "ALTER") or words[1] not in ("ROLE", "USER", "GROUP"):
        return text
    out, last = [], 0
    for prev, lx in itertools.pairwise(lexemes):
        if prev.kind == "word" and prev.text == "PASSWORD" and lx.kind == "string":
            out.append(text[last:lx.start] + "'***'")
            last = lx.end
    out.append(text[last:])
    return "".join(out)


DmlKind = Literal["UPDATE", "DELETE", "INSERT", "MERGE"]

#: Functions that may not be re-evaluated for a before-image: they change something or
#: give another answer each call, so the image would not be the rows the statement touched.
_UNSAFE_FUNCTIONS: tuple[type[exp.Expression], ...] = (exp.Anonymous, exp.Rand)


@dataclass(frozen=True, slots=True)
class DmlTarget:
    """The table a data-changing statement writes, and the raw clauses an image query reuses.

    ``table`` is lower-cased, ``schema.table`` when qualified. ``image_error`` says why no
    before-image can be taken (None when ``target_sql``/``where_sql`` are usable).
    """

    kind: DmlKind
    table: str
    reference: str  # how the statement's other clauses name the target (alias or table), quoted
    target_sql: str = ""
    from_sql: str = ""
    where_sql: str = ""
    with_sql: str = ""
    image_error: str | None = None

    def names(self) -> tuple[str, ...]:
        """Names a configuration may use for the table: ``schema.table`` and ``table``."""
        bare = self.table.rsplit(".", 1)[-1]
        return (self.table, bare) if bare != self.table else (bare,)


def _table_of(node: exp.Expression | None) -> exp.Table | None:
    if isinstance(node, exp.Schema):
        node = node.this
    return node if isinstance(node, exp.Table) else None


def _qualified(table: exp.Table) -> str:
    return ".".join(p.lower() for p in (table.db, table.name) if p)


@lru_cache(maxsize=1024)
def dml_target(text: str) -> DmlTarget | None:
    """The DML target of ``text``, or None when it changes no table (or does not parse)."""
    try:
        tree = sqlglot.parse_one(text, read="postgres")
    except Exception:
        return None
    if isinstance(tree, exp.Insert | exp.Merge):
        table = _table_of(tree.this)
        if table is None or not table.name:
            return None
        kind: DmlKind = "INSERT" if isinstance(tree, exp.Insert) else "MERGE"
        return DmlTarget(kind, _qualified(table), table.alias_or_name, image_error="images cover UPDATE/DELETE")
    if not isinstance(tree, exp.Update | exp.Delete):
        return None
    table = _table_of(tree.this)
    if table is None or not table.name:
        return None
    kind = "UPDATE" if isinstance(tree, exp.Update) else "DELETE"
    alias = table.args.get("alias")
    ident = alias.this if isinstance(alias, exp.TableAlias) and alias.this is not None else table.this
    reference = ident.sql(dialect="postgres") if isinstance(ident, exp.Identifier) else table.name
    base = DmlTarget(kind, _qualified(table), reference)
    problem = _image_problem(tree)
    if problem:
        return _replace_error(base, problem)
    clauses = _clauses(text, kind)
    if clauses is None:
        return _replace_error(base, "the statement's clauses could not be located")
    target_sql, from_sql, where_sql, with_sql = clauses
    return DmlTarget(kind, base.table, reference, target_sql, from_sql, where_sql, with_sql)


def _replace_error(base: DmlTarget, problem: str) -> DmlTarget:
    return DmlTarget(base.kind, base.table, base.reference, image_error=problem)


def _image_problem(tree: exp.Expression) -> str | None:
    where = tree.args.get("where")
    if not isinstance(where, exp.Where):
        return None  # no WHERE: every row (the image query selects all of them, capped)
    scopes = [where, tree.args.get("from_"), tree.args.get("with_"), *(tree.args.get("using") or [])]
    for scope in scopes:
        if not isinstance(scope, exp.Expression):
            continue
        if any(True for _ in scope.find_all(*_UNSAFE_FUNCTIONS)):
            return "its WHERE/FROM calls a function that may not be re-evaluated (volatile or user-defined)"
        if any(True for _ in scope.find_all(exp.Insert, exp.Update, exp.Delete, exp.Merge)):
            return "its WHERE/FROM/WITH holds a data-changing statement"
    return None


def _clauses(text: str, kind: DmlKind) -> tuple[str, str, str, str] | None:
    """Raw text of target, FROM/USING, WHERE and WITH, cut at top-level keywords."""
    lexemes = _lex(text)
    if not lexemes:
        return None
    depth = 0
    marks: dict[str, _Lexeme] = {}
    head: int | None = None
    for i, lx in enumerate(lexemes):
        if lx.text == "(":
            depth += 1
        elif lx.text == ")":
            depth -= 1
        elif depth or lx.kind != "word":
            continue
        elif head is None and lx.text == kind:
            head = i
            if kind == "DELETE":
                if i + 1 >= len(lexemes) or lexemes[i + 1].text != "FROM":
                    return None
                marks["TARGET"] = lexemes[i + 1]
            else:
                marks["TARGET"] = lx
        elif (head is not None and lx is not marks["TARGET"] and lx.text not in marks
              and lx.text in ("SET", "FROM", "USING", "WHERE", "RETURNING")):
            marks[lx.text] = lx
    if head is None:
        return None
    where = marks.get("WHERE")
    if where is not None:
        following = lexemes[lexemes.index(where) + 1:]
        if following[:1] and following[0].text == "CURRENT":
            return None  # WHERE CURRENT OF cursor: the cursor's row cannot be selected again
    ends = sorted(lx.start for w, lx in marks.items() if w != "TARGET")

    def until(pos: int) -> int:
        return next((e for e in ends if e > pos), len(text))

    target = marks["TARGET"]
    target_sql = text[target.end:until(target.start)].strip().rstrip(";").strip()
    source = marks.get("FROM") if kind == "UPDATE" else marks.get("USING")
    from_sql = text[source.end:until(source.start)].strip().rstrip(";").strip() if source else ""
    where_sql = text[where.end:until(where.start)].strip().rstrip(";").strip() if where else ""
    with_sql = text[:lexemes[head].start].strip() if lexemes[0].text == "WITH" else ""
    return target_sql, from_sql, where_sql, with_sql
