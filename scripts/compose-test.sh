#!/usr/bin/env bash
# The compose test: builds Keel's image from static binaries, starts the
# docker-compose cluster, loads chunks unevenly, rebalances through keelctl,
# SIGKILLs a chunk server container in the middle of a move, brings it back,
# and checks that the cluster ends balanced with every chunk readable and its
# checksum unchanged. Tears everything down however it ends.
#
# KEEL_COMPOSE_TLS=1 runs the same test with docker-compose.tls.yml layered on
# top (mTLS everywhere, tokens from files), on certificates made for the run.
set -euo pipefail
cd "$(dirname "$0")/.."

export COMPOSE_PROJECT_NAME="keeltest$$"
export KEEL_MASTER_PORT="${KEEL_MASTER_PORT:-17000}" KEEL_HTTP_PORT="${KEEL_HTTP_PORT:-17080}"
# Slow enough that a move is still streaming when a container is killed.
export KEEL_MIGRATE_BANDWIDTH="${KEEL_MIGRATE_BANDWIDTH:-8MiB}"
chunks=16
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
bin=target/x86_64-unknown-linux-gnu/release
host=(--master "http://127.0.0.1:$KEEL_MASTER_PORT")
# Settings of the keelctl run inside the master's container.
inside=()
certs=""
if [ "${KEEL_COMPOSE_TLS:-}" = 1 ]; then
  certs=$(mktemp -d)
  # Keys and tokens are 0600: handed to the containers' user so it can read them.
  KEEL_CERTS_OWNER=10001:10001 scripts/dev-certs.sh "$certs"
  export KEEL_CERTS="$certs"
  compose+=(-f docker-compose.yml -f docker-compose.tls.yml)
  host=(--master "https://127.0.0.1:$KEEL_MASTER_PORT" --tls-ca "$certs/ca.crt"
        --tls-cert "$certs/client.crt" --tls-key "$certs/client.key" --token-file "$certs/cluster.token")
  inside=(-e KEEL_MASTER=https://127.0.0.1:7000 -e KEEL_TOKEN_FILE=/run/secrets/cluster_token)
fi
keelctl() { "$bin/keelctl" "${host[@]}" "$@"; }
say() { printf '[compose-test] %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; "${compose[@]}" logs --tail 30 >&2 || true; exit 1; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

cleanup() {
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  [ -z "$certs" ] || rm -rf "$certs"
}
trap cleanup EXIT

# KEEL_SKIP_BUILD=1 reuses an image built earlier (for iterating on this script).
[ "${KEEL_SKIP_BUILD:-}" = 1 ] || scripts/docker-build.sh
say "starting the cluster"
"${compose[@]}" up -d
deadline=$((SECONDS + 120))
until [ "$(keelctl servers --json 2>/dev/null | json "sum(s['state']=='alive' for s in d)" 2>/dev/null || echo 0)" = 4 ]; do
  [ $SECONDS -lt $deadline ] || fail "four chunk servers did not come alive"
  sleep 1
done

say "pausing the balancer; loading $chunks chunks of 8 MiB onto cs1 and cs2"
keelctl rebalance pause >/dev/null
declare -A crc
for i in $(seq 1 "$chunks"); do
  on=cs1; [ "$i" -gt 12 ] && on=cs2
  out=$(head -c 8M /dev/urandom | "${compose[@]}" exec -T "${inside[@]}" master keelctl --json put "c$i" - --replication 1 --on "$on")
  crc[c$i]=$(echo "$out" | json "d['crc32c']")
done
keelctl servers
[ "$(keelctl rebalance check --json | json "d['balanced']")" = False ] || fail "the loaded cluster should be unbalanced"

say "rebalancing; killing cs1 in the middle of a move"
keelctl rebalance resume >/dev/null
keelctl rebalance run >/dev/null
deadline=$((SECONDS + 60))
until [ "$(keelctl rebalance status --json | json "d['running']")" -gt 0 ]; do
  [ $SECONDS -lt $deadline ] || fail "no move started"
  sleep 0.2
done
"${compose[@]}" kill -s SIGKILL cs1
sleep 3
"${compose[@]}" start cs1

say "waiting for balance"
deadline=$((SECONDS + 240))
until [ "$(keelctl rebalance check --json | json "d['balanced']")" = True ] &&
      [ "$(keelctl rebalance status --json | json "d['pending'] + d['running']")" = 0 ]; do
  [ $SECONDS -lt $deadline ] || fail "the cluster did not balance"
  sleep 2
done
keelctl servers

say "checking every chunk"
for id in "${!crc[@]}"; do
  got=$("${compose[@]}" exec -T "${inside[@]}" master keelctl --json get "$id" "/tmp/$id" | json "d['crc32c']") || fail "get $id"
  [ "$got" = "${crc[$id]}" ] || fail "$id read back with crc $got, written with ${crc[$id]}"
done
copies=$(keelctl servers --json | json "sum(s['chunks'] for s in d)")
[ "$copies" = "$chunks" ] || fail "expected $chunks replicas in all, found $copies"
say "ok: $chunks chunks intact after a SIGKILL mid-move, cluster balanced"
echo "compose: 1 passed, 0 failed"
