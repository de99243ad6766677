#!/usr/bin/env bash
# Installs the Debian packages nflame's tests and lab use (needs root and apt-get).
# Skips apt entirely when everything is already there.
set -euo pipefail
packages=(gcc g++ linux-perf nginx libnginx-mod-http-lua wrk iproute2 iptables golang-go protobuf-compiler golang-github-google-pprof-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]} (run as root, or install them with apt-get)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian starts nginx on install; the tests run their own instances on other ports.
systemctl stop nginx 2>/dev/null || service nginx stop 2>/dev/null || pkill -x nginx 2>/dev/null || true
