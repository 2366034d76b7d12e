#!/usr/bin/env bash
# Makes a private CA and certificates for a local or compose Keel cluster, with
# the openssl CLI:
#
#   scripts/dev-certs.sh DIR [DAYS]
#
# DIR/ca.crt, ca.key     the CA (--tls-ca on every daemon and keelctl)
# DIR/node.crt, node.key the daemons' certificate, for TLS serving and as their
#                        client certificate towards each other (mTLS); its names
#                        are localhost, 127.0.0.1, master, cs1..cs5
# DIR/client.crt, .key   keelctl's client certificate (mTLS)
# DIR/cluster.token      a random cluster token (--auth-token-file), kept if present
# DIR/client.token       a random client token (--client-token-file), kept if present
#
# For development and tests only: the keys are not encrypted, and one node
# certificate serves every daemon. Existing certificates in DIR are replaced.
#
# Keys and tokens are written with mode 0600 (readable by their owner only),
# certificates 0644. KEEL_CERTS_OWNER=UID[:GID] hands the keys and tokens to
# that owner (e.g. 10001:10001, the containers' user, for docker-compose.tls.yml;
# needs root or sudo).
set -euo pipefail

dir="${1:?usage: $0 DIR [DAYS]}"
days="${2:-365}"
command -v openssl >/dev/null || { echo "dev-certs: openssl is not installed" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
# Every file made from here on starts private; certificates are opened up below.
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/CN=Keel dev CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt 2>/dev/null

# sign NAME CN EKU [SANS]: NAME.key and NAME.crt signed by the CA.
sign() {
  local name="$1" cn="$2" eku="$3" sans="${4:-}"
  key "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    [ -z "$sans" ] || echo "subjectAltName=$sans"
  } >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -sha256 -days "$days" -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

sign node "keel node" "serverAuth,clientAuth" \
  "DNS:localhost,IP:127.0.0.1,DNS:master,DNS:cs1,DNS:cs2,DNS:cs3,DNS:cs4,DNS:cs5"
sign client "keelctl" "clientAuth"
rm -f ca.srl
for t in cluster client; do
  [ -s "$t.token" ] || openssl rand -hex 32 >"$t.token"
done
chmod 0644 ./*.crt
chmod 0600 ./*.key ./*.token
if [ -n "${KEEL_CERTS_OWNER:-}" ]; then
  if [ "$(id -u)" = 0 ]; then chown "$KEEL_CERTS_OWNER" ./*.key ./*.token
  else sudo -n chown "$KEEL_CERTS_OWNER" ./*.key ./*.token; fi
fi
echo "dev-certs: CA and certificates written to $dir (valid $days days)" >&2
