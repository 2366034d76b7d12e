#!/usr/bin/env bash
# Builds Keel's container image from statically linked binaries (no base image,
# no registry needed), then tags it keel:latest for docker-compose.yml.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
echo "building static binaries for $target ..." >&2
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" --bins

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=(docker-compose)
fi
"${compose[@]}" build
