#!/usr/bin/env bash
# nflame lab: the container-network bottleneck, built from real Debian parts.
#
#   scripts/lab.sh up                 build everything (idempotent)
#   scripts/lab.sh down               remove everything (idempotent)
#   scripts/lab.sh status             what is up, and does each mode answer
#   scripts/lab.sh load MODE SECONDS  wrk against MODE for SECONDS; prints requests/s
#                                     and CPU per request
#   scripts/lab.sh bench SECONDS      `load` on every mode, one table
#
# MODE is one of
#   host   nginx (+ libnginx-mod-http-lua, `content_by_lua_block`) on 127.0.0.1:$PORT_HOST
#          in the root network namespace: what `docker run --net=host` gives.
#   nat    127.0.0.1:$PORT_NAT is DNATed by iptables (OUTPUT chain, as Docker does with
#          `"userland-proxy": false`) to nginx inside the network namespace `nflame-lab`,
#          reached over a veth pair attached to the Linux bridge `nflbr0`.
#   proxy  127.0.0.1:$PORT_PROXY is served by a standalone `docker-proxy` (Docker's
#          userland proxy, Debian's docker.io) relaying to the same namespaced nginx:
#          what `docker run -p` gives with the default `"userland-proxy": true`.
#
# Needs root, iproute2, iptables, nginx, libnginx-mod-http-lua, wrk, docker.io.
# It only uses addresses it creates ($LAB_NET.0/24 on nflbr0 and inside the namespace)
# and 127.0.0.1; every load is bounded in time; `down` leaves nothing behind.
# Host-wide settings are not changed: route_localnet is set on nflbr0 only (the kernel
# ORs the per-device and `all` values), which disappears with the bridge.
#
# iptables: Debian 12's `iptables` is iptables-nft (nf_tables backend); kernels or
# containers without nf_tables still have the legacy backend. `up` uses the first of
# $IPTABLES, iptables, iptables-nft, iptables-legacy that can list the nat table, and
# remembers it for `down`, which also cleans up with every other backend present.
#
# Environment (defaults): LAB_STATE=/run/nflame-lab LAB_NET=10.213.77
#   PORT_HOST=18080 PORT_NAT=18081 PORT_PROXY=18082 WRK_THREADS=2 WRK_CONNS=64
#   NGINX_WORKERS=1 IPTABLES=(auto)

set -euo pipefail

STATE=${LAB_STATE:-/run/nflame-lab}
NET=${LAB_NET:-10.213.77}
PORT_HOST=${PORT_HOST:-18080}
PORT_NAT=${PORT_NAT:-18081}
PORT_PROXY=${PORT_PROXY:-18082}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-64}
NGINX_WORKERS=${NGINX_WORKERS:-1}

NS=nflame-lab
BR=nflbr0
VETH_HOST=nflveth0   # bridge port, root namespace
VETH_NS=nflveth1     # renamed eth0 inside the namespace
BR_ADDR=$NET.1
NS_ADDR=$NET.2
CHAIN=NFLAME-LAB           # nat: DNAT from the published port (Docker's DOCKER chain)
CHAIN_POST=NFLAME-LAB-POST # nat: MASQUERADE of loopback-sourced traffic
COMMENT=nflame-lab

IPT=${IPTABLES:-iptables}

die() {
    echo "lab.sh: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is missing (install: $2)"
}

find_docker_proxy() {
    local p
    for p in "${DOCKER_PROXY:-}" /usr/sbin/docker-proxy /usr/bin/docker-proxy \
        /usr/libexec/docker/docker-proxy; do
        if [[ -n $p && -x $p ]]; then
            echo "$p"
            return 0
        fi
    done
    command -v docker-proxy 2>/dev/null || die "docker-proxy not found (install: docker.io)"
}

find_lua_module() {
    local d
    for d in /usr/lib/nginx/modules /usr/share/nginx/modules; do
        if [[ -f $d/ngx_http_lua_module.so ]]; then
            echo "$d"
            return 0
        fi
    done
    die "ngx_http_lua_module.so not found (install: libnginx-mod-http-lua)"
}

# The iptables command that works here (see the header), or an explanation.
pick_iptables() {
    local c
    for c in ${IPTABLES:-} iptables iptables-nft iptables-legacy; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -w -t nat -S >/dev/null 2>&1; then
            echo "$c"
            return 0
        fi
    done
    command -v iptables >/dev/null 2>&1 || die "iptables is missing (install: iptables)"
    die "iptables cannot use the nat table with either backend: load the modules \
(modprobe nf_tables nft_nat, or ip_tables iptable_nat) or pick a backend \
(update-alternatives --set iptables /usr/sbin/iptables-legacy); error: \
$(iptables -w -t nat -S 2>&1 | head -1)"
}

pid_alive() { # PIDFILE
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_pidfile() { # PIDFILE SIGNAL
    local f=$1 sig=$2 pid i
    [[ -s $f ]] || {
        rm -f "$f"
        return 0
    }
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill "-$sig" "$pid" 2>/dev/null || true
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

# nginx with the Lua module answering from content_by_lua_block.
write_nginx_conf() { # DIR LISTEN
    local dir=$1 listen=$2 mods
    mods=$(find_lua_module)
    mkdir -p "$dir/logs" "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
# generated by scripts/lab.sh
load_module $mods/ndk_http_module.so;
load_module $mods/ngx_http_lua_module.so;
worker_processes $NGINX_WORKERS;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
    server {
        listen $listen;
        location / {
            default_type text/plain;
            content_by_lua_block {
                ngx.say("hello")
            }
        }
        # nginx's own request counter (scripts/bench-overhead.py reads it).
        location = /nflame-status {
            stub_status;
            allow 127.0.0.1;
            deny all;
        }
        # Lua hot enough for LuaJIT to compile it into traces.
        location /lua-loop {
            default_type text/plain;
            content_by_lua_block {
                local t = {}
                for i = 1, 200 do t[i] = string.format("%d:%x", i, i * 7919) end
                ngx.say(#table.concat(t, ","))
            }
        }
    }
}
EOF
}

start_nginx() { # DIR [netns-prefix...]
    local dir=$1 i
    shift
    if pid_alive "$dir/nginx.pid"; then
        return 0
    fi
    "$@" nginx -q -t -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log"
    "$@" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log"
    for i in $(seq 50); do
        pid_alive "$dir/nginx.pid" && return 0
        sleep 0.1
    done
    die "nginx in $dir did not start; see $dir/logs/error.log"
}

ipt_rule() { # ADD|DEL TABLE CHAIN RULE...: idempotent add / delete-all-copies
    local op=$1 table=$2 chain=$3
    shift 3
    if [[ $op == ADD ]]; then
        "$IPT" -w -t "$table" -C "$chain" "$@" 2>/dev/null ||
            "$IPT" -w -t "$table" -A "$chain" "$@"
    else
        while "$IPT" -w -t "$table" -C "$chain" "$@" 2>/dev/null; do
            "$IPT" -w -t "$table" -D "$chain" "$@"
        done
    fi
}

# The jumps into our chains, exactly as added and deleted.
JUMP_OUT=(-m addrtype --dst-type LOCAL -m comment --comment "$COMMENT" -j "$CHAIN")
JUMP_POST=(-m comment --comment "$COMMENT" -j "$CHAIN_POST")

up() {
    [[ $(id -u) == 0 ]] || die "needs root (network namespaces, iptables)"
    need ip iproute2
    IPT=$(pick_iptables)
    need nginx "nginx libnginx-mod-http-lua"
    need wrk wrk
    local proxy
    proxy=$(find_docker_proxy)
    mkdir -p "$STATE"
    printf 'PORT_HOST=%s\nPORT_NAT=%s\nPORT_PROXY=%s\nNET=%s\nIPT=%s\n' \
        "$PORT_HOST" "$PORT_NAT" "$PORT_PROXY" "$NET" "$IPT" >"$STATE/ports"

    # host: nginx in the root namespace on loopback.
    write_nginx_conf "$STATE/nginx-host" "127.0.0.1:$PORT_HOST"
    start_nginx "$STATE/nginx-host"

    # The "container": a network namespace on a bridge, over a veth pair.
    ip netns list | grep -qw "^$NS" || ip netns add "$NS"
    ip -n "$NS" link set lo up
    ip link show "$BR" >/dev/null 2>&1 || ip link add "$BR" type bridge
    ip addr replace "$BR_ADDR/24" dev "$BR"
    ip link set "$BR" up
    if ! ip link show "$VETH_HOST" >/dev/null 2>&1; then
        ip link add "$VETH_HOST" type veth peer name "$VETH_NS" netns "$NS"
        ip -n "$NS" link set "$VETH_NS" name eth0
    fi
    ip link set "$VETH_HOST" master "$BR" up
    ip -n "$NS" addr replace "$NS_ADDR/24" dev eth0
    ip -n "$NS" link set eth0 up
    ip -n "$NS" route replace default via "$BR_ADDR"
    write_nginx_conf "$STATE/nginx-ns" "$NS_ADDR:80"
    start_nginx "$STATE/nginx-ns" ip netns exec "$NS"

    # nat: Docker's rules for a port published on 127.0.0.1 with the userland proxy
    # off. Loopback-sourced packets may only leave by a device with route_localnet.
    sysctl -q -w "net.ipv4.conf.$BR.route_localnet=1"
    "$IPT" -w -t nat -N "$CHAIN" 2>/dev/null || true
    "$IPT" -w -t nat -N "$CHAIN_POST" 2>/dev/null || true
    "$IPT" -w -t nat -F "$CHAIN"
    "$IPT" -w -t nat -F "$CHAIN_POST"
    "$IPT" -w -t nat -A "$CHAIN" -d 127.0.0.1/32 ! -i "$BR" -p tcp -m tcp --dport "$PORT_NAT" \
        -j DNAT --to-destination "$NS_ADDR:80"
    "$IPT" -w -t nat -A "$CHAIN_POST" -o "$BR" -m addrtype --src-type LOCAL -j MASQUERADE
    ipt_rule ADD nat OUTPUT "${JUMP_OUT[@]}"
    ipt_rule ADD nat POSTROUTING "${JUMP_POST[@]}"

    # proxy: docker-proxy reports readiness on fd 3 ("0\n" ok, "1\n<error>" failed).
    if ! pid_alive "$STATE/docker-proxy.pid"; then
        rm -f "$STATE/docker-proxy.ready"
        setsid "$proxy" -proto tcp -host-ip 127.0.0.1 -host-port "$PORT_PROXY" \
            -container-ip "$NS_ADDR" -container-port 80 \
            3>"$STATE/docker-proxy.ready" </dev/null >"$STATE/docker-proxy.log" 2>&1 &
        echo $! >"$STATE/docker-proxy.pid"
        local i
        for i in $(seq 50); do
            [[ -s $STATE/docker-proxy.ready ]] && break
            sleep 0.1
        done
        if [[ $(head -c1 "$STATE/docker-proxy.ready" 2>/dev/null) != 0 ]]; then
            echo "docker-proxy failed: $(cat "$STATE/docker-proxy.ready" "$STATE/docker-proxy.log" 2>/dev/null)" >&2
            stop_pidfile "$STATE/docker-proxy.pid" TERM
            exit 1
        fi
    fi

    local m
    for m in host nat proxy; do
        probe "$m" || die "mode $m does not answer after up (see $STATE)"
    done
    status
}

down() {
    # Processes first, then the network, then the files; every step tolerates absence.
    stop_pidfile "$STATE/docker-proxy.pid" TERM
    stop_pidfile "$STATE/nginx-host/nginx.pid" QUIT
    stop_pidfile "$STATE/nginx-ns/nginx.pid" QUIT
    # Anything still in the namespace (an nginx whose pid file was lost).
    if ip netns list 2>/dev/null | grep -qw "^$NS"; then
        local p
        for p in $(ip netns pids "$NS" 2>/dev/null); do
            kill -TERM "$p" 2>/dev/null || true
        done
        sleep 0.2
        for p in $(ip netns pids "$NS" 2>/dev/null); do
            kill -KILL "$p" 2>/dev/null || true
        done
        ip netns del "$NS"
    fi
    # The rules, with the backend `up` used first, then any other that has them.
    load_ports
    local c ipt
    for ipt in "$IPT" iptables iptables-nft iptables-legacy; do
        command -v "$ipt" >/dev/null 2>&1 && "$ipt" -w -t nat -S >/dev/null 2>&1 || continue
        IPT=$ipt
        ipt_rule DEL nat OUTPUT "${JUMP_OUT[@]}"
        ipt_rule DEL nat POSTROUTING "${JUMP_POST[@]}"
        for c in "$CHAIN" "$CHAIN_POST"; do
            if "$IPT" -w -t nat -L "$c" -n >/dev/null 2>&1; then
                "$IPT" -w -t nat -F "$c"
                "$IPT" -w -t nat -X "$c"
            fi
        done
    done
    ip link del "$VETH_HOST" 2>/dev/null || true
    ip link del "$BR" 2>/dev/null || true
    rm -rf "$STATE"
    echo "lab down: nothing left"
}

port_of() { # MODE
    case $1 in
    host) echo "$PORT_HOST" ;;
    nat) echo "$PORT_NAT" ;;
    proxy) echo "$PORT_PROXY" ;;
    *) die "unknown mode '$1' (host, nat, proxy)" ;;
    esac
}

load_ports() {
    if [[ -f $STATE/ports ]]; then
        # shellcheck disable=SC1091
        source "$STATE/ports"
    fi
}

probe() { # MODE: one HTTP request over bash's /dev/tcp; true if "hello" comes back
    local port reply
    port=$(port_of "$1")
    reply=$(timeout 3 bash -c "exec 5<>/dev/tcp/127.0.0.1/$port || exit 1
        printf 'GET / HTTP/1.0\r\nHost: lab\r\n\r\n' >&5; cat <&5" 2>/dev/null) || return 1
    [[ $reply == *hello* ]]
}

status() {
    load_ports
    local m
    echo "state:     $STATE $([[ -d $STATE ]] && echo present || echo absent)"
    echo "namespace: $(ip netns list 2>/dev/null | grep -w "^$NS" || echo absent)"
    echo "bridge:    $(ip -br addr show "$BR" 2>/dev/null || echo absent)"
    echo "veth:      $(ip -br link show "$VETH_HOST" 2>/dev/null || echo absent)"
    echo "iptables:  $({ "$IPT" -w -t nat -S "$CHAIN" 2>/dev/null || true; } | grep -c DNAT || true) DNAT rule(s) in $CHAIN"
    for m in nginx-host/nginx.pid nginx-ns/nginx.pid docker-proxy.pid; do
        if pid_alive "$STATE/$m"; then
            echo "process:   ${m%%[/.]*} running, pid $(cat "$STATE/$m")"
        else
            echo "process:   ${m%%[/.]*} not running"
        fi
    done
    for m in host nat proxy; do
        if probe "$m"; then
            echo "mode $m: http://127.0.0.1:$(port_of "$m")/ answers"
        else
            echo "mode $m: http://127.0.0.1:$(port_of "$m")/ does not answer"
        fi
    done
}

# Busy and total jiffies of all CPUs from /proc/stat (busy = total - idle - iowait).
cpu_jiffies() {
    awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# utime+stime jiffies of a process and its threads.
proc_jiffies() { # PID
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

load() { # MODE SECONDS
    local mode=$1 secs=$2 port out b0 t0 b1 t1 p0=0 p1=0 ppid="" hz
    [[ $secs =~ ^[0-9]+$ ]] && ((secs >= 1 && secs <= 3600)) ||
        die "SECONDS must be an integer from 1 to 3600"
    load_ports
    port=$(port_of "$mode")
    probe "$mode" || die "mode $mode does not answer on 127.0.0.1:$port (run: $0 up)"
    hz=$(getconf CLK_TCK)
    if [[ $mode == proxy ]] && pid_alive "$STATE/docker-proxy.pid"; then
        ppid=$(cat "$STATE/docker-proxy.pid")
        p0=$(proc_jiffies "$ppid")
    fi
    read -r b0 t0 < <(cpu_jiffies)
    out=$(timeout $((secs + 30)) wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${secs}s" \
        "http://127.0.0.1:$port/")
    read -r b1 t1 < <(cpu_jiffies)
    [[ -n $ppid ]] && p1=$(proc_jiffies "$ppid")
    echo "$out" | sed 's/^/  wrk| /' >&2
    local rps reqs
    rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
    reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
    [[ -n $rps && -n $reqs && $reqs -gt 0 ]] || die "wrk reported no requests"
    awk -v m="$mode" -v rps="$rps" -v reqs="$reqs" -v b="$((b1 - b0))" -v t="$((t1 - t0))" \
        -v p="$((p1 - p0))" -v hz="$hz" -v secs="$secs" -v ncpu="$(nproc)" 'BEGIN {
        busy = b / hz
        printf "mode=%s requests_per_s=%.0f requests=%d busy_cpu_s=%.2f cpu_util=%.0f%% cpu_us_per_request=%.1f", \
            m, rps, reqs, busy, 100 * b / (t > 0 ? t : 1), 1e6 * busy / reqs
        if (m == "proxy") printf " docker_proxy_cpu=%.0f%%", 100 * (p / hz) / secs
        printf "\n"
    }'
}

bench() { # SECONDS
    local m
    for m in host nat proxy; do
        load "$m" "$1" 2>/dev/null
    done
}

cmd=${1:-}
case $cmd in
up) up ;;
down) down ;;
status) status ;;
load)
    [[ $# == 3 ]] || die "usage: $0 load host|nat|proxy SECONDS"
    load "$2" "$3"
    ;;
bench)
    [[ $# == 2 ]] || die "usage: $0 bench SECONDS"
    bench "$2"
    ;;
*)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
