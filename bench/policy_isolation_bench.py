"""Tenant isolation: how long one tenant's costly rule holds another tenant's decision.

Run: ``.venv/bin/python bench/policy_isolation_bench.py [--quick]``

A processor decides one action at a time, so a quiet tenant's action queued behind a
noisy tenant's action waits for the noisy evaluation to end. Rows, all from this run:

* ``normal decision``: the quiet tenant (the example policy, an export action), µs per
  decision: the baseline every other row is read against;
* ``static budget``: the noisy tenant's rule, a ``200³`` comprehension over list literals,
  under the default limits: refused at validate (its estimate is printed), so it never
  runs and the wait it causes is zero;
* ``quiet tenant waits``: the same rule compiled with the cost budget lifted (standing in
  for a rule the estimate misses), decided just before the quiet action: the wall time
  from both arriving to the quiet decision, median and max of several rounds, against
  ``evaluation_time_limit_s`` (CPU time: on a busy host the wall time is longer);
* ``without the time limit``: the same, once, with no time limit: what the stall was
  (skipped with ``--quick``);
* ``cost unit``: conditions at their input bounds, estimated units against measured time,
  through the same rewriting and bindings the engine uses (ns per unit);
* ``sql parse at the bound``: the largest ``attributes.sql`` the engine parses, dense
  with tokens (sqlglot, every dialect, first sight of the text);
* ``validate RSS``: peak RSS of ``lockgate policy validate`` in a fresh process, for the
  example policy, for a 1 MiB policy (refused by size) and, in-process, what parsing that
  1 MiB policy would have taken.

Numbers move with the machine's load; read the rows against the baseline row.
Not part of the test suite's pass/fail.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cel

from processors.errors import PolicyInvalid
from processors.policy.cel_analysis import FLATTENED, TICK_FUNCTION
from processors.policy.conditions import compile_condition
from processors.policy.engine import CompiledPolicy
from processors.policy.files import load_policy_file, load_policy_text
from processors.policy.limits import DEFAULT_LIMITS, PolicyLimits
from processors.policy.sql_facts import sql_facts

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "processors" / "policies" / "example.yaml"
NOW_US = 1_704_067_200_000_000
ITEMS = "[" + ",".join(str(i) for i in range(200)) + "]"
CUBE = f"{ITEMS}.all(x, {ITEMS}.all(y, {ITEMS}.all(z, x + y + z >= 0)))"


def action(tenant: str, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "action_id": "a",
        "correlation_id": "c",
        "proposed_at": 0,
        "tenant": tenant,
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


def noisy_policy(limits: PolicyLimits) -> CompiledPolicy:
    text = f"name: noisy\ntenant: noisy\ndefault: allow\nrules:\n  - id: cube\n    effect: block\n    when: '{CUBE}'\n"
    return CompiledPolicy.from_record(load_policy_text(text, limits=limits), limits=limits)


def per_call_us(fn: Callable[[], object], iterations: int) -> float:
    """Best of 5 runs, µs per call."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / iterations * 1e6


def quiet_wait_ms(noisy: CompiledPolicy, quiet: CompiledPolicy) -> tuple[float, str]:
    """Both actions arrive together; the noisy one is first in line. Time to the quiet decision."""
    start = time.perf_counter()
    decision = noisy.evaluate(action("noisy"), authenticated=True, now_us=NOW_US)
    quiet.evaluate(action("default"), authenticated=True, now_us=NOW_US)
    return (time.perf_counter() - start) * 1e3, f"{decision.decision}/{decision.basis}"


def calibration() -> list[tuple[str, int, float]]:
    """(condition, estimated units, measured µs) at the input bounds, engine bindings."""
    lim = DEFAULT_LIMITS
    roles = [f"role-{i:04d}"[: lim.max_name_chars] for i in range(lim.max_items)]
    blob = "a" * lim.max_value_chars
    values: dict[str, dict[str, Any]] = {
        "action": {
            "type": "t",
            "resource": "db/" + "x" * (lim.max_name_chars - 3),
            "service": "s",
            "tenant": "d",
            "attributes": {"blob": blob, "b2": blob, "rows": 5, **{f"k{i}": i for i in range(lim.max_items - 3)}},
            "authenticated": True,
        },
        "actor": {"id": "u", "roles": roles, "attributes": {}},
        "sql": {"kind": "SELECT", "kinds": ["SELECT"] * lim.max_items, "statements": 1,
                "tables": [f"t{i}" for i in range(lim.max_items)], "has_where": True, "has_limit": True,
                "present": True, "parsed": True},
    }
    variables: dict[str, Any] = {root: dict(value) for root, value in values.items()}
    for (root, name), flat in FLATTENED.items():
        variables[flat] = values[root][name]
    context = cel.Context(variables, {TICK_FUNCTION: lambda: True})
    conditions = [
        "action.type == 'x'",
        "'zzz' in actor.roles",
        "actor.roles.exists(r, r == 'zzz')",
        "actor.roles.all(r, r.startsWith('role'))",
        "actor.roles.exists(r, action.resource.contains(r))",
        "action.attributes.exists(k, k == 'zzz')",
        "size([" + ",".join(["1"] * 1000) + "]) > 0",
        "action.attributes.blob.contains('zzz')",
        "action.attributes.blob.matches('a+b')",
        "size(action.attributes.blob + action.attributes.b2) > 0",
        "size(actor.roles + sql.tables) > 0",
        "size(sql.tables.filter(t, true)) > 0",
        "[1,2,3,4,5,6,7,8,9,10].all(x, [1,2,3,4,5,6,7,8,9,10].all(y, [1,2,3,4,5,6,7,8,9,10].all(z, x+y+z>0)))",
    ]
    rows = []
    for source in conditions:
        condition = compile_condition(source, PolicyLimits(rule_cost_budget=10**15))
        assert condition.error is None, (source, condition.error)
        program = condition.program
        iterations = max(1, min(500, 200_000 // max(condition.cost, 1)))
        rows.append((source, condition.cost, per_call_us(_runner(program, context), iterations)))
    return rows


def _runner(program: Any, context: Any) -> Callable[[], object]:
    return lambda: program.execute(context)


def dense_sql(chars: int) -> str:
    """The worst text of at most ``chars`` characters we found for sqlglot: short statements."""
    statement = "UPDATE t SET a = 1 WHERE b = 2;\n"
    return (statement * (chars // len(statement) + 1))[:chars]


def child_rss_kib(args: list[str]) -> tuple[int, int]:
    """(exit status, peak RSS KiB) of a fresh ``lockgate`` process."""
    probe = (
        "import resource, subprocess, sys;"
        "rc = subprocess.run(sys.argv[1:], capture_output=True).returncode;"
        "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, sys.executable, "-m", "lockgate.cli", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    code, rss = out.stdout.split()
    return int(code), int(rss)


def big_policy(target_bytes: int) -> str:
    rule = (
        "  - id: r{i}\n    description: rule {i} blocks a synthetic action type\n"
        "    match:\n      types: [synthetic.{i}]\n      resources: [\"db/prod/*\"]\n"
        "    when: action.attributes.rows > {i} && \"dba\" in actor.roles\n    effect: block\n"
    )
    parts, size, i = ["name: big\ndefault: allow\nrules:\n"], 0, 0
    while size < target_bytes:
        parts.append(rule.format(i=i))
        size += len(parts[-1])
        i += 1
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the run without the time limit")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    limit_ms = DEFAULT_LIMITS.evaluation_time_limit_s * 1e3

    quiet = CompiledPolicy.from_record(load_policy_file(EXAMPLE))
    quiet_action = action("default")
    normal_us = per_call_us(lambda: quiet.evaluate(quiet_action, authenticated=True, now_us=NOW_US), 2000)
    print(f"normal decision (example policy, export action)   {normal_us:10.1f} µs")

    try:
        noisy_policy(DEFAULT_LIMITS)
        print("static budget: the 200³ rule was ACCEPTED (unexpected)")
    except PolicyInvalid as exc:
        estimate = compile_condition(CUBE).cost
        print(f"static budget: 200³ rule refused at validate       estimate {estimate:,} units "
              f"> budget {DEFAULT_LIMITS.rule_cost_budget:,}; {exc.problems[0].file}:{exc.problems[0].line}")

    lifted = PolicyLimits(rule_cost_budget=10**15)
    noisy = noisy_policy(lifted)
    waits, outcome = [], ""
    for _ in range(args.rounds):
        wait, outcome = quiet_wait_ms(noisy, quiet)
        waits.append(wait)
    print(f"quiet tenant waits, CPU time limit {limit_ms:g} ms         median {statistics.median(waits):8.1f} ms, "
          f"max {max(waits):8.1f} ms  (noisy verdict {outcome}; {len(waits)} rounds)")
    if not args.quick:
        unlimited = noisy_policy(PolicyLimits(rule_cost_budget=10**15, evaluation_time_limit_s=1e9))
        wait, outcome = quiet_wait_ms(unlimited, quiet)
        print(f"quiet tenant waits, without the time limit         {wait:10.1f} ms  (noisy verdict {outcome})")

    print("\ncost unit: condition at its input bounds                           units        µs   ns/unit")
    for source, units, us in calibration():
        label = source if len(source) <= 62 else source[:59] + "..."
        print(f"  {label:<62} {units:>10,} {us:9.1f} {us * 1e3 / max(units, 1):8.1f}")

    text = dense_sql(DEFAULT_LIMITS.max_sql_chars)
    start = time.perf_counter()
    facts = sql_facts(text)
    parse_ms = (time.perf_counter() - start) * 1e3
    print(f"\nsql parse at the bound ({len(text):,} chars, {facts['statements']} statements)  {parse_ms:10.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.yaml"
        big.write_text(big_policy(1 << 20))
        code_ok, rss_ok = child_rss_kib(["policy", "validate", str(EXAMPLE)])
        code_big, rss_big = child_rss_kib(["policy", "validate", str(big)])
        code_apply, _ = child_rss_kib(["policy", "apply", str(big)])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        raised = PolicyLimits(max_policy_bytes=4 << 20, max_rules=100_000)
        load_policy_file(big, limits=raised)
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        took = time.perf_counter() - start
    print(f"validate RSS: example policy {rss_ok / 1024:.0f} MiB (exit {code_ok}); "
          f"1 MiB policy {rss_big / 1024:.0f} MiB (exit {code_big}, refused by size; `apply` exits {code_apply}); "
          f"parsing it anyway: +{grew / 1024:.0f} MiB peak RSS in this process, {took:.1f} s")


if __name__ == "__main__":
    main()
