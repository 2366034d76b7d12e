#!/usr/bin/env bash
# Client-load benchmark: builds the release binaries, then runs
# keel-load-bench, which starts a real master and three chunk servers on
# loopback (default --migrate-bandwidth, 64 MiB/s) per round and prints
# Markdown on stdout (progress on stderr):
#   - read latency (p50, p99, max) of 8 clients that read and write while the
#     balancer is paused (idle) and while moves run (rebalance), and the ratio;
#   - bytes moved and the effective move rate;
#   - CPU cores each process kept busy in each phase;
#   - failed reads, failed writes and the read-back of every chunk;
#   - with --auto: 8 rounds at --migrate-bandwidth auto, in turn quiet,
#     CPU hogged, disk hogged, many clients and a big move set, each judged
#     by p99 while moving <= max(1.2 x idle p99, --client-latency-target),
#     then unloaded rebalances against --migrate-bandwidth-max (>= 0.8).
#
# Usage: scripts/bench-load.sh [keel-load-bench options]   (--help lists them)
# The temp dir is $TMPDIR (default /tmp) unless --dir is given; at the
# defaults it needs about 5.5 GiB free. Everything it creates there is removed
# on exit (a round with failures keeps its logs and says where).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --bins -p keel-master -p keel-chunkserver -p keel-tests >&2

args=("$@")
dir="${TMPDIR:-/tmp}"
need_gib=6
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --dir) if ((i + 1 < ${#args[@]})); then dir="${args[i + 1]}"; fi ;;
    # The big-move-set rounds preload twice the data.
    --auto) need_gib=11 ;;
    -h | --help) exec "$target_dir/release/keel-load-bench" --help ;;
  esac
done

free_kib=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
if ((free_kib < need_gib * 1024 * 1024)); then
  echo "bench-load: $dir has $((free_kib / 1024)) MiB free; about $need_gib GiB are needed (use --dir)" >&2
  exit 1
fi

echo "# Client-load benchmark"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC') on \`$(uname -n)\` ($(uname -sm)), commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`"
echo
exec "$target_dir/release/keel-load-bench" --dir "$dir" "${args[@]}"
