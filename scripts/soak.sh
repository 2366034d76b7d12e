#!/usr/bin/env bash
# The fault suite's long local mode: the same tests CI runs, with more of
# everything. Takes about 45 minutes with the defaults on a 2-core machine.
#
#   TRIALS=500      seeded crash trials (t70; CI runs 50)
#   REPAIR_TRIALS=100  seeded crash trials of repairs and drains (t27; CI runs 12)
#   ROUNDS=5        rounds of the partition scenarios (t75; CI runs 1)
#   LOAD_SECS=300   seconds of 8-client load during a rebalance (t76; CI runs 60)
#   HA_TRIALS=198   seeded kills and pauses of leaders, etcd and chunk servers
#                   (t90; CI runs 20; the kind turns with the seed, six kinds)
#   SIM_SEEDS=1000000  seeds of the protocol simulation after the 10,000 CI
#                   runs (scripts/simulate.sh; about 30 minutes on 2 busy cores)
#
# Usage: scripts/soak.sh            (each knob can be set in the environment)
# A failing trial prints its seed; KEEL_FAULT_SEED=S replays it alone.
set -euo pipefail
cd "$(dirname "$0")/.."

trials="${TRIALS:-500}"
repair_trials="${REPAIR_TRIALS:-100}"
rounds="${ROUNDS:-5}"
load_secs="${LOAD_SECS:-300}"
ha_trials="${HA_TRIALS:-198}"
sim_seeds="${SIM_SEEDS:-1000000}"

cargo build --bins >&2
cargo test -p keel-tests --no-run >&2

run() {
  echo "== $*" >&2
  # Daemon log lines and backtraces are left out; a failure's own message is kept.
  "$@" 2>&1 | grep -vE '^(20[0-9]{2}-|[[:space:]]+[0-9]+:|[[:space:]]+at |running |$)' || true
  return "${PIPESTATUS[0]}"
}

start=$(date +%s)
run scripts/simulate.sh --seeds "$sim_seeds" --first-seed 10000
KEEL_FAULT_TRIALS="$trials" run cargo test -p keel-tests --test t70_crash_points -- --nocapture
KEEL_FAULT_TRIALS="$repair_trials" run cargo test -p keel-tests --test t27_repair_crash -- --nocapture
for ((r = 1; r <= rounds; r++)); do
  echo "-- partitions, round $r of $rounds" >&2
  run cargo test -p keel-tests --test t75_partitions -- --nocapture
done
run cargo test -p keel-tests --test t71_hostile_grpc -- --nocapture
KEEL_FAULT_TRIALS="$ha_trials" run cargo test -p keel-tests --test t90_ha trials -- --nocapture
KEEL_LOAD_SECS="$load_secs" run cargo test -p keel-tests --test t76_load_during_rebalance -- --nocapture
echo "soak passed in $(($(date +%s) - start)) s" >&2
