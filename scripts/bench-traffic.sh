#!/usr/bin/env bash
# Traffic benchmark (seed 004's worked example with traffic): builds the
# release binaries, then runs keel-traffic-bench, which starts a real master
# and eight chunk servers on loopback, node 1 near 95 % and holding the hot
# set, the others near 40 %, and real readers reading with a Zipf-like skew.
# It measures node 1's client read p99 against the baseline (the same
# readers on an evenly spread copy of the hot set) before, during and after
# one balancer pass, every node's reads/s against the load band, the
# capacity band and the bytes moved, for capacity-only balancing
# (--load-threshold-pct 0) and traffic-aware balancing (the default), in
# one run with the same seed. Markdown on stdout, progress on stderr.
#
# Usage: scripts/bench-traffic.sh [keel-traffic-bench options]   (--help lists them)
# About 1 GiB of temp space at the defaults ($TMPDIR, or --dir), one design at a time, removed as it goes.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --bins -p keel-master -p keel-chunkserver -p keel-tests >&2
bench="$target_dir/release/keel-traffic-bench"
if [[ " $* " == *" --help "* || " $* " == *" -h "* ]]; then
  exec "$bench" --help
fi
echo "# Traffic benchmark"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC') on \`$(uname -n)\` ($(uname -sm)), $(nproc) cores, commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`"
echo
exec "$bench" "$@"
