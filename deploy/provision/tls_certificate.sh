#!/usr/bin/env bash
# tls_certificate.sh DIR CERT KEY ADDRESS...: the certificate Nginx serves, as DIR/pneumonia.crt and
# .key. CERT and KEY, when not empty files, are the operator's CA-issued certificate chain and its key
# (provision.sh reads them from SSM, so that a replaced Nginx host serves them again): installed when
# they belong together. Otherwise an installed pair is kept, and a host without one makes a
# self-signed certificate naming the IPv4 ADDRESSes (the Elastic IP and the host's own).
set -euo pipefail
dir=$1
cert=$2
key=$3
shift 3
install -d -m 0700 "$dir"

if [ -s "$cert" ] && [ -s "$key" ]; then
  if [ "$(openssl x509 -in "$cert" -noout -pubkey 2>/dev/null)" = "$(openssl pkey -in "$key" -pubout 2>/dev/null)" ] &&
    openssl x509 -in "$cert" -noout 2>/dev/null; then
    install -m 0644 "$cert" "$dir/pneumonia.crt"
    install -m 0600 "$key" "$dir/pneumonia.key"
    echo "tls_certificate: installed the operator's certificate ($(openssl x509 -in "$cert" -noout -subject))"
    exit 0
  fi
  echo "tls_certificate: the operator's certificate and key are unreadable or do not belong together;" \
    "not installed" >&2
fi

if [ -s "$dir/pneumonia.crt" ] && [ -s "$dir/pneumonia.key" ]; then
  echo "tls_certificate: keeping the installed certificate"
  exit 0
fi
addresses=$(for ip in "$@"; do
  if [[ $ip =~ ^[0-9]+(\.[0-9]+){3}$ ]]; then printf 'IP:%s,' "$ip"; fi
done)
openssl req -x509 -newkey rsa:2048 -sha256 -nodes -days 397 -subj "/CN=pneumonia-platform" \
  -addext "subjectAltName=${addresses%,}" -keyout "$dir/pneumonia.key" -out "$dir/pneumonia.crt" 2>/dev/null
chmod 0600 "$dir/pneumonia.key"
echo "tls_certificate: made a self-signed certificate for ${addresses%,}"
