#!/usr/bin/env bash
# Several masters: failover time, and what a standby costs. Needs etcd
# (Debian: etcd-server).
#
# failover_time: SIGKILL the leader during a rebalance, ROUNDS times, and time
# the kill -> a new leader, -> its first copy, -> the first AllocateChunk a
# client gets served; median and max against the lease; resident memory.
# standby_cost: the heartbeat RPCs and bytes per second a standby receives,
# the CPU it and the chunk servers and etcd use with and without it (WINDOW
# seconds each, CHUNKS chunks), and how long a standby takes to rejoin.
#
#   ROUNDS=10 LEASE=2s CHUNKS=2000 WINDOW=10 scripts/bench-failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --bins >&2
export KEEL_BENCH_ROUNDS="${ROUNDS:-10}" KEEL_BENCH_LEASE="${LEASE:-2s}" \
  KEEL_BENCH_CHUNKS="${CHUNKS:-2000}" KEEL_BENCH_WINDOW="${WINDOW:-10}"
cargo test -p keel-tests --test t90_ha bench:: -- --ignored --nocapture --test-threads 1 2>&1 |
  grep -oE '(round [0-9]+:|killed ->|master-[a-z]+:|standby-cost|test result:).*'
