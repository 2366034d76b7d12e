#!/usr/bin/env bash
# Time-to-balance benchmark: builds the release binaries, then runs
# keel-balance-bench, which starts a real master and N chunk servers on
# loopback, each with the same --migrate-bandwidth, loads half of them with
# chunks of 1-16 MiB, and times the rebalance against the least time its
# plan allows (the bottleneck server's bytes in + out / its bandwidth).
# Markdown on stdout, progress on stderr.
#
# For each SERVERS entry, N:BANDWIDTH (default "8:16MiB 32:4MiB": the same
# 64 MiB/s in total, which two shared cores can copy), it runs the master's
# defaults (--max-concurrent-moves auto, --max-moves-per-server 4) and then
# the old defaults (4 and 2), so both are measured in one run of the script.
# ROUNDS (default 3) rounds each; DATA (default 128MiB) per loaded server.
#
# Usage: scripts/bench-balance.sh [keel-balance-bench options]   (--help lists them)
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --bins -p keel-master -p keel-chunkserver -p keel-tests >&2
bench="$target_dir/release/keel-balance-bench"
if [[ " $* " == *" --help "* || " $* " == *" -h "* ]]; then
  exec "$bench" --help
fi
echo "# Time-to-balance benchmark"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC') on \`$(uname -n)\` ($(uname -sm)), $(nproc) cores, commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`"
for entry in ${SERVERS:-8:16MiB 32:4MiB}; do
  n="${entry%%:*}"
  bandwidth="${entry#*:}"
  for moves in "auto 4" "4 2"; do
    read -r cap per <<<"$moves"
    label="defaults"
    [[ "$cap" == auto ]] || label="old defaults"
    echo
    echo "## $n servers, $label (\`--max-concurrent-moves $cap --max-moves-per-server $per\`)"
    echo
    "$bench" --servers "$n" --bandwidth "$bandwidth" --moves "$cap" --per-server "$per" \
      --rounds "${ROUNDS:-3}" --data "${DATA:-128MiB}" "$@"
  done
done
