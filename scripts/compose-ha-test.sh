#!/usr/bin/env bash
# The several-masters compose test: builds Keel's image and the etcd image
# (from the host's etcd-server package), starts docker-compose.ha.yml, writes
# chunks, SIGKILLs whichever master leads, and checks that the other one
# leads within the lease and a heartbeat, that keelctl finds it by itself,
# and that every chunk reads back with its checksum. Tears everything down
# however it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

export COMPOSE_PROJECT_NAME="keelha$$"
export KEEL_MASTER_PORT="${KEEL_MASTER_PORT:-17000}" KEEL_HTTP_PORT="${KEEL_HTTP_PORT:-17080}"
export KEEL_MASTER_B_PORT="${KEEL_MASTER_B_PORT:-17100}" KEEL_HTTP_B_PORT="${KEEL_HTTP_B_PORT:-17180}"
export KEEL_LEADER_LEASE="${KEEL_LEADER_LEASE:-3s}"
chunks=8
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
compose+=(-f docker-compose.ha.yml)
bin=target/x86_64-unknown-linux-gnu/release
masters="http://127.0.0.1:$KEEL_MASTER_PORT,http://127.0.0.1:$KEEL_MASTER_B_PORT"
keelctl() { "$bin/keelctl" --master "$masters" "$@"; }
say() { printf '[compose-ha-test] %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; "${compose[@]}" logs --tail 30 >&2 || true; exit 1; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# The leader's compose service, as keelctl names it (master-a or master-b).
leader() { keelctl rebalance status --json 2>/dev/null | json "d['leader']" 2>/dev/null | sed -E 's#http://([^:]+):.*#\1#'; }

cleanup() { "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

# KEEL_SKIP_BUILD=1 reuses Keel's image built earlier; etcd's is quick and always built.
[ "${KEEL_SKIP_BUILD:-}" = 1 ] || scripts/docker-build.sh
scripts/etcd-image.sh
say "starting etcd, two masters and four chunk servers"
"${compose[@]}" up -d
deadline=$((SECONDS + 120))
until [ "$(keelctl servers --json 2>/dev/null | json "sum(s['state']=='alive' for s in d)" 2>/dev/null || echo 0)" = 4 ] &&
      [ -n "$(leader)" ]; do
  [ $SECONDS -lt $deadline ] || fail "no leader with four live chunk servers"
  sleep 1
done
first=$(leader)
say "leader: $first"
keelctl servers

say "writing $chunks chunks"
declare -A crc
for i in $(seq 1 "$chunks"); do
  out=$(head -c 4M /dev/urandom | "${compose[@]}" exec -T "$first" keelctl --json put "h$i" - --replication 2)
  crc[h$i]=$(echo "$out" | json "d['crc32c']")
done

say "SIGKILL of the leader, $first"
"${compose[@]}" kill -s SIGKILL "$first"
killed=$SECONDS
deadline=$((SECONDS + 60))
until next=$(leader) && [ -n "$next" ] && [ "$next" != "$first" ]; do
  [ $SECONDS -lt $deadline ] || fail "no master took over"
  sleep 0.2
done
say "new leader: $next after about $((SECONDS - killed)) s (lease $KEEL_LEADER_LEASE)"
keelctl servers | tail -1

say "a chunk written through the new leader, and every chunk read back"
head -c 1M /dev/urandom | "${compose[@]}" exec -T "$next" keelctl put after - --replication 2 >/dev/null ||
  fail "the new leader does not place chunks"
for id in "${!crc[@]}"; do
  got=$("${compose[@]}" exec -T "$next" keelctl --json get "$id" "/tmp/$id" | json "d['crc32c']") || fail "get $id"
  [ "$got" = "${crc[$id]}" ] || fail "$id read back with crc $got, written with ${crc[$id]}"
done
"${compose[@]}" start "$first"
say "ok: $next leads after $first was killed; $chunks chunks intact"
echo "compose-ha: 1 passed, 0 failed"
