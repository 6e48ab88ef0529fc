"""Bounded before/after images of the rows an UPDATE or DELETE changes.

How: in the statement's own transaction, just before it runs, the proxy selects the rows
its WHERE matches with ``FOR UPDATE`` (the same target, FROM/USING and WHERE text, the same
parameters) — so the rows are locked and cannot change between the image and the
statement. After an UPDATE it selects those rows again by key for the after-image. A
DELETE's after-image is empty.

Limits (all configurable, all reported in the image): at most ``max_rows`` rows (the
image query asks for one more to know it was cut), ``max_columns`` columns, and
``max_bytes`` of values per image. Rows a concurrent transaction inserts between the image
and the statement can be changed without being in the image; an UPDATE that changes the
key columns loses its after-image rows. The row count in the outcome is always
PostgreSQL's own (from the CommandComplete tag), not the image's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from producers.pgproxy.statements import DmlTarget

__all__ = ["ImageLimits", "RowImage", "after_image_sql", "before_image_sql", "quote_ident"]


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_rows: int = 20
    max_columns: int = 32
    max_bytes: int = 65536


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _order(target: DmlTarget, key: tuple[str, ...]) -> str:
    return ", ".join(f"{target.reference}.{quote_ident(k)}" for k in key)


def before_image_sql(target: DmlTarget, key: tuple[str, ...], limits: ImageLimits) -> str:
    """The locking SELECT of the rows ``target``'s statement is about to change."""
    parts = [target.with_sql, f"SELECT {target.reference}.* FROM {target.target_sql}"]
    if target.from_sql:
        parts.append(f", {target.from_sql}")
    if target.where_sql:
        parts.append(f"WHERE {target.where_sql}")
    parts.append(f"ORDER BY {_order(target, key)} LIMIT {limits.max_rows + 1} FOR UPDATE OF {target.reference}")
    return " ".join(p for p in parts if p)


def after_image_sql(target: DmlTarget, key: tuple[str, ...], rows: int) -> str:
    """Select ``rows`` rows of the target again by key; parameters $1.. are the key values."""
    cols = ", ".join(f"{target.reference}.{quote_ident(k)}" for k in key)
    width = len(key)
    tuples = ", ".join(
        "(" + ", ".join(f"${i * width + j + 1}" for j in range(width)) + ")" for i in range(rows)
    )
    return (f"SELECT {target.reference}.* FROM {target.target_sql} WHERE ({cols}) IN ({tuples}) "
            f"ORDER BY {_order(target, key)}")


@dataclass
class RowImage:
    """Rows as text, capped; ``keys`` keeps every captured row's key values for the after-image."""

    limits: ImageLimits
    key: tuple[str, ...]
    encoding: str = "utf-8"
    columns: list[str] = field(default_factory=list)
    rows: list[list[str | None]] = field(default_factory=list)
    keys: list[tuple[bytes | None, ...]] = field(default_factory=list)
    truncated: bool = False
    size: int = 0
    error: str | None = None
    _key_index: tuple[int, ...] = ()
    _full: bool = False  # a cap was reached: the image is a prefix (in key order) of the rows

    def on_columns(self, names: list[str]) -> None:
        self.columns = names[: self.limits.max_columns]
        self.truncated = self.truncated or len(names) > self.limits.max_columns
        try:
            self._key_index = tuple(names.index(k) for k in self.key)
        except ValueError:
            self.error = f"key column(s) {', '.join(self.key)} not in the table; no after-image"
            self._key_index = ()

    def on_row(self, values: Sequence[bytes | None]) -> None:
        kept = values[: self.limits.max_columns]
        size = sum(len(v) for v in kept if v is not None)
        if self._full or len(self.rows) >= self.limits.max_rows or self.size + size > self.limits.max_bytes:
            self.truncated = self._full = True
            return
        key = tuple(values[i] for i in self._key_index)
        if self._key_index and key in self.keys:
            return  # the same row reached twice through a join
        self.size += size
        self.rows.append([None if v is None else v.decode(self.encoding, "replace") for v in kept])
        if self._key_index:
            self.keys.append(key)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"columns": self.columns, "rows": self.rows, "truncated": self.truncated}
        if self.error:
            out["error"] = self.error
        return out
