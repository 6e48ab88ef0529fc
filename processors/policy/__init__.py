"""The policy language: files, CEL + SQL facts, evaluation, cases, replay, publishing.

Modules:

    files         load and validate policy YAML (errors carry file:line)
    limits        the size, input, cost and time limits that isolate tenants from each other
    cel_parser    a syntax tree of a CEL condition (the cel package exposes none)
    cel_analysis  what a condition reads and calls, and its worst-case cost
    conditions    compile a condition once: length cap, cel.compile, analysis, deadline checks
    engine        CompiledPolicy: evaluate an action, return a Decision
    sql_facts     facts about attributes.sql parsed with sqlglot (kind, has_where, ...)
    cases         ``lockgate policy test``: expected decisions for example actions
    replay        ``lockgate policy replay``: a candidate policy over recorded history
    store         publish a policy version to the policies topic (and its ledger event)

Everything but ``store`` is pure, so policies are tested and benchmarked offline.
"""

__all__ = [
    "cases",
    "cel_analysis",
    "cel_parser",
    "conditions",
    "engine",
    "files",
    "limits",
    "replay",
    "sql_facts",
    "store",
]
