#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the stack and the tests need, if any is missing.
# Runs as root or through sudo; does nothing when everything is already there.
set -euo pipefail

PACKAGES=(redis-server nginx prometheus prometheus-node-exporter chromium chromium-driver
          shellcheck python3-venv curl gettext-base iproute2 nftables util-linux e2fsprogs openssl
          prometheus-redis-exporter prometheus-nginx-exporter prometheus-alertmanager mtail)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts these daemons on install; the stack and the tests run their own copies.
for svc in redis-server nginx prometheus prometheus-node-exporter prometheus-redis-exporter prometheus-nginx-exporter \
           prometheus-alertmanager mtail; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
