# Keel's image holds only its three statically linked binaries, so it needs no
# base image and builds on an engine that cannot pull anything.
#
# Build the binaries first (scripts/docker-build.sh does both steps):
#   RUSTFLAGS="-C target-feature=+crt-static" \
#     cargo build --release --target x86_64-unknown-linux-gnu --bins
#   docker-compose build
FROM scratch

ARG BIN_DIR=target/x86_64-unknown-linux-gnu/release
COPY ${BIN_DIR}/keel-master ${BIN_DIR}/keel-chunkserver ${BIN_DIR}/keelctl /usr/local/bin/

ENV PATH=/usr/local/bin RUST_LOG=info
# Creates /tmp, where `keelctl put <id> -` spools standard input.
WORKDIR /tmp
WORKDIR /
EXPOSE 7000 7001 7080
ENTRYPOINT ["/usr/local/bin/keel-master"]
