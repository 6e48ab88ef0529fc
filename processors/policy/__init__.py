"""The policy language: files, CEL + SQL facts, evaluation, cases, replay, publishing.

Modules:

    files         load and validate policy YAML (errors carry file:line)
    engine        CompiledPolicy: evaluate an action, return a Decision
    sql_facts     facts about attributes.sql parsed with sqlglot (kind, has_where, ...)
    cases         ``lockgate policy test``: expected decisions for example actions
    replay        ``lockgate policy replay``: a candidate policy over recorded history
    store         publish a policy version to the policies topic (and its ledger event)

Everything but ``store`` is pure, so policies are tested and benchmarked offline.
"""

__all__ = ["cases", "engine", "files", "replay", "sql_facts", "store"]
