#!/usr/bin/env bash
# Time-to-balance benchmark: builds the release binaries, then runs
# keel-balance-bench, which starts a real master and eight chunk servers on
# loopback, each with the same --migrate-bandwidth, loads half of them with
# chunks of 1-16 MiB, and times the rebalance against the least time its
# plan allows (the bottleneck server's bytes in + out / its bandwidth).
# Markdown on stdout, progress on stderr.
#
# Usage: scripts/bench-balance.sh [keel-balance-bench options]   (--help lists them)
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --bins -p keel-master -p keel-chunkserver -p keel-tests >&2
echo "# Time-to-balance benchmark"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC') on \`$(uname -n)\` ($(uname -sm)), $(nproc) cores, commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`"
echo
exec "$target_dir/release/keel-balance-bench" "$@"
