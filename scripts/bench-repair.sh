#!/usr/bin/env bash
# Redundancy benchmark: builds the release binaries, then runs
# keel-repair-bench, which starts a real master and six chunk servers on
# loopback at the default migration bandwidth (64 MiB/s), loses one holding
# 1 GiB, and times the repair and a drain against the bandwidth's ideal.
# Markdown on stdout, progress on stderr.
#
# Usage: scripts/bench-repair.sh [keel-repair-bench options]   (--help lists them)
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --bins -p keel-master -p keel-chunkserver -p keel-tests >&2
echo "# Redundancy benchmark"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC') on \`$(uname -n)\` ($(uname -sm)), $(nproc) cores, commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`"
echo
exec "$target_dir/release/keel-repair-bench" "$@"
