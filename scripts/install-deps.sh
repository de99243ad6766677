#!/usr/bin/env bash
# Installs the Debian packages nflame's tests and lab use (needs root and apt-get).
# Skips apt entirely when everything is already there.
set -euo pipefail
packages=(gcc g++ linux-perf nginx libnginx-mod-http-lua wrk iproute2 iptables procps docker.io golang-go protobuf-compiler golang-github-google-pprof-dev chromium hyperfine busybox-static)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
elif [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]} (run as root, or install them with apt-get)" >&2
  exit 1
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Debian starts nginx (and dockerd) on install where it can; the tests run their own.
  if [[ " ${missing[*]} " == *" nginx "* ]]; then
    systemctl stop nginx 2>/dev/null || service nginx stop 2>/dev/null || true
  fi
fi

# The lab (scripts/lab.sh) runs Debian's docker-proxy standalone; docker.io ships it.
if ! [ -x /usr/sbin/docker-proxy ] && ! command -v docker-proxy >/dev/null 2>&1; then
  echo "install-deps: docker.io is installed but /usr/sbin/docker-proxy is missing (the lab needs it)" >&2
  exit 1
fi

# playwright-core drives Debian's chromium in the HTML report tests (no browser download).
browser_tests="$(cd "$(dirname "$0")/.." && pwd)/crates/nflame/tests/browser"
if [ ! -d "$browser_tests/node_modules/playwright-core" ]; then
  echo "install-deps: npm install in $browser_tests"
  (cd "$browser_tests" && npm install --no-audit --no-fund --silent)
fi
