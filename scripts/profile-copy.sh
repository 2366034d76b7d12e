#!/usr/bin/env bash
# Profiles the unthrottled copies of keel-copy-bench: `perf record -e
# cpu-clock` on the source (A) and the target (B) chunk server, and on the
# bench process, of which only the plain TCP + fsync copies' sender and
# receiver threads are counted; then a breakdown of each one's CPU by component
# (scripts/perf-breakdown.py), the baseline's in the same categories.
# Called by `scripts/bench-copy.sh --profile DIR`, after the release build.
#
# Usage: scripts/profile-copy.sh BENCH DIR RUNS fp|dwarf [bench options]
set -euo pipefail
cd "$(dirname "$0")/.."
bench="$1" out="$2" runs="$3" call_graph="$4"
shift 4
freq=499
mkdir -p "$out"
command -v perf >/dev/null || { echo "profile-copy: perf is not installed" >&2; exit 1; }

"$bench" "$@" --no-rsync --skip-frames --skip-throttled --skip-memory \
  >"$out/bench.md" 2>"$out/bench.log" &
bench_pid=$!
perf_pids=()
cleanup() {
  for p in "${perf_pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  kill "$bench_pid" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# The copy pair is the bench's first pair of servers; its data dirs are
# keel-pair-*/a and keel-pair-*/b. Wait for A to hold the uploaded chunk,
# so the upload is not in A's profile.
server_pid() {
  for p in $(pgrep -P "$bench_pid" keel-chunkserve || true); do
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "keel-pair-[^/]*/$1 "; then
      echo "$p"
      return
    fi
  done
}
a_dir=""
for _ in $(seq 600); do
  kill -0 "$bench_pid" 2>/dev/null || { echo "profile-copy: the bench ended early:" >&2; tail "$out/bench.log" >&2; exit 1; }
  a=$(server_pid a) b=$(server_pid b)
  if [[ -n "$a" && -n "$b" ]]; then
    a_dir=$(tr '\0' '\n' <"/proc/$a/cmdline" | grep 'keel-pair-' | head -1)
    if [[ -n "$(find "$a_dir/chunks" -type f 2>/dev/null | head -1)" ]]; then
      break
    fi
  fi
  sleep 0.1
done
[[ -n "$a_dir" ]] || { echo "profile-copy: no copy pair found" >&2; cleanup; exit 1; }
echo "profiling A (pid $a), B (pid $b) and the bench (pid $bench_pid), $call_graph call graphs at $freq Hz" >&2
tcp=$bench_pid
for side in a b tcp; do
  pid=${!side}
  perf record -q -e cpu-clock -F "$freq" --call-graph "$call_graph" -p "$pid" \
    -o "$out/$side.perf.data" 2>"$out/$side.perf.log" &
  perf_pids+=($!)
done
wait "$bench_pid"
for p in "${perf_pids[@]}"; do wait "$p" || true; done

# Every copy of the rounds (the warm-up too) moved the chunk once.
size_mib=$(grep -o 'Unthrottled copy of a [0-9.]* MiB' "$out/bench.md" | grep -o '[0-9.]*' | head -1)
gib=$(awk -v s="$size_mib" -v r="$runs" 'BEGIN { print s * (r + 1) / 1024 }')
cat "$out/bench.md"
echo "## Where the copies' CPU went (\`perf record -e cpu-clock -F $freq --call-graph $call_graph\`)"
echo
python3 scripts/perf-breakdown.py "$out/a.perf.data" "$freq" "$gib" "A, the source"
python3 scripts/perf-breakdown.py "$out/b.perf.data" "$freq" "$gib" "B, the target"
python3 scripts/perf-breakdown.py "$out/tcp.perf.data" "$freq" "$gib" \
  "plain TCP + fsync: the bench's sender and receiver threads" tcp-sender,tcp-receiver
