#!/usr/bin/env bash
# Installs the Debian packages nflame's tests and lab use (needs root and apt-get).
# Skips apt entirely when everything is already there.
set -euo pipefail
packages=(gcc g++ clang llvm linux-perf nginx libnginx-mod-http-lua wrk iproute2 iptables procps docker.io golang-go protobuf-compiler golang-github-google-pprof-dev chromium hyperfine busybox-static)
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

# Upstream LuaJIT (Debian's `luajit`, 2.1.0-beta3) beside nginx's luajit2: the two
# packages conflict (installing `luajit` removes libnginx-mod-http-lua), so the
# Lua tests run a private, unpacked copy with LD_LIBRARY_PATH.
upstream_luajit=/opt/nflame-test/luajit-upstream
if ! [ -x "$upstream_luajit/usr/bin/luajit" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: $upstream_luajit is missing (run as root to unpack Debian's luajit there)" >&2
    exit 1
  fi
  echo "install-deps: unpacking Debian's luajit and libluajit-5.1-2 into $upstream_luajit"
  debs="$(mktemp -d)"
  (cd "$debs" && apt-get download -q luajit libluajit-5.1-2 2>/dev/null) || {
    apt-get update -q && (cd "$debs" && apt-get download -q luajit libluajit-5.1-2)
  }
  mkdir -p "$upstream_luajit"
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$upstream_luajit"; done
  rm -rf "$debs"
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
