"""Microseconds per policy evaluation, against baselines measured in the same run.

Run: ``.venv/bin/python bench/policy_bench.py [--iterations N] [--extra-rules 0,100,1000]``

Rows:

* ``baseline: execute, reused Context`` -- one compiled CEL program run on a
  ``cel.Context`` built once: the marginal cost of one more candidate rule.
* ``baseline: execute, dict per call`` -- the same program given a plain dict each call
  (the conversion cost the engine would pay per rule without one Context per action).
* ``baseline: new Context + first execute`` -- the per-action floor: the engine must
  convert the action's variables into CEL once (the first execute builds the environment).
* ``engine: ...`` -- ``CompiledPolicy.evaluate`` on the example policy, padded with N
  synthetic rules for other action types (they must cost ~nothing thanks to the index), for
  an export action (no SQL) and a db.query with SQL (first parse is cached by text, so
  this measures the steady state for repeated statements).

Not part of the test suite's pass/fail.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cel

from processors.policy.engine import CompiledPolicy
from processors.policy.files import load_policy_file

EXAMPLE = Path(__file__).resolve().parents[1] / "processors" / "policies" / "example.yaml"
NOW_US = 1_704_067_200_000_000


def per_call_us(fn: Callable[[], object], iterations: int) -> float:
    """Best of 5 runs, µs per call."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / iterations * 1e6


def action(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "action_id": "a",
        "correlation_id": "c",
        "proposed_at": 0,
        "tenant": "default",
        "service": "billing",
        "actor": {"id": "bob", "roles": ["analyst"], "attributes": {"team": "bi"}},
        "type": "export",
        "resource": "warehouse/customers",
        "attributes": {"rows": 250_000},
        "change_json": None,
        "reply_topic": "r",
        "reply_partition": 0,
        "reply_instance": "i",
        "service_key_id": None,
        "service_signature": None,
    }
    base.update(overrides)
    return base


def padded_policy(extra: int) -> CompiledPolicy:
    record = load_policy_file(EXAMPLE)
    for i in range(extra):
        record["rules"].append(
            {
                "id": f"pad-{i}",
                "description": "",
                "match": {"types": [f"synthetic.{i}"], "resources": [], "services": []},
                "when": "action.attributes.rows > 1",
                "effect": "block",
                "mode": "enforce",
                "message": "",
            }
        )
    return CompiledPolicy.from_record(record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--extra-rules", default="0,100,1000")
    args = parser.parse_args()
    n = args.iterations

    # The same variables the engine binds for the export action below.
    variables = {
        "action": {
            "type": "export",
            "resource": "warehouse/customers",
            "service": "billing",
            "tenant": "default",
            "attributes": {"rows": 250_000},
            "authenticated": True,
        },
        "actor": {"id": "bob", "roles": ["analyst"], "attributes": {"team": "bi"}},
    }
    program = cel.compile("action.attributes.rows > 10000 && !('data-steward' in actor.roles)")
    context = cel.Context(variables)
    program.execute(context)
    rows = [
        ("baseline: execute, reused Context", per_call_us(lambda: program.execute(context), n)),
        (
            "baseline: execute, dict per call",
            per_call_us(lambda: program.execute(variables), n // 10),
        ),
        (
            "baseline: new Context + first execute",
            per_call_us(lambda: program.execute(cel.Context(variables)), n // 10),
        ),
    ]
    export = action()
    query = action(type="db.query", resource="db/prod/orders", attributes={"sql": "DELETE FROM orders"})
    for extra in (int(x) for x in args.extra_rules.split(",")):
        compiled = padded_policy(extra)
        total = len(compiled.rule_ids)
        for label, act in (("export", export), ("db.query+sql", query)):
            candidates = len(compiled.candidate_rule_ids(act))

            def run(p: CompiledPolicy = compiled, a: dict[str, Any] = act) -> object:
                return p.evaluate(a, authenticated=True, now_us=NOW_US)

            rows.append(
                (
                    f"engine: {label}, {total} rules ({candidates} candidates)",
                    per_call_us(run, n),
                )
            )
    width = max(len(label) for label, _ in rows)
    for label, us in rows:
        print(f"{label:<{width}}  {us:8.2f} µs")


if __name__ == "__main__":
    main()
