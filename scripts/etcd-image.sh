#!/usr/bin/env bash
# Builds keel-etcd:latest for docker-compose.ha.yml from the etcd installed on
# this machine (Debian: apt-get install etcd-server), with no base image and no
# registry: the binary and the shared libraries it links go into an image
# FROM scratch.
set -euo pipefail
cd "$(dirname "$0")/.."

etcd=$(command -v etcd) || { echo "etcd is not installed (Debian: apt-get install etcd-server)" >&2; exit 1; }
stage=target/etcd-image
rm -rf "$stage"
mkdir -p "$stage/rootfs/usr/bin" "$stage/empty"
cp "$etcd" "$stage/rootfs/usr/bin/etcd"
# Every library ldd names (and the loader), at the same path.
for lib in $(ldd "$etcd" | grep -oE '/[^ ]+'); do
  mkdir -p "$stage/rootfs$(dirname "$lib")"
  cp -L "$lib" "$stage/rootfs$lib"
done
cp docker/etcd.Dockerfile "$stage/Dockerfile"
docker build -q -t keel-etcd:latest "$stage" >/dev/null
echo "built keel-etcd:latest from $etcd ($("$etcd" --version | head -1))" >&2
