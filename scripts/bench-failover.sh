#!/usr/bin/env bash
# Failover time with several masters: SIGKILL the leader during a rebalance,
# ROUNDS times, and time the kill -> a new leader, -> its first copy, -> the
# first AllocateChunk a client gets served; median and max against the lease.
# Needs etcd (Debian: etcd-server).
#
#   ROUNDS=10 LEASE=2s scripts/bench-failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --bins >&2
KEEL_BENCH_ROUNDS="${ROUNDS:-10}" KEEL_BENCH_LEASE="${LEASE:-2s}" \
  cargo test -p keel-tests --test t90_ha failover_time -- --ignored --nocapture 2>&1 |
  grep -E '^(round|killed|master-|test result)'
