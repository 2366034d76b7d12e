#!/usr/bin/env bash
# Chunk-copy benchmark: builds the release binaries, then runs
# keel-copy-bench, which starts two real chunk servers on loopback and prints
# Markdown tables on stdout (progress on stderr):
#   - an unthrottled 256 MiB copy next to a plain TCP transfer with fsync and
#     an rsync daemon on the same bytes and disk, as ratios;
#   - in the same rounds, the end-to-end move through a real master
#     (RebalanceExecute, as `keelctl rebalance execute` sends it), with CPU
#     per GiB of every method, against its targets;
#   - copies at --migrate-bandwidth 32MiB and 128MiB, against the setting;
#   - both servers' resident memory during a 1 GiB copy;
#   - WriteChunk throughput by frame size.
#
# Usage: scripts/bench-copy.sh [keel-copy-bench options]   (--help lists them)
#        scripts/bench-copy.sh --profile DIR [--runs N] [--call-graph fp|dwarf]
# --profile runs only the unthrottled rounds (no rsync, frames, throttled or
# memory phases) with `perf record -e cpu-clock` on the source (A) and the
# target (B) of the copies, from after the upload until the servers stop,
# and prints where each side's CPU went (scripts/perf-breakdown.py); the
# perf data and the bench's own tables stay in DIR.
# The temp dir is $TMPDIR (default /tmp) unless --dir is given; it needs
# about 4 GiB free. Everything it creates there is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --bins -p keel-chunkserver -p keel-master -p keel-tests >&2

args=()
profile=""
call_graph="dwarf"
runs=5
while (($#)); do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --call-graph) call_graph="$2"; shift 2 ;;
    --runs) runs="$2"; args+=(--runs "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
dir="${TMPDIR:-/tmp}"
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ "${args[i]}" == "--dir" && $((i + 1)) -lt ${#args[@]} ]]; then
    dir="${args[i + 1]}"
  fi
done

if ! command -v rsync >/dev/null 2>&1; then
  echo "rsync baseline: SKIPPED — rsync is not installed (install it with: apt-get install rsync)" >&2
  args+=(--no-rsync)
fi

free_kib=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
if ((free_kib < 4 * 1024 * 1024)); then
  echo "bench-copy: $dir has $((free_kib / 1024)) MiB free; about 4 GiB are needed (use --dir)" >&2
  exit 1
fi

if [[ -n "$profile" ]]; then
  exec scripts/profile-copy.sh "$target_dir/release/keel-copy-bench" "$profile" "$runs" \
    "$call_graph" --dir "$dir" "${args[@]}"
fi

echo "# Chunk-copy benchmark"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC') on \`$(uname -n)\` ($(uname -sm)), commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`"
echo
exec "$target_dir/release/keel-copy-bench" --dir "$dir" "${args[@]}"
