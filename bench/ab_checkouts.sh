#!/usr/bin/env bash
# A/B two checkouts of Lockgate on this box: alternate them ROUNDS times, each run on a fresh
# local stack with the example policy, a warm-up verdict_bench, then capacity_bench and
# verdict_bench. Both checkouts need `make install` first. Numbers are only comparable within
# one invocation (the box drifts); see docs/benchmarks.md for how they are reported.
#
#   bash bench/ab_checkouts.sh /path/to/checkout-a /path/to/checkout-b [ROUNDS]
#
# Uses its own LOCKGATE_HOME (/tmp/lg-ab) and ports, so it does not touch a running stack.
set -u
if [ $# -lt 2 ]; then
  sed -n 2,8p "$0"; exit 2
fi
a=$1 b=$2 rounds=${3:-2}
export LOCKGATE_HOME=${LOCKGATE_AB_HOME:-/tmp/lg-ab}
export LOCKGATE_KAFKA_PORT=19392 LOCKGATE_CONTROLLER_PORT=19393 LOCKGATE_API_PORT=18840 \
       LOCKGATE_PROCESSOR_PORT=18841 LOCKGATE_WITNESS_PORT=18842
for round in $(seq 1 "$rounds"); do
  for repo in "$a" "$b"; do
    cd "$repo" || exit 2
    rm -rf "$LOCKGATE_HOME"; mkdir -p "$LOCKGATE_HOME"
    echo "=== round $round $repo $(git rev-parse --short HEAD) | $(uptime)"
    .venv/bin/lockgate up > /dev/null 2>&1 || { echo "lockgate up failed in $repo"; exit 1; }
    .venv/bin/lockgate policy apply processors/policies/example.yaml > /dev/null 2>&1
    timeout 200 .venv/bin/python -m bench.verdict_bench 200 > /dev/null 2>&1  # warm the broker's JIT
    timeout 300 .venv/bin/python -m bench.capacity_bench 3000 32 2>&1 \
      | grep -E "idle|end to end|processor |kafka |sink |bench  |echo"
    timeout 200 .venv/bin/python -m bench.verdict_bench 300 2>&1 | grep -E "check|echo" | head -6
    echo "--- end $(uptime)"
    .venv/bin/lockgate down > /dev/null 2>&1
  done
done
