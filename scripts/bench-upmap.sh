#!/usr/bin/env bash
# Keel's planner against Ceph's `osdmaptool --upmap` on the same cluster
# shape (not run in CI; results and the mapping of shapes in docs/sim.md).
#
# Ceph side: a CRUSH map of OSDS hosts with one OSD each, a replicated pool
# of size 3 with 2^PG_BITS PGs per OSD, optionally HEAVY OSDs of CRUSH
# weight 2; CRUSH places the PGs, then `osdmaptool --upmap` computes the
# pg-upmap-items that even out PGs per unit of weight (deviation DEVIATION).
# Keel side: the same servers (capacity ∝ weight), each holding exactly the
# bytes CRUSH gave its OSD (PG count × PG_SIZE), in chunks of PG_SIZE with 3
# replicas, planned by `keelctl sim` with a band of ±DEVIATION PGs.
#
# Usage: scripts/bench-upmap.sh            (40 OSDs, 64 PGs each)
#        OSDS=200 PG_BITS=7 HEAVY=20 scripts/bench-upmap.sh
set -euo pipefail

OSDS=${OSDS:-40}
PG_BITS=${PG_BITS:-6}
HEAVY=${HEAVY:-0}
PG_SIZE_GIB=${PG_SIZE_GIB:-4}
FILL_PCT=${FILL_PCT:-50}
DEVIATION=${DEVIATION:-1}
KEELCTL=${KEELCTL:-target/release/keelctl}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! command -v osdmaptool >/dev/null; then
    echo "osdmaptool missing: installing Debian's ceph-base" >&2
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ceph-base
fi
if [ ! -x "$KEELCTL" ]; then
    cargo build --release -p keelctl
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- the Ceph cluster --------------------------------------------------------
crushtool -o "$work/crush" --build --num_osds "$OSDS" host straw2 1 root straw2 0 >/dev/null
osdmaptool "$work/om" --createsimple "$OSDS" --pg-bits "$PG_BITS" --with-default-pool --clobber >/dev/null 2>&1
osdmaptool "$work/om" --import-crush "$work/crush" --save >/dev/null 2>&1
if [ "$HEAVY" -gt 0 ]; then
    weights=$(seq 0 $((HEAVY - 1)) | sed 's/$/:2/' | paste -sd,)
    osdmaptool "$work/om" --adjust-crush-weight "$weights" --save >/dev/null 2>&1
fi
counts() { osdmaptool "$1" --mark-up-in --test-map-pgs 2>/dev/null | awk '/^osd\./ {print $1, $2, $5}'; }
counts "$work/om" > "$work/before"

cp "$work/om" "$work/om.upmap"
t0=$(date +%s.%N)
osdmaptool "$work/om.upmap" --mark-up-in --upmap "$work/upmap.txt" \
    --upmap-deviation "$DEVIATION" --upmap-max 10000000 --save >/dev/null 2>&1
t1=$(date +%s.%N)
counts "$work/om.upmap" > "$work/after"

# --- the same shape for Keel ---------------------------------------------------
python3 - "$work" "$PG_SIZE_GIB" "$FILL_PCT" "$DEVIATION" <<'PY'
import json, sys
work, pg_gib, fill, dev = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rows = [l.split() for l in open(f"{work}/before")]
pg = int(pg_gib * 2**30)
total_w = sum(float(w) for _, _, w in rows)
total_pgs = sum(int(c) for _, c, _ in rows)
# Capacity per unit of weight: the cluster FILL_PCT full on average.
unit = int(total_pgs * pg / total_w * 100 / fill)
servers = [{"id": o, "capacity": int(unit * float(w)), "used": int(c) * pg} for o, c, w in rows]
cluster = {
    "servers": servers,
    "chunks": {"replication": 3, "sizes": [{"size": pg}], "seed": 1},
    # ±DEVIATION PGs on a weight-1 server, in percentage points.
    "policy": {"threshold_pct": dev * pg / unit * 100, "min_free_pct": 5},
    "limits": {"migrate_bandwidth": "100MiB"},
}
json.dump(cluster, open(f"{work}/keel.json", "w"))
json.dump({"unit": unit, "pg": pg}, open(f"{work}/shape.json", "w"))
PY
t2=$(date +%s.%N)
"$KEELCTL" --json sim "$work/keel.json" > "$work/keel.out"
t3=$(date +%s.%N)

# --- the table ---------------------------------------------------------------
python3 - "$work" "$t0" "$t1" "$t2" "$t3" "$OSDS" "$PG_BITS" "$HEAVY" <<'PY'
import json, sys
work = sys.argv[1]
t0, t1, t2, t3 = map(float, sys.argv[2:6])
osds, bits, heavy = sys.argv[6:9]
shape = json.load(open(f"{work}/shape.json"))
unit, pg = shape["unit"], shape["pg"]
def spread(path):
    u = [int(c) * pg / (unit * float(w)) * 100 for _, c, w in (l.split() for l in open(path))]
    return max(u) - min(u)
moves = 0
for line in open(f"{work}/upmap.txt"):
    f = line.split()
    if f[:3] == ["ceph", "osd", "pg-upmap-items"]:
        moves += (len(f) - 4) // 2
k = json.load(open(f"{work}/keel.out"))
gib = lambda b: f"{b / 2**30:,.0f} GiB"
print(f"shape: {osds} servers/OSDs ({heavy} of weight 2), {2**int(bits) * int(osds)} PGs x 3 replicas "
      f"of {pg / 2**30:g} GiB, spread before {spread(f'{work}/before'):.2f} points")
print(f"{'':28} {'moves':>7} {'bytes':>11} {'plan time':>10} {'spread after':>13}")
print(f"{'ceph osdmaptool --upmap':28} {moves:>7} {gib(moves * pg):>11} {t1 - t0:>9.3f}s {spread(f'{work}/after'):>12.2f}p")
print(f"{'keel planner (keelctl sim)':28} {k['move_count']:>7} {gib(k['bytes']):>11} {k['plan_seconds']:>9.3f}s {k['spread_pct_after']:>12.2f}p")
print(f"keel: lower bound {gib(k['lower_bound_bytes'])}, band reached {k['reaches_band']}, "
      f"whole keelctl sim run {t3 - t2:.2f}s (view built, planned, timed: ETA {k['eta_seconds']:.0f}s at 100 MiB/s)")
PY
