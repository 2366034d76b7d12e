#!/usr/bin/env bash
# The deterministic simulation of Keel's protocol (moves, repairs, trims,
# corrupt-copy deletes, failover) against simulated chunk servers, etcd and
# network. See docs/guarantees.md, section "Simulation".
#
# Usage: scripts/simulate.sh [--seeds N] [--first-seed S] [--seed S [--trace]] [--threads T]
#   --seeds N       seeds to run (default 1000), from --first-seed (default 0)
#   --seed S        one seed only; --trace prints its every event
# The last line is exactly `seeds N, failures F, steps S, R steps/s`; the exit
# status is 1 when F > 0. Each failing seed prints the command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p keel-sim --bin keel-sim >&2
exec ./target/debug/keel-sim "$@"
