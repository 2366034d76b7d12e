# etcd for docker-compose.ha.yml, from the host's Debian package (etcd-server)
# rather than a registry: scripts/etcd-image.sh stages the binary and the few
# shared libraries it links (see `ldd /usr/bin/etcd`) under rootfs/, and an
# empty directory for the data volume's owner under empty/.
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 empty /etcd-data
USER 10001:10001
EXPOSE 2379 2380
ENTRYPOINT ["/usr/bin/etcd"]
