#!/usr/bin/env bash
# Installs everything nflame's tests and lab use on a Debian 12 machine with Rust
# (needs root and apt-get for the packages): the Debian packages, cargo-nextest, and
# playwright-core for the browser tests (npm, from the lock file).
# Quick and silent apart from one line when everything is already there.
#
# NFLAME_SKIP=TAG,... (see scripts/test.sh) leaves out what only the skipped tests use.
set -euo pipefail
cd "$(dirname "$0")/.."

# What every test run needs, then what each NFLAME_SKIP tag's tests need.
packages=(gcc g++ clang llvm binutils curl ca-certificates python3 util-linux procps iproute2
          iptables protobuf-compiler golang-github-google-pprof-dev hyperfine)
declare -A tag_packages=(
  [docker]="docker.io busybox-static"
  [go]="golang-go"
  [nginx]="nginx libnginx-mod-http-lua"
  [wrk]="wrk"
  [chromium]="chromium nodejs"
  [perf]="linux-perf"
)
skip=",${NFLAME_SKIP:-},"
skipped() { [[ $skip == *",$1,"* ]]; }
for tag in "${!tag_packages[@]}"; do
  if ! skipped "$tag"; then
    read -ra more <<<"${tag_packages[$tag]}"
    packages+=("${more[@]}")
  fi
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm: Debian's package, unless node came with its own (NodeSource's nodejs ships npm).
if ! skipped chromium && ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]} (run as root, or install them with apt-get)" >&2
    exit 1
  fi
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
if ! skipped docker && ! [ -x /usr/sbin/docker-proxy ] && ! command -v docker-proxy >/dev/null 2>&1; then
  echo "install-deps: docker.io is installed but /usr/sbin/docker-proxy is missing (the lab needs it)" >&2
  exit 1
fi

# cargo-nextest runs the suite (scripts/test.sh). The prebuilt archive is quick; when
# it cannot be fetched, build it.
if ! cargo nextest --version >/dev/null 2>&1; then
  bin=${CARGO_HOME:-$HOME/.cargo}/bin
  mkdir -p "$bin"
  echo "install-deps: installing cargo-nextest into $bin"
  if ! curl -fsSL --retry 3 https://get.nexte.st/latest/linux | tar -xzf - -C "$bin"; then
    cargo install --locked cargo-nextest
  fi
  cargo nextest --version >/dev/null
fi

# playwright-core drives Debian's chromium in the HTML report tests (no browser
# download), at the version package-lock.json pins (it needs Node.js 18 or newer:
# Debian 12 has 18).
if ! skipped chromium; then
  browser_tests=crates/nflame/tests/browser
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$node_major" -lt 18 ]; then
    echo "install-deps: Node.js $(node --version) is too old for playwright-core (18 or newer)" >&2
    exit 1
  fi
  want=$(node -p "require('./$browser_tests/package-lock.json').packages['node_modules/playwright-core'].version")
  have=$(node -p "try { require('./$browser_tests/node_modules/playwright-core/package.json').version } catch (e) { '' }")
  if [ "$want" != "$have" ]; then
    echo "install-deps: npm ci in $browser_tests (playwright-core $want)"
    (cd "$browser_tests" && npm ci --no-audit --no-fund --silent)
  fi
fi
echo "install-deps: everything the tests use is installed"
