#!/usr/bin/env bash
# Lua frames on nginx + LuaJIT (Debian's nginx + libnginx-mod-http-lua, one worker,
# the Lua module of crates/nflame/tests/lua/app.lua: compute_a twice the cost of
# compute_b), under wrk on loopback:
#
#   1. for the JIT on and off (jit.off() in init_by_lua): `nflame record` of the
#      worker for SECS seconds; the summary's share of samples in LuaJIT code whose
#      Lua stack reaches the entry chunk, and compute_a's share of compute_a + b;
#   2. requests/s and recorder CPU with Lua frames on and with --lua off (JIT on), by
#      scripts/bench-overhead.py's paired-windows method (ROUNDS rounds of
#      none,luaoff,lua).
#
#   scripts/bench-lua.sh [ROUNDS] [SECS]        (as root; default 20 rounds, 10 s)
#
# Environment: NFLAME (default target/release/nflame, built if missing), PORT (18931).
# Takes /tmp/nflame-heavy.lock (set NFLAME_HEAVY_LOCKED=1 when the caller holds it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${NFLAME_HEAVY_LOCKED:-} ]]; then
    exec env NFLAME_HEAVY_LOCKED=1 flock /tmp/nflame-heavy.lock "$0" "$@"
fi
rounds=${1:-20}
secs=${2:-10}
port=${PORT:-18931}
nflame=${NFLAME:-target/release/nflame}
if [[ ! -x $nflame ]]; then
    cargo build --release -p nflame
fi
nflame=$(realpath "$nflame")
tmp=$(mktemp -d /tmp/nflame-bench-lua.XXXXXX)
# nginx's workers run as nobody: they read the Lua module from here.
chmod 755 "$tmp"
dir=$tmp/nginx-host
mkdir -p "$dir/logs" "$dir/lua"
cp crates/nflame/tests/lua/app.lua "$dir/lua/"
mods=/usr/lib/nginx/modules

write_conf() { # INIT
    cat >"$dir/nginx.conf" <<EOF
load_module $mods/ndk_http_module.so;
load_module $mods/ngx_http_lua_module.so;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp-body;
    proxy_temp_path $dir/tmp-proxy;
    fastcgi_temp_path $dir/tmp-fastcgi;
    uwsgi_temp_path $dir/tmp-uwsgi;
    scgi_temp_path $dir/tmp-scgi;
    lua_package_path "$dir/lua/?.lua;;";
    init_by_lua_block { $1 }
    server {
        listen 127.0.0.1:$port;
        location / {
            default_type text/plain;
            content_by_lua_block {
                ngx.say(require("app").handler(20000))
            }
        }
        location = /nflame-status {
            stub_status;
            allow 127.0.0.1;
            deny all;
        }
    }
}
EOF
}

stop_nginx() {
    if [[ -f $dir/nginx.pid ]]; then
        kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
        sleep 1
    fi
}
trap 'stop_nginx; rm -rf "$tmp"' EXIT

start_nginx() {
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log"
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$port/" >/dev/null && return 0
        sleep 0.1
    done
    echo "nginx did not answer on 127.0.0.1:$port within 30 s:" >&2
    cat "$dir/logs/error.log" >&2
    exit 1
}

echo "$(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
for jit in on off; do
    if [[ $jit == on ]]; then write_conf ""; else write_conf "jit.off()"; fi
    start_nginx
    master=$(cat "$dir/nginx.pid")
    worker=$(cat "/proc/$master/task/$master/children" | awk '{print $1}')
    wrk -t1 -c8 -d$((secs + 4))s "http://127.0.0.1:$port/" >/dev/null &
    load=$!
    sleep 1
    "$nflame" record --pid "$worker" -d "$secs" -o "$tmp/jit-$jit.folded" 2>"$tmp/jit-$jit.txt"
    wait $load || true
    stop_nginx
    entry=$(grep -o '[0-9.]*% of the [0-9]* in Lua code reach the entry chunk' "$tmp/jit-$jit.txt")
    vm=$(grep -o 'VM: .*' "$tmp/jit-$jit.txt" | head -1)
    # compute_a's share among samples whose innermost Lua function is compute_a or b.
    share=$(python3 - "$tmp/jit-$jit.folded" <<'PY'
import re, sys
n = {"a": 0, "b": 0}
for line in open(sys.argv[1]):
    stack, count = line.rsplit(" ", 1)
    lua = [f for f in stack.split(";") if re.search(r"@.*_\[lj?\]$", f)]
    if lua and re.match(r"compute_([ab])@", lua[-1]):
        n[lua[-1][8]] += int(count)
total = max(n["a"] + n["b"], 1)
print(f"{100 * n['a'] / total:.1f}% ({n['a']} vs {n['b']})")
PY
)
    echo "JIT $jit: $entry; compute_a $share of compute_a + compute_b (expected 66.7%); $vm"
done

write_conf ""
start_nginx
LAB_STATE=$tmp PORT_HOST=$port NFLAME=$nflame python3 scripts/bench-overhead.py "$rounds" none,luaoff,lua
