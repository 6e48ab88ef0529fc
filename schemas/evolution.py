"""Schema evolution check: may a new schema replace the previous released one?

Lockgate requires FULL compatibility between a schema and its previous released version
(``schemas/released/<latest>/``): new readers read old data (backward) and old readers read
new data (forward), so producers and consumers can be upgraded in any order and replay
topics stay readable forever. The rules are Avro's schema-resolution rules:

* records: a reader field missing from the writer needs a default; a writer field the
  reader lacks is skipped; field types must resolve recursively (aliases are not used);
* enums: every writer symbol must exist in the reader (or the reader has a default);
* unions: every writer branch must resolve to some reader branch; a non-union writer must
  resolve to some branch of a union reader;
* primitives: equal, or a promotion int→long→float→double, string↔bytes;
* arrays/maps: item/value types resolve; fixed: same name and size.
"""

from __future__ import annotations

from typing import Any

from schemas.codec import SCHEMA_NAMES, TOP_LEVEL, load_schema_json, released_versions, schema_exists
from schemas.errors import IncompatibleSchema

__all__ = ["check_backward", "check_full", "check_reads", "check_release"]

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "double": {"double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class _Names:
    """Named types seen while walking a schema (records, enums, fixed)."""

    def __init__(self) -> None:
        self.types: dict[str, dict[str, Any]] = {}

    def collect(self, node: Any, namespace: str = "") -> None:
        if isinstance(node, list):
            for branch in node:
                self.collect(branch, namespace)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in ("record", "enum", "fixed"):
                ns = node.get("namespace", namespace)
                name = node["name"]
                full = name if "." in name else (f"{ns}.{name}" if ns else name)
                self.types[full] = node
                self.types[name.rsplit(".", 1)[-1]] = node
                if kind == "record":
                    for field in node["fields"]:
                        self.collect(field["type"], ns)
            elif kind in ("array", "map"):
                self.collect(node.get("items", node.get("values")), namespace)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, str) and node not in _PRIMITIVES:
            short = node.rsplit(".", 1)[-1]
            return self.types.get(node, self.types.get(short, node))
        if isinstance(node, dict) and node.get("type") in _PRIMITIVES and len(node) <= 2:
            return node["type"]
        return node


def _kind(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    if isinstance(node, str):
        return node
    return str(node["type"])


def check_reads(writer: Any, reader: Any, w_names: _Names, r_names: _Names, path: str) -> list[str]:
    """Problems that stop ``reader`` from reading data written with ``writer``."""
    w = w_names.resolve(writer)
    r = r_names.resolve(reader)
    wk, rk = _kind(w), _kind(r)
    if wk == "union":
        return [p for branch in w for p in check_reads(branch, r, w_names, r_names, path)]
    if rk == "union":
        for branch in r:
            if not check_reads(w, branch, w_names, r_names, path):
                return []
        return [f"{path}: writer type {wk} matches no branch of the reader's union"]
    if wk in _PRIMITIVES or rk in _PRIMITIVES:
        if rk in _PROMOTIONS.get(wk, {wk}):
            return []
        return [f"{path}: writer type {wk} cannot be read as {rk}"]
    if wk != rk:
        return [f"{path}: writer type {wk} cannot be read as {rk}"]
    if wk == "record":
        problems: list[str] = []
        w_fields = {f["name"]: f for f in w["fields"]}
        for field in r["fields"]:
            name = field["name"]
            if name in w_fields:
                problems += check_reads(w_fields[name]["type"], field["type"], w_names, r_names,
                                        f"{path}.{name}")
            elif "default" not in field:
                problems.append(f"{path}.{name}: field added without a default")
        return problems
    if wk == "enum":
        missing = set(w["symbols"]) - set(r["symbols"])
        if missing and "default" not in r:
            return [f"{path}: enum symbols {sorted(missing)} unknown to the reader"]
        return []
    if wk == "array":
        return check_reads(w["items"], r["items"], w_names, r_names, f"{path}[]")
    if wk == "map":
        return check_reads(w["values"], r["values"], w_names, r_names, f"{path}{{}}")
    if wk == "fixed":
        return [] if w["size"] == r["size"] else [f"{path}: fixed size {w['size']} != {r['size']}"]
    return [f"{path}: unsupported type {wk}"]


def _names_for(schemas: dict[str, Any]) -> _Names:
    names = _Names()
    for node in schemas.values():
        names.collect(node)
    return names


def check_full(old: dict[str, Any], new: dict[str, Any], top: str) -> list[str]:
    """Problems in both directions between two schema sets for the top-level schema ``top``."""
    old_names, new_names = _names_for(old), _names_for(new)
    backward = check_reads(old[top], new[top], old_names, new_names, top)
    forward = check_reads(new[top], old[top], new_names, old_names, top)
    return [f"new cannot read old: {p}" for p in backward] + [f"old cannot read new: {p}" for p in forward]


def check_backward(old: dict[str, Any], new: dict[str, Any], top: str) -> list[str]:
    """Problems the new set has reading data the old set wrote, for the top-level schema ``top``."""
    if top not in old:
        return []
    return [f"new cannot read old: {p}" for p in
            check_reads(old[top], new[top], _names_for(old), _names_for(new), top)]


def _set(version: str | None) -> dict[str, Any]:
    """The schemas of a set (current, or a release) by name; a release lacks names added after it."""
    return {n: load_schema_json(n, version) for n in SCHEMA_NAMES if schema_exists(n, version)}


def check_release(previous: str | None = None) -> None:
    """Raise :class:`IncompatibleSchema` if current schemas break the released sets.

    The contract (README, "Schema evolution"): the current schemas are FULLY compatible with
    the newest release, so producers and consumers of it upgrade in any order; and every
    set, current or released, reads everything any earlier release wrote (BACKWARD), so
    replay topics and ledgers stay readable forever. A release may add enum symbols the
    release before could not read (v2 did, for review, replay, expiry and break-glass):
    such a release is a major one, and consumers upgrade before producers. Since v2 the
    growing enums carry a default (``block`` for effects: an old reader fails closed).
    """
    versions = released_versions()
    if not versions:
        return
    newest = previous or versions[-1]
    current = _set(None)
    problems = [p for top in TOP_LEVEL if top in _set(newest) for p in check_full(_set(newest), current, top)]
    sets = {v: _set(v) for v in versions}
    for older in versions[: versions.index(newest) + 1]:
        problems += [f"{older}: {p}" for top in TOP_LEVEL for p in check_backward(sets[older], current, top)]
    if problems:
        raise IncompatibleSchema(
            f"schemas are not compatible with release {newest}:\n  " + "\n  ".join(problems)
            + "\nadd defaults to new fields, never remove or retype a field without a default"
        )
