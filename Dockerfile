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
# The daemons run as an unprivileged numeric user (a scratch image has no
# /etc/passwd). It owns /data (the chunk server's data dir; a named volume
# mounted there starts with this owner) and /tmp, where `keelctl put <id> -`
# spools standard input. A scratch image has no shell to chown with, so both
# are copies of an empty directory made with the right owner.
COPY --chown=10001:10001 docker/empty /data
COPY --chown=10001:10001 docker/empty /tmp
USER 10001:10001
WORKDIR /
EXPOSE 7000 7001 7080
ENTRYPOINT ["/usr/local/bin/keel-master"]
