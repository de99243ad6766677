#!/usr/bin/env bash
# Regenerates nflame's real `perf script` fixtures (see fixtures/README.md).
#
#   scripts/record-fixtures.sh [FIXTURES_DIR]      (default: fixtures/ beside this script)
#
# Needs root (or CAP_PERFMON with kernel callchains allowed), perf, nginx with
# libnginx-mod-http-lua, wrk, curl, gzip, sort, sed and /usr/bin/python3. The
# folded files are written afterwards by nflame's own collapser, through
# `cargo test` (the command is printed at the end).
# All network traffic stays on 127.0.0.1. Everything temporary lives in one
# mktemp directory that is removed on exit, and nginx is stopped on exit.
#
# Environment knobs: PORT (default 18473), SECONDS_NGINX (default 5),
# FREQ (default 999), WRK_CONNS (default 32).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../fixtures}
port=${PORT:-18473}
secs=${SECONDS_NGINX:-5}
freq=${FREQ:-999}
conns=${WRK_CONNS:-32}

mkdir -p "$out/perf-script"
work=$(mktemp -d /tmp/nflame-fixtures.XXXXXX)
nginx_pid_file=$work/nginx.pid

cleanup() {
    if [[ -s $nginx_pid_file ]]; then
        kill -QUIT "$(cat "$nginx_pid_file")" 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -e $nginx_pid_file ]] || break
            sleep 0.1
        done
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# ---------------------------------------------------------------- 1. nginx + Lua
if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
    echo "port 127.0.0.1:$port is in use; set PORT to a free one" >&2
    exit 1
fi
mkdir -p "$work/logs" "$work/tmp"
cat > "$work/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
pid $nginx_pid_file;
error_log $work/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/tmp/body;
    proxy_temp_path $work/tmp/proxy;
    fastcgi_temp_path $work/tmp/fastcgi;
    uwsgi_temp_path $work/tmp/uwsgi;
    scgi_temp_path $work/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        location /lua {
            default_type text/plain;
            content_by_lua_block {
                local t = {}
                for i = 1, 200 do t[i] = string.format("%d:%x", i, i * 7919) end
                ngx.say(#table.concat(t, ","), " ", ngx.var.uri)
            }
        }
    }
}
NGINX
nginx -p "$work" -c "$work/nginx.conf"
for _ in $(seq 50); do
    [[ -s $nginx_pid_file ]] && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/lua" >/dev/null 2>&1 || wget -qO- "http://127.0.0.1:$port/lua" >/dev/null
pids=$(pgrep -d, -P "$(cat "$nginx_pid_file")")
pids="$(cat "$nginx_pid_file"),$pids"

# Bounded load: wrk runs a little longer than the recording, on loopback only.
wrk -t1 -c"$conns" -d"$((secs + 2))s" "http://127.0.0.1:$port/lua" > "$work/wrk.txt" &
wrk_pid=$!
sleep 1
perf record -q -e cpu-clock -F "$freq" -g -p "$pids" -o "$work/nginx.data" -- sleep "$secs"
wait "$wrk_pid"
perf script -i "$work/nginx.data" 2>/dev/null | gzip -9 > "$out/perf-script/nginx-lua.perf.txt.gz"
echo "nginx-lua: $(grep -m1 'Requests/sec' "$work/wrk.txt")" >&2

# ------------------------------------------- 2. sort + gzip (a shell pipeline)
perf record -q --sample-cpu -e cpu-clock -F "$freq" -g -o "$work/sort-gzip.data" -- \
    sh -c "seq 1 1500000 | sed 's/\$/ nflame/' | sort -r | gzip -6 > $work/sorted.gz"
# Printed with PID/TID and CPU (perf's default shows the TID only), so that
# --pid/--tid have something to show.
perf script -F comm,pid,tid,cpu,time,period,event,ip,sym,symoff,dso -i "$work/sort-gzip.data" 2>/dev/null | gzip -9 > "$out/perf-script/sort-gzip.perf.txt.gz"

# ---------------------- 3. python with two events (cpu-clock and page-faults)
cat > "$work/work.py" <<'PY'
import json, hashlib
data = [{"id": i, "name": "item%d" % i, "tags": ["a", "b", str(i % 7)]} for i in range(200000)]
text = json.dumps(data)
for _ in range(3):
    back = json.loads(text)
    h = hashlib.sha256(text.encode()).hexdigest()
print(len(back), h[:8])
PY
perf record -q -e cpu-clock -e page-faults -F "$freq" -g -o "$work/python.data" -- \
    /usr/bin/python3 "$work/work.py" > /dev/null
perf script -i "$work/python.data" 2>/dev/null | gzip -9 > "$out/perf-script/python-multi-event.perf.txt.gz"

ls -l "$out/perf-script" >&2
cat >&2 <<MSG
Now write the folded fixtures with nflame's collapser:
    NFLAME_BLESS=1 cargo test -p nflame-profile perf_script::tests::fixture
MSG
