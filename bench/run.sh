#!/usr/bin/env bash
# gale versus nginx and HAProxy, side by side on one machine, same upstreams, same load generator.
#
#   bench/run.sh                       every scenario (those gale does not support yet are skipped)
#   bench/run.sh proxy-small gzip-50k  only these
#   ROUNDS=5 DURATION=10s CONNECTIONS=50 bench/run.sh proxy-small
#
# Scenarios: proxy-small proxy-plugins static-small static-1m static-100m gzip-50k idle-10k upload-1g
# upload-p99 proxy-tornado tls-handshake tls-resume https-small h2-small
# (docs/performance.md says what each measures). Rounds are interleaved (gale nginx haproxy gale
# nginx haproxy ...) and the report shows medians; compare ratios from one run only.
#
# Settings (environment):
#   ROUNDS=3             rounds per scenario (at least 3 for a median worth reading)
#   DURATION=10s         wrk duration of one round;  WARMUP=2s  unrecorded run per proxy first
#   CONNECTIONS=50       wrk -c;  WRK_THREADS=1  wrk -t
#   PROXY_CPU=0          CPU list the proxy under test is pinned to (taskset -c)
#   LOAD_CPU=1           CPU list for wrk, the upstreams and the other clients
#   IDLE_CONNECTIONS=10000   connections held open in idle-10k
#   UPLOAD_MB=1024       size of the upload in upload-1g (MiB)
#   UPLOAD_GALE_CPU=...  CPU list of the gale that upload-1g measures against md5sum (default: every
#                        CPU; a second gale, gale-one-core, is pinned to PROXY_CPU like md5sum)
#   UPLOAD_SRC_DIR=...   where upload-1g's source file is written (default: a private tmpfs with huge
#                        pages mounted under the run directory when root, else /dev/shm)
#   UPLOAD_P99_DELAY_MS=5  pause of each connection between requests in upload-p99 (paced load)
#   INSTALL=1            install nginx, haproxy and wrk with apt-get when missing (0: never)
#   BUILD=1              cargo build --release -p gale (and the plugins when missing); 0: use GALE_BIN
#   GALE_BIN=...         the gale binary (default: $CARGO_TARGET_DIR or target/, release/gale)
#   GALE_BASE_BIN=...    a second gale binary (e.g. the last commit before a change), run as target
#                        gale-base beside gale in proxy-small: a before/after comparison in one run
#                        (the report adds gale's ratio to gale-base)
#   PLUGIN_DIR=...       where NAME.wasm plugins are (default: <repo>/target/plugins)
#   GALE_PLUGINS='[...]' TOML array for the route in proxy-plugins (default: see choose_plugins)
#   TORNADO_APP=...      the Tornado backend (default: <repo>/tests/tornado/app.py)
#   TORNADO_PYTHON=...   a python with tornado (default: <repo>/.venv, else bench/out/venv is made)
#   TARGETS="gale nginx haproxy"   which proxies to run (e.g. TARGETS=gale while profiling)
#   TLS_KEY=rsa2048      key of the self-signed certificate made for the TLS scenarios (or ec256)
#   HANDSHAKE_CLIENTS=8  client threads of bench/hsload in tls-handshake, tls-resume (HSLOAD_BIN=...: its binary;
#                        built with BUILD=1 or when missing)
#   H2_STREAMS=10        h2load -m (streams per connection) in h2-small
#   H2_CONNECTIONS=...   h2load -c in h2-small (default CONNECTIONS / H2_STREAMS: as many requests in
#                        flight as wrk has in https-small)
#
# Output: bench/out/<date>/ (configs, logs, raw wrk output, results.jsonl, report.md); the report is
# printed at the end. Everything the script starts is stopped on exit, whatever the exit.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench="$repo/bench"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNECTIONS="${CONNECTIONS:-50}"
WRK_THREADS="${WRK_THREADS:-1}"
if [ "$(nproc)" -ge 2 ]; then
    PROXY_CPU="${PROXY_CPU:-0}"
    LOAD_CPU="${LOAD_CPU:-1}"
else
    PROXY_CPU="${PROXY_CPU:-0}"
    LOAD_CPU="${LOAD_CPU:-0}"
fi
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-10000}"
UPLOAD_MB="${UPLOAD_MB:-1024}"
UPLOAD_GALE_CPU="${UPLOAD_GALE_CPU:-0-$(($(nproc) - 1))}"
UPLOAD_P99_DELAY_MS="${UPLOAD_P99_DELAY_MS:-5}"
INSTALL="${INSTALL:-1}"
BUILD="${BUILD:-1}"
PLUGIN_DIR="${PLUGIN_DIR:-$repo/target/plugins}"
TORNADO_APP="${TORNADO_APP:-$repo/tests/tornado/app.py}"
TORNADO_PYTHON="${TORNADO_PYTHON:-}"
TARGETS="${TARGETS:-gale nginx haproxy}"
TLS_KEY="${TLS_KEY:-rsa2048}"
HANDSHAKE_CLIENTS="${HANDSHAKE_CLIENTS:-8}"
H2_STREAMS="${H2_STREAMS:-10}"
H2_CONNECTIONS="${H2_CONNECTIONS:-$(((CONNECTIONS + H2_STREAMS - 1) / H2_STREAMS))}"

ALL_SCENARIOS=(proxy-small proxy-plugins static-small static-1m static-100m gzip-50k idle-10k upload-1g upload-p99 proxy-tornado
    tls-handshake tls-resume https-small h2-small)

# Ports: fixed, as in the reference configs (bench/conf/).
NGINX_PORT=18080
HAPROXY_PORT=18081
GALE_PORT=18082
GALE2_PORT=18083     # a second gale (without plugins) in proxy-plugins
GALE3_PORT=18084     # gale-base (GALE_BASE_BIN), the binary a change is compared with
PROBE_PORT=18099     # only written into configs that `gale check` reads, never bound
UPSTREAM_PORTS=(19000 19001 19002 19003)

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Processes: everything started goes through spawn, and cleanup stops it by pid.

started=()          # pids still to stop
last_pid=""

spawn() { # NAME CPU COMMAND... (sets last_pid; stdout/stderr to $run/NAME.out/.err)
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$run/$name.out" 2>"$run/$name.err" &
    last_pid=$!
    started+=("$last_pid")
}

forget() { # PID
    local keep=() p
    for p in "${started[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    started=("${keep[@]+"${keep[@]}"}")
}

stop_pid() { # PID: TERM, then KILL after 5 s
    local pid=$1 i
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "pid $pid ignored SIGTERM for 5 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

upload_src_mount="" # upload-1g's private tmpfs, when one was mounted
unmount_upload_src() {
    if [ -n "$upload_src_mount" ]; then
        umount "$upload_src_mount" && rmdir "$upload_src_mount"
        upload_src_mount=""
    fi
}

cleanup() {
    local pid
    for pid in "${started[@]+"${started[@]}"}"; do
        stop_pid "$pid"
    done
    rm -f "/dev/shm/gale-bench-upload-$$.bin" # upload-1g's source, when in memory
    unmount_upload_src 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # NAME PID PORT [SCHEME]: until something answers HTTP(S) on the port (any status)
    local name=$1 pid=$2 port=$3 scheme=${4:-http} i
    for i in $(seq 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "$name exited at start; its stderr:"
            tail -n 20 "$run/$name.err" >&2 || true
            return 1
        fi
        if curl -sk -o /dev/null --max-time 1 "$scheme://127.0.0.1:$port/"; then
            return 0
        fi
        sleep 0.1
    done
    say "$name did not answer on port $port within 15 s"
    return 1
}

port_free() { # PORT
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

rss_kb() { # PID -> VmRSS in kB
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

hwm_kb() { # PID -> VmHWM (peak RSS) in kB
    awk '/^VmHWM:/ {print $2}' "/proc/$1/status"
}

cpu_ticks() { # PID -> user+system clock ticks of the process, all its threads (also bench/tls.sh)
    awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"
}

steal_ticks() { # -> clock ticks the hypervisor took from this machine's CPUs since boot
    awk '$1 == "cpu" {print $9}' /proc/stat
}

# ---------------------------------------------------------------------------------------------
# Setup: packages, gale, scratch dir.

install_packages() {
    local missing=()
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$INSTALL" = 1 ] || die "missing ${missing[*]} (INSTALL=0): install them first"
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get: install them first"
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    # nginx-light is enough (it has gzip and upstream keepalive); fall back to nginx.
    local pkgs=() p
    for p in "${missing[@]}"; do
        if [ "$p" = nginx ] && apt-cache policy nginx-light 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            pkgs+=(nginx-light)
        else
            pkgs+=("$p")
        fi
    done
    say "installing ${pkgs[*]} with apt-get"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${pkgs[@]}" >&2
}

build_gale() {
    local target_dir="${CARGO_TARGET_DIR:-$repo/target}"
    case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
    GALE_BIN="${GALE_BIN:-$target_dir/release/gale}"
    if [ "$BUILD" = 1 ] && wanted gale; then
        say "building gale (cargo build --release -p gale)"
        (cd "$repo" && cargo build --release -p gale) >&2
        if [ ! -e "$PLUGIN_DIR/header_policy.wasm" ] && [ ! -e "$PLUGIN_DIR/header-policy.wasm" ] \
            && [ -x "$repo/scripts/build-plugins.sh" ]; then
            say "building the plugins (scripts/build-plugins.sh)"
            "$repo/scripts/build-plugins.sh" >&2 || say "the plugins did not build: proxy-plugins will be skipped"
        fi
    fi
    wanted gale || return 0
    [ -x "$GALE_BIN" ] || die "no gale binary at $GALE_BIN"
}

setup_run_dir() {
    run="$bench/out/$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$run/www/static" "$run/upstream-www" "$run/upload-store"
    # nginx workers run as an unprivileged user: they must read the files they serve.
    chmod 755 "$bench/out" "$run" "$run/www" "$run/www/static" "$run/upstream-www"
    results="$run/results.jsonl"
    : >"$results"
    say "scratch dir: $run"

    # Static files: a small stylesheet and 1 MiB of random bytes.
    python3 - "$run" <<'EOF'
import os, random, sys
run = sys.argv[1]
rnd = random.Random(8)
words = ("margin padding color border font display flex grid width height background "
         "position relative absolute block inline none auto solid").split()
def css(n):
    out = []
    while sum(map(len, out)) < n:
        out.append(f".c{rnd.randrange(1000)} {{ {rnd.choice(words)}: {rnd.randrange(40)}px; }}\n")
    return "".join(out)[:n]
with open(f"{run}/www/static/small.css", "w") as f:
    f.write(css(1024))
with open(f"{run}/www/static/1m.bin", "wb") as f:
    f.write(os.urandom(1 << 20))
# 50 KB of HTML, compressible like a real page (about 4-6x), not trivially so.
text = ("tornado proxy request response upstream backend keepalive header static upload gzip "
        "latency throughput worker connection plugin policy cache memory thread process").split()
rows = []
size = 0
i = 0
while size < 50 * 1024:
    cells = "".join(f"<td class=\"c{rnd.randrange(9)}\">{' '.join(rnd.choice(text) for _ in range(rnd.randrange(2, 7)))} {rnd.randrange(100000)}</td>" for _ in range(4))
    row = f"<tr id=\"r{i}\">{cells}</tr>\n"
    rows.append(row)
    size += len(row)
    i += 1
head = "<!doctype html><html><head><title>bench</title></head><body><table>\n"
tail = "</table></body></html>\n"
body = (head + "".join(rows))[: 50 * 1024 - len(tail)] + tail
with open(f"{run}/upstream-www/page-50k.html", "w") as f:
    f.write(body)
EOF
    chmod 644 "$run/www/static/"* "$run/upstream-www/"*
}

write_meta() {
    local gale_version
    gale_version="$("$GALE_BIN" --version 2>/dev/null | head -1 | sed "s/^gale //") ($(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet 2>/dev/null || echo '+dirty'))"
    # With BUILD=0 the binary need not come from this checkout's commit.
    [ "$BUILD" = 1 ] || gale_version="$gale_version, prebuilt binary $GALE_BIN"
    python3 - "$run/meta.json" <<EOF
import json, sys
json.dump({
    "run": "$(basename "$run")",
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "cpu": "$(lscpu | sed -n 's/^Model name: *//p' | head -1)",
    "cores": "$(nproc)",
    "kernel": "$(uname -r)",
    "rounds": "$ROUNDS", "duration": "$DURATION", "connections": "$CONNECTIONS",
    "wrk_threads": "$WRK_THREADS", "proxy_cpu": "$PROXY_CPU", "load_cpu": "$LOAD_CPU",
    "gale": "$gale_version",
    "nginx": "$(nginx -v 2>&1 | sed 's/^nginx version: //')",
    "haproxy": "$(haproxy -v 2>/dev/null | head -1 | awk '{print $1, $3}')",
    "wrk": "$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')",
    "h2load": "$(h2load --version 2>/dev/null | head -1)",
    "openssl": "$(openssl version 2>/dev/null | awk '{print $1, $2}')",
    "loadavg": "$(cut -d' ' -f1-3 /proc/loadavg)",
}, open(sys.argv[1], "w"), indent=1)
EOF
}

record() { # a JSON object, one line
    printf '%s\n' "$1" >>"$results"
}

skip() { # SCENARIO REASON
    say "$1: skipped: $2"
    python3 -c 'import json,sys; print(json.dumps({"kind":"skip","scenario":sys.argv[1],"reason":sys.argv[2]}))' \
        "$1" "$2" >>"$results"
}

note() { # SCENARIO TEXT (shown next to the scenario's name in the table)
    python3 -c 'import json,sys; print(json.dumps({"kind":"note","scenario":sys.argv[1],"text":sys.argv[2]}))' \
        "$1" "$2" >>"$results"
}

# ---------------------------------------------------------------------------------------------
# Configs. nginx and HAProxy use the reference configs in bench/conf/ as they are (@DIR@ replaced);
# a scenario that needs more (gzip, 10k connections) adds only what it needs, the same for all.

render() { # SRC DST
    sed "s|@DIR@|$run|g" "$1" >"$2"
}

SEED_GZIP_TYPES="text/plain text/html text/css text/xml application/x-javascript application/xml application/atom+xml text/javascript"

# The TLS scenarios' listener: the reference nginx configuration's proxy server with "listen ... ssl http2" and the run's
# certificate. nginx 1.22 enables only TLSv1-1.2 by default (1.3 joined the default in 1.23.4):
# ssl_protocols says TLSv1.2 TLSv1.3 like gale. Sessions: nginx's defaults (tickets on, no cache).
# keepalive_requests: nginx closes a connection after 1000 requests by default, an HTTP/2 one with
# GOAWAY, and h2load (duration mode) does not reopen it: nginx would serve exactly 1000 requests
# per h2load connection and then idle. gale and HAProxy have no such cap.
NGINX_TLS_LISTEN="listen 127.0.0.1:18080 ssl http2; ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate @TLS@/cert.pem; ssl_certificate_key @TLS@/key.pem; keepalive_requests 100000000;"

nginx_config() { # OUT VARIANT(plain|gzip|idle|tls|tls-log)
    local out=$1 variant=$2
    render "$bench/conf/nginx-proxy.conf" "$out"
    case "$variant" in
    tls | tls-log)
        sed -i "s|listen 127.0.0.1:18080;|${NGINX_TLS_LISTEN//@TLS@/$run/tls}|" "$out"
        grep -q ' ssl http2;' "$out" || die "nginx_config: no listen line to add ssl to in nginx-proxy.conf"
        if [ "$variant" = tls-log ]; then
            # Only for check_full_handshakes: which connections resumed a session.
            sed -i "s|^  access_log off;|  log_format tls '\$connection \$connection_requests \$ssl_protocol \$ssl_session_reused';\n  access_log $run/nginx-tls.log tls;|" "$out"
        fi
        ;;
    gzip)
        # The reference nginx configuration's gzip settings (gzip_comp_level stays at its default, 1).
        sed -i "s|^  access_log off;|  access_log off;\n  gzip on; gzip_min_length 1000; gzip_proxied any; gzip_types $SEED_GZIP_TYPES;|" "$out"
        ;;
    idle)
        sed -i "s|worker_connections 4096;|worker_connections $((IDLE_CONNECTIONS + 1000));|" "$out"
        sed -i "s|^worker_processes 1;|worker_processes 1;\nworker_rlimit_nofile $(ulimit -Hn);|" "$out"
        ;;
    esac
}

haproxy_config() { # OUT VARIANT(plain|gzip|idle|tls)
    local out=$1 variant=$2
    render "$bench/conf/haproxy.cfg" "$out"
    case "$variant" in
    tls)
        sed -i "s|  bind 127.0.0.1:18081|  bind 127.0.0.1:18081 ssl crt $run/tls/haproxy.pem alpn h2,http/1.1 ssl-min-ver TLSv1.2|" "$out"
        sed -i "s|X-Scheme http|X-Scheme https|" "$out"
        ;;
    gzip)
        printf '  compression algo gzip\n  compression type %s\n' "$SEED_GZIP_TYPES" >>"$out"
        ;;
    idle)
        sed -i "s|maxconn 8192|maxconn $(haproxy_idle_maxconn)|" "$out"
        ;;
    esac
}

# HAProxy reserves two descriptors per connection (client and server side) and refuses to start
# when twice maxconn exceeds the open-files hard limit (even with ulimit-n set). With a limit of
# 20000 it cannot take 10,000 connections: cap maxconn, and the report says so.
haproxy_idle_maxconn() {
    local want=$((IDLE_CONNECTIONS + 500)) hard
    hard="$(ulimit -Hn)"
    if [ "$hard" != unlimited ] && [ $((want * 2 + 100)) -gt "$hard" ]; then
        want=$(((hard - 100) / 2))
    fi
    echo "$want"
}

upstream_config() { # OUT: the reference upstream plus the 50 KB page for gzip-50k
    render "$bench/conf/upstream.conf" "$1"
    sed -i "s|    location / {|    location = /page-50k.html { root $run/upstream-www; }\n    location / {|" "$1"
}

# gale_config OUT PORT [FEATURE...]: gale's equivalent of nginx-proxy.conf (one thread, four
# servers, upstream keep-alive 64, next_upstream error, no access log), plus features:
#   plugins=TOML-ARRAY  on location /        static     location /static/ served from $run/www
#   static-cache        the static-cache plugin on location /static/ (nginx's `if ($query_string)
#                       { expires max; }`)
#   gzip                the reference gzip    idle       max_connections for IDLE_CONNECTIONS
#   upload | upload-plugins   location /upload (with the upload-fields plugin)
#   tls                 HTTPS with the run's certificate (h2 offered by ALPN, gale's default)
gale_config() {
    local out=$1 port=$2
    shift 2
    local plugins="" static=0 static_cache=0 gzip=0 upload=0 upload_plugins=0 max_conn=4096 body=1M f
    for f in "$@"; do
        case "$f" in
        plugins=*) plugins="${f#plugins=}" ;;
        static) static=1 ;;
        static-cache) static=1 static_cache=1 ;;
        gzip) gzip=1 ;;
        idle) max_conn=$((IDLE_CONNECTIONS + 1000)) ;;
        tls) ;; # below
        upload) upload=1 body=$((UPLOAD_MB + 64))M ;;
        upload-plugins) upload=1 upload_plugins=1 body=$((UPLOAD_MB + 64))M ;;
        *) die "gale_config: unknown feature $f" ;;
        esac
    done
    {
        echo "# Generated by bench/run.sh: gale's equivalent of bench/conf/nginx-proxy.conf."
        echo "[global]"
        echo "threads = 1"
        echo "max_connections = $max_conn"
        echo "access_log = \"off\""
        echo "error_log = \"$run/gale-$port.log\""
        echo "log_level = \"warn\""
        echo "shutdown_timeout = \"1s\""
        if [ -n "$plugins" ] || [ "$upload_plugins" = 1 ] || [ "$static_cache" = 1 ]; then
            echo "plugin_dir = \"$PLUGIN_DIR\""
        fi
        echo
        echo "[http]"
        echo "keepalive_timeout = \"65s\""
        echo "client_max_body_size = \"$body\""
        if [ "$gzip" = 1 ]; then
            local types
            # shellcheck disable=SC2086 # one argument per type
            types="$(printf '"%s", ' $SEED_GZIP_TYPES)"
            echo "gzip = { min_length = 1000, proxied = \"any\", level = 1, types = [${types%, }] }"
        fi
        echo
        echo "[upstream.tornadoes]"
        echo "servers = [\"127.0.0.1:19000\", \"127.0.0.1:19001\", \"127.0.0.1:19002\", \"127.0.0.1:19003\"]"
        echo "keepalive = 64"
        echo "next_upstream = \"error\""
        echo "read_timeout = \"200s\""
        echo
        echo "[[server]]"
        echo "listen = [\"127.0.0.1:$port\"]"
        case " $* " in *" tls "*) echo "tls = { cert = \"$run/tls/cert.pem\", key = \"$run/tls/key.pem\" }" ;; esac
        if [ "$static" = 1 ]; then
            echo
            echo "[[server.location]]"
            echo "path = \"/static/\""
            echo "static = { root = \"$run/www\" }"
            [ "$static_cache" = 1 ] && echo "plugins = [\"static-cache\"]"
        fi
        if [ "$upload" = 1 ]; then
            echo
            echo "[[server.location]]"
            echo "path = \"/upload\""
            echo "upload = { store = \"$run/upload-store\", pass = \"tornadoes\", cleanup = [200, 400, 404, 499] }"
            [ "$upload_plugins" = 1 ] && echo "plugins = [\"upload-fields\"]"
        fi
        echo
        echo "[[server.location]]"
        echo "path = \"/\""
        echo "proxy = { pass = \"tornadoes\" }"
        [ -n "$plugins" ] && echo "plugins = $plugins"
        true
    } >"$out"
}

probe_error=""
gale_supports() { # NAME FEATURE...: does `gale check` accept a config with these features?
    local name=$1 cfg out
    shift
    cfg="$run/probe-$name.toml"
    gale_config "$cfg" "$PROBE_PORT" "$@"
    if out="$("$GALE_BIN" check --config "$cfg" 2>&1)"; then
        return 0
    fi
    probe_error="$(printf '%s' "$out" | head -2 | tr '\n' ' ' | sed "s|$run/||g")"
    return 1
}

# ---------------------------------------------------------------------------------------------
# Upstreams: the four fast ones (one nginx worker, reference upstream.conf), or four real Tornado
# processes on the same ports; both pinned to LOAD_CPU.

upstream_kind=""
upstream_pids=()

stop_upstreams() {
    local pid
    for pid in "${upstream_pids[@]+"${upstream_pids[@]}"}"; do
        stop_pid "$pid"
    done
    upstream_pids=()
    upstream_kind=""
}

use_upstreams() { # fast|tornado
    [ "$upstream_kind" = "$1" ] && return 0
    stop_upstreams
    local port
    for port in "${UPSTREAM_PORTS[@]}"; do
        port_free "$port" || die "port $port is in use: is a previous run still going?"
    done
    if [ "$1" = fast ]; then
        upstream_config "$run/upstream.conf"
        spawn upstream "$LOAD_CPU" nginx -e "$run/upstream.startup.err" -c "$run/upstream.conf"
        upstream_pids+=("$last_pid")
        wait_port upstream "$last_pid" 19000 || die "the upstream did not start"
    else
        for port in "${UPSTREAM_PORTS[@]}"; do
            spawn "tornado-$port" "$LOAD_CPU" "$TORNADO_PYTHON" "$TORNADO_APP" --port "$port"
            upstream_pids+=("$last_pid")
        done
        local i=0
        for port in "${UPSTREAM_PORTS[@]}"; do
            wait_port "tornado-$port" "${upstream_pids[$i]}" "$port" || die "Tornado did not start"
            i=$((i + 1))
        done
    fi
    upstream_kind=$1
}

find_tornado_python() { # sets TORNADO_PYTHON, or returns 1 with probe_error set
    [ -f "$TORNADO_APP" ] || { probe_error="no Tornado app at $TORNADO_APP"; return 1; }
    local py
    for py in "$TORNADO_PYTHON" "$repo/.venv/bin/python" "$bench/out/venv/bin/python"; do
        if [ -n "$py" ] && [ -x "$py" ] && "$py" -c 'import tornado' 2>/dev/null; then
            TORNADO_PYTHON=$py
            return 0
        fi
    done
    local want="tornado"
    if [ -f "$repo/scripts/requirements.txt" ]; then
        want="$(grep -i '^tornado' "$repo/scripts/requirements.txt" | head -1)"
    fi
    say "creating bench/out/venv with $want"
    if python3 -m venv "$bench/out/venv" >&2 && "$bench/out/venv/bin/python" -m pip install -q "$want" >&2; then
        TORNADO_PYTHON="$bench/out/venv/bin/python"
        return 0
    fi
    probe_error="no python with tornado (set TORNADO_PYTHON)"
    return 1
}

# ---------------------------------------------------------------------------------------------
# Proxies under test, pinned to PROXY_CPU. start_* set last_pid and add to proxy_pids.

proxy_pids=()
proxy_scheme=http   # https while a TLS scenario runs (the proxies' listeners, not the upstreams)
scenario_bench=bench_http   # how proxy_scenario runs the rounds (bench/tls.sh sets others)
declare -A target_pid=()    # TARGET -> the pid proxy_scenario started for it

start_gale() { # NAME PORT FEATURE... (pinned to gale_cpu when set, else PROXY_CPU)
    local name=$1 port=$2
    shift 2
    port_free "$port" || die "port $port is in use: is a previous run still going?"
    gale_config "$run/$name.toml" "$port" "$@"
    spawn "$name" "${gale_cpu:-$PROXY_CPU}" "${gale_bin:-$GALE_BIN}" run --config "$run/$name.toml"
    proxy_pids+=("$last_pid")
    wait_port "$name" "$last_pid" "$port" "$proxy_scheme" || die "$name did not start"
}

start_nginx() { # VARIANT
    port_free "$NGINX_PORT" || die "port $NGINX_PORT is in use: is a previous run still going?"
    nginx_config "$run/nginx-$1.conf" "$1"
    spawn nginx "$PROXY_CPU" nginx -e "$run/nginx.startup.err" -c "$run/nginx-$1.conf"
    proxy_pids+=("$last_pid")
    wait_port nginx "$last_pid" "$NGINX_PORT" "$proxy_scheme" || die "nginx did not start"
}

start_haproxy() { # VARIANT
    port_free "$HAPROXY_PORT" || die "port $HAPROXY_PORT is in use: is a previous run still going?"
    haproxy_config "$run/haproxy-$1.cfg" "$1"
    spawn haproxy "$PROXY_CPU" haproxy -f "$run/haproxy-$1.cfg" -db
    proxy_pids+=("$last_pid")
    wait_port haproxy "$last_pid" "$HAPROXY_PORT" "$proxy_scheme" || die "haproxy did not start"
}

stop_proxies() {
    local pid
    for pid in "${proxy_pids[@]+"${proxy_pids[@]}"}"; do
        stop_pid "$pid"
    done
    proxy_pids=()
}

serving_pid() { # PID of what we started -> the process that serves (nginx: its worker)
    local child
    child="$(pgrep -P "$1" | head -1 || true)"
    if [ -n "$child" ] && [ "$(cat "/proc/$child/comm" 2>/dev/null)" = nginx ]; then
        echo "$child"
    else
        echo "$1"
    fi
}

port_of() { # TARGET
    case "$1" in
    gale) echo "$GALE_PORT" ;;
    gale-noplugins) echo "$GALE2_PORT" ;;
    gale-base) echo "$GALE3_PORT" ;;
    gale-idle | gale-uploading) echo "$GALE_PORT" ;;
    direct-idle | direct-uploading) echo "${UPSTREAM_PORTS[0]}" ;;
    nginx) echo "$NGINX_PORT" ;;
    haproxy) echo "$HAPROXY_PORT" ;;
    *) die "unknown target $1" ;;
    esac
}

# check TARGET PATH EXPECT_STATUS [curl args...]: one request before the load, so that a proxy that
# answers wrongly (404, no gzip, short body) is caught instead of being measured.
check() {
    local target=$1 path=$2 want=$3
    shift 3
    local base status
    base="$run/check-$target-$(echo "$path" | tr -c 'a-zA-Z0-9\n' '_')"
    status="$(curl -sk -o "$base.body" -D "$base.head" -w '%{http_code}' "$@" \
        "$proxy_scheme://127.0.0.1:$(port_of "$target")$path")" || status="curl-failed"
    if [ "$status" != "$want" ]; then
        say "$target: GET $path answered $status, expected $want (see $base.head)"
        return 1
    fi
}

# bench_http SCENARIO PATH "WRK ARGS" TARGET...: WARMUP per target, then ROUNDS interleaved rounds.
bench_http() {
    local scenario=$1 path=$2 extra=$3
    shift 3
    local targets=("$@") target round raw json
    local conns="${BENCH_CONNECTIONS:-$CONNECTIONS}" timeout="${BENCH_TIMEOUT:-5s}"
    for target in "${targets[@]}"; do
        # shellcheck disable=SC2086 # extra holds several wrk arguments
        taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$conns" -d"$WARMUP" --timeout "$timeout" $extra \
            "$proxy_scheme://127.0.0.1:$(port_of "$target")$path" >/dev/null 2>&1 || true
    done
    for round in $(seq "$ROUNDS"); do
        for target in "${targets[@]}"; do
            raw="$run/wrk-$scenario-$target-$round.txt"
            [ -z "$round_hook" ] || "$round_hook" start "$target"
            # shellcheck disable=SC2086
            taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$conns" -d"$DURATION" --timeout "$timeout" \
                --latency -s "$bench/wrk-report.lua" $extra \
                "$proxy_scheme://127.0.0.1:$(port_of "$target")$path" >"$raw" 2>&1 || true
            [ -z "$round_hook" ] || "$round_hook" stop "$target"
            json="$(sed -n 's/^WRK_JSON //p' "$raw")"
            if [ -z "$json" ]; then
                say "$scenario $target round $round: wrk gave no result (see $raw)"
                continue
            fi
            record "{\"kind\":\"http\",\"scenario\":\"$scenario\",\"target\":\"$target\",\"round\":$round,${json#\{}"
            say "$scenario round $round $target: $(grep -E '^Requests/sec' "$raw" | awk '{print $2}') req/s$(grep -q 'Non-2xx' "$raw" && echo ' (with non-2xx answers!)')"
        done
    done
}
BENCH_CONNECTIONS="" # per-scenario overrides of CONNECTIONS and of wrk --timeout (5s)
BENCH_TIMEOUT=""
round_hook=""   # a function called as HOOK start|stop TARGET around each measured round

# ---------------------------------------------------------------------------------------------
# Scenarios.

wanted() { # TARGET: in TARGETS? (gale-noplugins comes with gale, gale-base with gale and GALE_BASE_BIN)
    case " $TARGETS " in *" $1 "*) return 0 ;; esac
    case "$1" in
    gale-noplugins) wanted gale ;;
    gale-base) [ -n "${GALE_BASE_BIN:-}" ] && wanted gale ;;
    *) return 1 ;;
    esac
}

# proxy_scenario SCENARIO PATH "WRK ARGS" PEER_VARIANT VERIFY TARGET...: starts the wanted targets
# (gale with the features in the array gale_features, nginx and HAProxy with PEER_VARIANT), checks
# each with the function VERIFY, runs the rounds (with the function scenario_bench, bench_http
# unless a scenario sets another), stops them. target_pid[TARGET] is the pid started for TARGET.
gale_features=()
gale2_features=() # for gale-noplugins
proxy_scenario() {
    local scenario=$1 path=$2 extra=$3 variant=$4 verify=$5
    shift 5
    local ts=() t
    for t in "$@"; do
        if wanted "$t"; then ts+=("$t"); fi
    done
    if [ ${#ts[@]} -eq 0 ]; then
        skip "$scenario" "none of $* in TARGETS"
        return
    fi
    for t in "${ts[@]}"; do
        case "$t" in
        gale) start_gale gale "$GALE_PORT" "${gale_features[@]+"${gale_features[@]}"}" ;;
        gale-noplugins) start_gale gale-noplugins "$GALE2_PORT" "${gale2_features[@]+"${gale2_features[@]}"}" ;;
        gale-base) gale_bin="$GALE_BASE_BIN" start_gale gale-base "$GALE3_PORT" "${gale_features[@]+"${gale_features[@]}"}" ;;
        nginx) start_nginx "$variant" ;;
        haproxy) start_haproxy "$variant" ;;
        esac
        target_pid[$t]=$last_pid
    done
    for t in "${ts[@]}"; do
        "$verify" "$t" || die "$scenario: $t answers wrongly"
    done
    "$scenario_bench" "$scenario" "$path" "$extra" "${ts[@]}"
    stop_proxies
}

verify_upstream_body() {
    check "$1" / 200 && grep -q 'hello from upstream' "$run/check-$1-_.body"
}

verify_tornado_body() {
    check "$1" / 200 && grep -q 'Hello from tornado' "$run/check-$1-_.body"
}

verify_plugins() {
    verify_upstream_body "$1" || return 1
    if [ "$1" = gale ] && [ -z "${GALE_PLUGINS:-}" ] && ! grep -qi '^x-frame-options:' "$run/check-gale-_.head"; then
        say "proxy-plugins: gale accepted the plugins but X-Frame-Options is missing: do they run?"
        return 1
    fi
}

verify_static_small() { verify_file "$1" small.css; }
verify_static_1m() { verify_file "$1" 1m.bin; }
verify_static_100m() { verify_file "$1" 100m.bin; }
verify_file() { # TARGET FILE: the exact bytes of www/static/FILE
    check "$1" "/static/$2" 200 || return 1
    cmp -s "$run/check-$1-_static_$(echo "$2" | tr -c 'a-zA-Z0-9\n' '_').body" "$run/www/static/$2" \
        || { say "$1 did not send the bytes of /static/$2"; return 1; }
}

verify_gzip() { # gzip-encoded, and decompresses to the page
    local base="$run/check-$1-_page_50k_html"
    check "$1" /page-50k.html 200 -H 'Accept-Encoding: gzip' || return 1
    grep -qi '^content-encoding: *gzip' "$base.head" || { say "$1 did not compress (see $base.head)"; return 1; }
    gunzip -c <"$base.body" | cmp -s - "$run/upstream-www/page-50k.html" \
        || { say "$1: the body does not decompress to the page"; return 1; }
    say "gzip-50k: $1 sends $(wc -c <"$base.body") bytes for 51200"
}

scenario_proxy_small() {
    use_upstreams fast
    gale_features=()
    proxy_scenario proxy-small / "" plain verify_upstream_body gale gale-base nginx haproxy
}

# The plugins on the route. gale bundles header-policy (issue 3) for proxied routes; static-cache
# and upload-fields belong to static and upload locations. "The three bundled plugins on the route"
# is therefore taken as three header-policy attachments doing the three kinds of work a header
# policy does (response headers, request headers, a deny rule that does not match), falling back to
# one attachment when gale does not accept the same plugin twice. GALE_PLUGINS overrides. nginx and
# HAProxy run their plain reference configs: the target compares gale with plugins to nginx without.
# shellcheck disable=SC2016 # $host is for the plugin, not for bash
PLUGINS_THREE='[{ name = "header-policy", config = { response = { set = { "X-Frame-Options" = "SAMEORIGIN", "X-Content-Type-Options" = "nosniff", "Referrer-Policy" = "same-origin" } } } }, { name = "header-policy", config = { request = { set = { "X-Request-Host" = "$host" }, remove = ["X-Debug"] } } }, { name = "header-policy", config = { deny = [{ path_prefix = "/admin", status = 403 }] } }]'
# shellcheck disable=SC2016
PLUGINS_ONE='[{ name = "header-policy", config = { response = { set = { "X-Frame-Options" = "SAMEORIGIN", "X-Content-Type-Options" = "nosniff" } }, request = { set = { "X-Request-Host" = "$host" } }, deny = [{ path_prefix = "/admin", status = 403 }] } }]'

scenario_proxy_plugins() {
    local plugins="" label=""
    if ! wanted gale; then
        skip proxy-plugins "gale is not in TARGETS"
        return
    elif [ -n "${GALE_PLUGINS:-}" ]; then
        gale_supports plugins "plugins=$GALE_PLUGINS" || { skip proxy-plugins "GALE_PLUGINS not accepted: $probe_error"; return; }
        plugins=$GALE_PLUGINS label="GALE_PLUGINS"
    elif gale_supports plugins "plugins=$PLUGINS_THREE"; then
        plugins=$PLUGINS_THREE label="3× header-policy"
    elif gale_supports plugins "plugins=$PLUGINS_ONE"; then
        plugins=$PLUGINS_ONE label="1× header-policy"
    else
        skip proxy-plugins "plugins not available (gale check: $probe_error)"
        return
    fi
    note proxy-plugins "$label"
    # The report divides the plugin cost by the hooks attached (two per attachment).
    local attachments
    attachments="$(python3 -c 'import sys, tomllib; print(len(tomllib.loads("p = " + sys.argv[1])["p"]))' "$plugins" 2>/dev/null || true)"
    [ -z "$attachments" ] || record "{\"kind\":\"attachments\",\"scenario\":\"proxy-plugins\",\"count\":$attachments}"
    use_upstreams fast
    gale_features=("plugins=$plugins")
    proxy_scenario proxy-plugins / "" plain verify_plugins gale gale-noplugins nginx haproxy
}

scenario_static() { # SCENARIO FILE
    local scenario=$1 file=$2
    if wanted gale && ! gale_supports static static; then
        skip "$scenario" "static files not available (gale check: $probe_error)"
        return
    fi
    if [ "$file" = 100m.bin ] && [ ! -e "$run/www/static/100m.bin" ]; then
        head -c $((100 * 1024 * 1024)) /dev/urandom >"$run/www/static/100m.bin"
        chmod 644 "$run/www/static/100m.bin"
    fi
    if [ "$file" = 100m.bin ]; then
        # 50 parallel 100 MB downloads would only measure wrk's timeouts: a few, with time.
        BENCH_CONNECTIONS=4 BENCH_TIMEOUT=60s
    fi
    # Like with like: nginx's location runs `if ($query_string) { expires max; }` on every request,
    # gale's runs the static-cache plugin (whose default is that rule); gale-noplugins serves the
    # same files without it (the plugin's cost).
    local targets=(gale nginx) cache_note="gale without plugins"
    gale_features=(static)
    if wanted gale && gale_supports static-cache static-cache; then
        gale_features=(static-cache) gale2_features=(static) targets=(gale gale-noplugins nginx)
        cache_note="gale with the static-cache plugin, gale-noplugins without (nginx: if (\$query_string) { expires max; })"
    fi
    note "$scenario" "GET /static/$file, $(stat -c %s "$run/www/static/$file") bytes${BENCH_CONNECTIONS:+, $BENCH_CONNECTIONS connections}; $cache_note"
    use_upstreams fast
    proxy_scenario "$scenario" "/static/$file" "" plain "verify_${scenario//-/_}" "${targets[@]}"
    BENCH_CONNECTIONS="" BENCH_TIMEOUT="" gale2_features=()
}

scenario_gzip() {
    if wanted gale && ! gale_supports gzip gzip; then
        skip gzip-50k "gzip not available (gale check: $probe_error)"
        return
    fi
    note gzip-50k "proxied text/html, 51200 bytes, Accept-Encoding: gzip, level 1"
    use_upstreams fast
    gale_features=(gzip)
    proxy_scenario gzip-50k /page-50k.html "-H Accept-Encoding:gzip" gzip verify_gzip gale nginx haproxy
}

scenario_idle() {
    local hard
    hard="$(ulimit -Hn)"
    if [ "$hard" != unlimited ] && [ "$hard" -lt $((IDLE_CONNECTIONS + 200)) ]; then
        skip idle-10k "the open-files limit ($hard) is below IDLE_CONNECTIONS=$IDLE_CONNECTIONS"
        return
    fi
    if wanted haproxy && [ "$(haproxy_idle_maxconn)" -lt "$IDLE_CONNECTIONS" ]; then
        note idle-10k "HAProxy capped at maxconn $(haproxy_idle_maxconn) by the open-files limit $hard: it cannot hold them all"
    fi
    use_upstreams fast
    local round target pid serving before after line ready alive client out
    for round in $(seq "$ROUNDS"); do
        for target in gale nginx haproxy; do
            wanted "$target" || continue
            case "$target" in
            gale) start_gale gale "$GALE_PORT" idle ;;
            nginx) start_nginx idle ;;
            haproxy) start_haproxy idle ;;
            esac
            pid=$last_pid
            verify_upstream_body "$target" || die "idle-10k: $target answers wrongly"
            sleep 0.5
            serving="$(serving_pid "$pid")"
            before="$(rss_kb "$serving")"
            spawn "idle-client-$target-$round" "$LOAD_CPU" python3 "$bench/idle_client.py" \
                --port "$(port_of "$target")" -n "$IDLE_CONNECTIONS" --settle 2 --timeout 10
            client=$last_pid
            out="$run/idle-client-$target-$round.out"
            ready="" alive=""
            for _ in $(seq 1200); do # up to 120 s
                ready="$(sed -n 's/^READY //p' "$out")"
                alive="$(sed -n 's/^ALIVE //p' "$out")"
                [ -n "$alive" ] && break
                kill -0 "$client" 2>/dev/null || break
                sleep 0.1
            done
            if [ -z "$alive" ]; then
                say "idle-10k: the client did not finish against $target (see ${out%.out}.err)"
                stop_pid "$client"
                stop_proxies
                continue
            fi
            after="$(rss_kb "$serving")"
            line="$(python3 -c 'import json,sys; a=dict(kv.split("=") for kv in sys.argv[1].split()); print(json.dumps({"kind":"idle","scenario":"idle-10k","target":sys.argv[2],"round":int(sys.argv[3]),"connections":int(sys.argv[4]),"rss_before_kb":int(sys.argv[5]),"rss_after_kb":int(sys.argv[6]),"opened":int(a["opened"]),"failed":int(a["failed"]),"alive":int(sys.argv[7])}))' \
                "$ready" "$target" "$round" "$IDLE_CONNECTIONS" "$before" "$after" "$alive")"
            record "$line"
            say "idle-10k round $round $target: VmRSS $before kB -> $after kB ($ready, still open $alive)"
            stop_pid "$client"
            stop_proxies
        done
    done
}

upload_with=""
choose_upload() { # SCENARIO: sets upload_with (gale feature), or records a skip and returns 1
    if ! wanted gale; then
        skip "$1" "gale is not in TARGETS"
        return 1
    elif gale_supports upload upload-plugins; then
        upload_with="upload-plugins"
        note "$1" "with the upload-fields plugin"
    elif gale_supports upload upload; then
        upload_with=upload
        note "$1" "without plugins (upload-fields not accepted)"
    else
        skip "$1" "uploads not available (gale check: $probe_error)"
        return 1
    fi
}

upload_round() { # TARGET PORT PID ROUND FILE BYTES: one upload-1g upload, recorded
    local target=$1 port=$2 pid=$3 round=$4 file=$5 bytes=$6 out status secs before hwm cpu0 steal0 cpu steal
    cat "$file" >/dev/null
    before="$(rss_kb "$pid")"
    echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true # resets VmHWM to the current RSS
    cpu0="$(cpu_ticks "$pid")" steal0="$(steal_ticks)"
    out="$(taskset -c "$LOAD_CPU" curl -s -o "$run/upload-response-$target-$round.txt" -H 'Expect:' \
        -w '%{http_code} %{time_total}' -F "file=@$file;type=application/octet-stream" \
        "http://127.0.0.1:$port/upload")" || out="000 0"
    status="$((10#${out%% *}))" secs="${out##* }"
    hwm="$(hwm_kb "$pid")"
    # gale's CPU time and the hypervisor's steal during the upload: a slow round with little CPU
    # time or much steal was the host's, not gale's.
    cpu="$(awk "BEGIN {print ($(cpu_ticks "$pid") - $cpu0) / $(getconf CLK_TCK)}")"
    steal="$(awk "BEGIN {print ($(steal_ticks) - $steal0) / $(getconf CLK_TCK)}")"
    record "{\"kind\":\"upload\",\"scenario\":\"upload-1g\",\"target\":\"$target\",\"round\":$round,\"bytes\":$bytes,\"seconds\":$secs,\"status\":$status,\"rss_before_kb\":$before,\"hwm_kb\":$hwm,\"cpu_seconds\":$cpu,\"steal_seconds\":$steal}"
    say "upload-1g round $round: $target answered $status in $secs s, VmRSS $before kB, peak $hwm kB"
    [ "$status" = 200 ] || say "upload-1g: expected 200 from $target (see $run/upload-response-$target-$round.txt)"
}

scenario_upload() {
    choose_upload upload-1g || return 0
    local free_mb
    free_mb="$(df -Pm "$run" | awk 'NR==2 {print $4}')"
    if [ "$free_mb" -lt $((UPLOAD_MB * 3)) ]; then
        skip upload-1g "needs $((UPLOAD_MB * 3)) MiB free in $run, has $free_mb"
        return
    fi
    # The source file lives in memory so that neither side reads the disk: on this VM the kernel's
    # proactive reclaim (kdamond) evicted a warm 1 GiB file from the page cache between rounds, and
    # md5sum then measured the disk. Best is a private tmpfs with huge pages (root only): on this VM
    # reading a file kept in 4 KiB pages was slow for hours at a time (md5sum of 1 GiB in /dev/shm
    # 2.4-3.9 s, half of it kernel copy time, against 1.6 s from huge pages in the same minute,
    # 2026-11-30), which made md5sum's figure, the yardstick, depend on the host's state of the day.
    # Then /dev/shm when it has room, else the run directory.
    local src_dir="$run" shm_mb mnt="$run/upload-src"
    shm_mb="$(df -Pm /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')"
    if [ -n "${UPLOAD_SRC_DIR:-}" ]; then
        src_dir="$UPLOAD_SRC_DIR"
    elif mkdir -p "$mnt" && mount -t tmpfs -o "size=$((UPLOAD_MB + 64))m,huge=always,mode=0700" tmpfs "$mnt" 2>/dev/null; then
        upload_src_mount="$mnt" src_dir="$mnt"
    else
        rmdir "$mnt" 2>/dev/null || true
        [ "${shm_mb:-0}" -gt $((UPLOAD_MB + 256)) ] && src_dir=/dev/shm
    fi
    local fs
    fs="$(findmnt -n -o FSTYPE,OPTIONS --target "$src_dir" | tail -n 1 | awk '{print $1 ($2 ~ /huge=(always|within_size)/ ? ", huge pages" : "")}')"
    note upload-1g "source file in $src_dir ($fs)"
    local file="$src_dir/gale-bench-upload-$$.bin"
    say "upload-1g: writing $UPLOAD_MB MiB of random bytes to $file"
    head -c "$((UPLOAD_MB * 1024 * 1024))" /dev/urandom >"$file"
    use_upstreams fast
    # gale as deployed uses every CPU: its writer threads hash a batch on one while another
    # writes the previous one and the event loop receives (host/src/upload/store.rs). md5sum is
    # one thread, so it gets one CPU. gale-one-core shows what gale does on md5sum's CPU alone.
    gale_cpu="$UPLOAD_GALE_CPU" start_gale gale "$GALE_PORT" "$upload_with"
    local gale_pid=$last_pid one_pid="" round t0 t1 bytes
    note upload-1g "gale on CPUs $UPLOAD_GALE_CPU (one event loop), md5sum on CPU $PROXY_CPU, curl on CPU $LOAD_CPU"
    if [ "$UPLOAD_GALE_CPU" != "$PROXY_CPU" ]; then
        start_gale gale-one-core "$GALE2_PORT" "$upload_with"
        one_pid=$last_pid
        note upload-1g "gale-one-core: the same gale pinned to CPU $PROXY_CPU"
    fi
    bytes="$(stat -c %s "$file")"
    for round in $(seq "$ROUNDS"); do
        cat "$file" >/dev/null # page cache warm, in case the file is on disk
        t0="$(date +%s.%N)"
        taskset -c "$PROXY_CPU" md5sum "$file" >/dev/null
        t1="$(date +%s.%N)"
        record "{\"kind\":\"upload\",\"scenario\":\"upload-1g\",\"target\":\"md5sum\",\"round\":$round,\"bytes\":$bytes,\"seconds\":$(awk "BEGIN {print $t1 - $t0}")}"
        upload_round gale "$GALE_PORT" "$gale_pid" "$round" "$file" "$bytes"
        [ -z "$one_pid" ] || upload_round gale-one-core "$GALE2_PORT" "$one_pid" "$round" "$file" "$bytes"
    done
    stop_proxies
    rm -f "$file"
    unmount_upload_src
}

# upload-p99 (issue 5): p99 of GET / through gale, idle versus while four 100 MiB uploads stream
# through the same gale (one thread) without pause. Rounds alternate gale-idle, gale-uploading,
# direct-idle, direct-uploading: the direct rows send the same GET / straight to the upstream, with
# and without the same uploads streaming through gale, a control for what the uploads cost the load
# CPU (wrk and the upstream) rather than gale.
# The GET load is paced (each of the CONNECTIONS waits UPLOAD_P99_DELAY_MS after each answer), well
# below saturation: at saturation every cycle the uploads get is taken from GET /, so a closed-loop
# p99 would measure CPU sharing, not whether uploads stall the event loop. The uploading curls run
# in the idle scheduling class on the load CPU: sending 300 MiB/s over loopback (the receive path
# runs in the sender's context) otherwise starved wrk and the upstreams there, and p99 grew 5x even
# for requests sent straight to the upstream, without gale.
uploader_pids=()
uploads_hook() { # start|stop TARGET
    case "$2" in *-uploading) ;; *) return 0 ;; esac
    local i
    if [ "$1" = start ]; then
        uploads_started="$(date +%s.%N)"
        for i in 1 2 3 4; do
            # shellcheck disable=SC2016 # expanded by the inner shell
            spawn "uploader-$i-$(date +%s%N)" "$LOAD_CPU" bash -c 'trap "kill \$c 2>/dev/null; exit 0" TERM
                while :; do
                    chrt --idle 0 curl -s -o /dev/null -w "%{http_code} %{size_upload}\n" -H "Expect:" \
                        -F "file=@$0;type=application/octet-stream" "http://127.0.0.1:$1/upload" & c=$!
                    wait $c
                done' "$run/upload-100m.bin" "$GALE_PORT"
            uploader_pids+=("$last_pid")
        done
        sleep 0.5 # the uploads are streaming when the load starts
    else
        for i in "${uploader_pids[@]}"; do
            stop_pid "$i"
        done
        uploader_pids=()
        uploads_seconds="$(awk "BEGIN {print ${uploads_seconds:-0} + $(date +%s.%N) - $uploads_started}")"
    fi
}

scenario_upload_p99() {
    choose_upload upload-p99 || return 0
    head -c $((100 * 1024 * 1024)) /dev/urandom >"$run/upload-100m.bin"
    use_upstreams fast
    start_gale gale "$GALE_PORT" "$upload_with"
    verify_upstream_body gale || die "upload-p99: gale answers wrongly"
    round_hook=uploads_hook
    uploads_seconds=0
    WRK_DELAY_MS="$UPLOAD_P99_DELAY_MS" bench_http upload-p99 / "" gale-idle gale-uploading direct-idle direct-uploading
    round_hook=""
    stop_proxies
    local done_mb
    done_mb="$(cat "$run"/uploader-*.out 2>/dev/null | awk '$1 == 200 {s += $2} END {printf "%.0f", s / 1048576}')"
    note upload-p99 "GET / paced: $CONNECTIONS connections, ${UPLOAD_P99_DELAY_MS} ms between requests; 4 uploaders completed ${done_mb} MiB in ${uploads_seconds%.*} s of uploading rounds"
    rm -f "$run/upload-100m.bin"
}

scenario_tornado() {
    if ! find_tornado_python; then
        skip proxy-tornado "$probe_error"
        return
    fi
    note proxy-tornado "four Tornado processes on CPU $LOAD_CPU"
    use_upstreams tornado
    gale_features=()
    proxy_scenario proxy-tornado / "" plain verify_tornado_body gale nginx haproxy
    stop_upstreams
}

# TLS and HTTP/2 (issue 7): tls-handshake, tls-resume, https-small, h2-small.
# shellcheck source=bench/tls.sh
. "$bench/tls.sh"

# ---------------------------------------------------------------------------------------------

main() {
    local scenarios=("$@") s
    [ ${#scenarios[@]} -gt 0 ] || scenarios=("${ALL_SCENARIOS[@]}")
    for s in "${scenarios[@]}"; do
        case " ${ALL_SCENARIOS[*]} " in *" $s "*) ;; *) die "unknown scenario $s (known: ${ALL_SCENARIOS[*]})" ;; esac
    done
    [ "$ROUNDS" -ge 1 ] || die "ROUNDS must be at least 1"
    [ "$ROUNDS" -ge 3 ] || say "warning: ROUNDS=$ROUNDS; a median needs at least 3"

    # Runs on one machine share the ports and the CPUs: one at a time, the next one waits.
    exec 9>"${BENCH_LOCK:-/tmp/gale-bench.lock}"
    if ! flock -n 9; then
        say "another benchmark is running; waiting for it"
        flock 9
    fi
    install_packages
    build_gale
    setup_run_dir
    write_meta
    # 10k idle connections need as many descriptors in the client and in each proxy.
    ulimit -n "$(ulimit -Hn)"

    for s in "${scenarios[@]}"; do
        say "=== $s"
        case "$s" in
        proxy-small) scenario_proxy_small ;;
        proxy-plugins) scenario_proxy_plugins ;;
        static-small) scenario_static static-small small.css ;;
        static-1m) scenario_static static-1m 1m.bin ;;
        static-100m) scenario_static static-100m 100m.bin ;;
        gzip-50k) scenario_gzip ;;
        idle-10k) scenario_idle ;;
        upload-1g) scenario_upload ;;
        upload-p99) scenario_upload_p99 ;;
        proxy-tornado) scenario_tornado ;;
        tls-handshake) scenario_tls tls-handshake bench_handshake verify_tls ;;
        tls-resume) scenario_tls tls-resume bench_handshake verify_tls ;;
        https-small) scenario_tls https-small bench_http verify_tls ;;
        h2-small) scenario_tls h2-small bench_h2 verify_h2 ;;
        esac
    done
    stop_upstreams

    python3 "$bench/report.py" "$run" -o "$run/report.md"
    say "report: $run/report.md"
}

main "$@"
