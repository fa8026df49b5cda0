# shellcheck shell=bash disable=SC2154,SC2034 # variables and functions come from bench/run.sh
# TLS and HTTP/2 scenarios of bench/run.sh (issue 7), sourced by it: it uses run.sh's processes,
# configs, checks and records. Not meant to be run on its own.
#
#   tls-handshake  one new TLS connection per request: full handshakes per second (bench/hsload)
#   tls-resume     the same with TLS 1.3 session resumption (returning clients): resumed handshakes/s
#   https-small    proxy-small over HTTPS keep-alive (wrk)
#   h2-small       proxy-small over HTTP/2 (h2load -c H2_CONNECTIONS -m H2_STREAMS)
#
# Every proxy gets the same self-signed certificate (made once per run, TLS_KEY) and offers TLS 1.2
# and 1.3 with ALPN h2,http/1.1 on one listener; nginx runs its reference proxy config with
# "listen ... ssl http2" (one worker), gale the same generated config with `tls = {...}` on its server.

# The request of tls-handshake: one per connection (hsload sends the same).
HS_REQUEST=$'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'

seconds_of() { # DURATION (5s, 1m, 10) -> whole seconds, at least 1 (h2load -D)
    local d=$1 n
    case "$d" in
    *ms) n=$(((${d%ms} + 999) / 1000)) ;;
    *m) n=$((${d%m} * 60)) ;;
    *s) n=${d%s} ;;
    *) n=$d ;;
    esac
    [ "$n" -ge 1 ] 2>/dev/null || n=1
    echo "$n"
}

# find_hsload: sets HSLOAD_BIN to bench/hsload's binary, building it (a small crate of its own,
# rustls only) with BUILD=1 or when it is missing; or returns 1 with probe_error set.
# Why not wrk, h2load or openssl s_time: see the doc comment of bench/hsload/src/main.rs.
find_hsload() {
    local target_dir="${CARGO_TARGET_DIR:-$repo/target}"
    case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
    HSLOAD_BIN="${HSLOAD_BIN:-$target_dir/release/hsload}"
    if [ "$BUILD" = 1 ] || [ ! -x "$HSLOAD_BIN" ]; then
        if command -v cargo >/dev/null 2>&1; then
            say "building bench/hsload (cargo build --release)"
            (cd "$bench/hsload" && { cargo build --release --offline --target-dir "$target_dir" 2>/dev/null \
                || cargo build --release --target-dir "$target_dir"; }) >&2 || true
        fi
    fi
    [ -x "$HSLOAD_BIN" ] || { probe_error="no hsload binary at $HSLOAD_BIN (cargo build --release in bench/hsload)"; return 1; }
}

make_cert() { # once per run: $run/tls/cert.pem, key.pem, and haproxy.pem (both in one file)
    [ -e "$run/tls/cert.pem" ] && return 0
    mkdir -p "$run/tls"
    local newkey=()
    case "$TLS_KEY" in
    rsa2048) newkey=(-newkey rsa:2048) ;;
    ec256) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    *) die "TLS_KEY must be rsa2048 or ec256, not $TLS_KEY" ;;
    esac
    openssl req -x509 "${newkey[@]}" -sha256 -nodes -days 2 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$run/tls/key.pem" -out "$run/tls/cert.pem" 2>"$run/tls/openssl.err" \
        || die "openssl could not make the certificate (see $run/tls/openssl.err)"
    cat "$run/tls/cert.pem" "$run/tls/key.pem" >"$run/tls/haproxy.pem"
    # nginx's worker and HAProxy read them too.
    chmod 755 "$run/tls"
    chmod 644 "$run/tls/"*.pem
    say "certificate: self-signed $TLS_KEY for localhost in $run/tls"
}

# check_full_handshakes: the load generator must not resume sessions (wrk and h2load do: with
# "Connection: close" their reconnections show $ssl_session_reused = "r" in nginx's log). hsload
# counts only full handshakes itself; this checks it from the server's side: one second of it
# against an nginx that logs it, where every request must have had a connection of its own and a
# full TLS 1.3 handshake.
check_full_handshakes() {
    local log="$run/nginx-tls.log" lines reused conns protos
    proxy_scheme=https
    start_nginx tls-log
    : >"$log"
    taskset -c "$LOAD_CPU" "$HSLOAD_BIN" --connect "127.0.0.1:$NGINX_PORT" --clients 2 --seconds 1 \
        >"$run/hsload-check.out" 2>&1 || true
    stop_proxies
    lines="$(wc -l <"$log")"
    reused="$(awk '$4 == "r"' "$log" | wc -l)"
    conns="$(awk '{print $1}' "$log" | sort -u | wc -l)"
    protos="$(awk '{print $3}' "$log" | sort -u | tr '\n' ' ')"
    [ "$lines" -gt 0 ] || die "tls-handshake: hsload made no request (see $run/hsload-check.out)"
    [ "$reused" = 0 ] || die "tls-handshake: $reused of $lines hsload connections resumed a session"
    [ "$conns" = "$lines" ] || die "tls-handshake: $lines requests on only $conns connections"
    [ "$protos" = "TLSv1.3 " ] || die "tls-handshake: hsload negotiated $protos, expected TLSv1.3"
    say "tls-handshake: hsload checked against nginx: $lines requests, $conns connections, none resumed, $protos"
}

tls_summary=""
# verify_tls TARGET: the upstream's body over HTTPS (curl), then tls-handshake's request through
# openssl s_client: HTTP 200 with the body, TLS 1.3. Adds what was negotiated (version, cipher
# suite, key exchange) to tls_summary.
verify_tls() {
    verify_upstream_body "$1" || return 1
    local out="$run/s_client-$1.out" err="$run/s_client-$1.err" proto suite kx
    printf '%s' "$HS_REQUEST" | timeout 10 openssl s_client -brief -ign_eof \
        -connect "127.0.0.1:$(port_of "$1")" -servername localhost >"$out" 2>"$err" || true
    proto="$(sed -n 's/^Protocol version: //p' "$err")"
    suite="$(sed -n 's/^Ciphersuite: //p' "$err")"
    kx="$(sed -n 's/^\(Server\|Peer\) Temp Key: \([^,]*\).*/\2/p' "$err" | head -1)"
    if [ "$proto" != TLSv1.3 ]; then
        say "$1 negotiated ${proto:-nothing} with openssl s_client, expected TLSv1.3 (see $err)"
        return 1
    fi
    if ! head -1 "$out" | grep -q '^HTTP/1\.[01] 200' || ! grep -q 'hello from upstream' "$out"; then
        say "$1 did not answer the tls-handshake request with 200 and the body (see $out)"
        return 1
    fi
    tls_summary+="$1: $proto $suite $kx"$'\n'
}

verify_h2() { # TARGET: verify_tls, then curl over HTTP/2 (ALPN h2) gets the body
    verify_tls "$1" || return 1
    local body="$run/check-$1-h2.body" version
    version="$(curl -sk --http2 -o "$body" -w '%{http_version}' "https://127.0.0.1:$(port_of "$1")/")" || version=failed
    if [ "$version" != 2 ] || ! grep -q 'hello from upstream' "$body"; then
        say "$1: curl --http2 got HTTP version $version (see $body), expected 2 with the body"
        return 1
    fi
}

# handshake_round TARGET SECONDS NAME: hsload on LOAD_CPU for SECONDS, HANDSHAKE_CLIENTS threads
# each connecting, handshaking, sending HS_REQUEST and reading the answer to the close, one
# connection after the other. hsload runs at nice 10: its 8 runnable threads would otherwise
# starve the upstream on the same core (seen in tls-resume: the proxy at 40% CPU, answers waiting
# for the upstream to be scheduled, 2,200 instead of 4,700 resumptions/s). Sets hs_fields to the fields of a record: hsload's (connections
# over wall time, errors, connection latency) and the serving process's CPU time over the round.
hs_fields=""
hs_args=()          # more hsload arguments (--resume in tls-resume)
handshake_round() {
    local target=$1 secs=$2 name=$3 serving t0 t1 c0 c1 out json
    serving="$(serving_pid "${target_pid[$target]}")"
    out="$run/hsload-$name.txt"
    c0="$(cpu_ticks "$serving")"
    t0="$(date +%s.%N)"
    taskset -c "$LOAD_CPU" nice -n 10 "$HSLOAD_BIN" --connect "127.0.0.1:$(port_of "$target")" \
        --clients "$HANDSHAKE_CLIENTS" --seconds "$secs" "${hs_args[@]+"${hs_args[@]}"}" >"$out" 2>&1 || true
    t1="$(date +%s.%N)"
    c1="$(cpu_ticks "$serving")"
    json="$(sed -n 's/^HSLOAD_JSON //p' "$out")"
    if [ -z "$json" ]; then
        hs_fields=""
        return
    fi
    hs_fields="${json#\{}"
    hs_fields="${hs_fields%\}},\"cpu_seconds\":$(awk "BEGIN {print ($c1 - $c0) / $(getconf CLK_TCK)}"),\"cpu_wall_seconds\":$(awk "BEGIN {print $t1 - $t0}")"
}

# bench_handshake SCENARIO PATH EXTRA TARGET...: WARMUP per target, then ROUNDS interleaved rounds.
bench_handshake() {
    local scenario=$1
    shift 3
    local targets=("$@") target round secs warm
    secs="$(seconds_of "$DURATION")"
    warm="$(seconds_of "$WARMUP")"
    for target in "${targets[@]}"; do
        handshake_round "$target" "$warm" "warmup-$target"
    done
    for round in $(seq "$ROUNDS"); do
        for target in "${targets[@]}"; do
            handshake_round "$target" "$secs" "$scenario-$target-$round"
            if [ -z "$hs_fields" ]; then
                say "$scenario $target round $round: hsload gave no result (see $run/hsload-$scenario-$target-$round.txt)"
                continue
            fi
            record "{\"kind\":\"handshake\",\"scenario\":\"$scenario\",\"target\":\"$target\",\"round\":$round,$hs_fields}"
            say "$scenario round $round $target: $(python3 -c 'import json,sys; r=json.loads("{"+sys.argv[1]+"}"); print("%.0f handshakes/s, proxy CPU %.0f%%, client CPU %.0f%%, %d errors" % (r["connections"]/r["seconds"], 100*r["cpu_seconds"]/r["cpu_wall_seconds"], 100*r.get("client_cpu_seconds",0)/r["seconds"], r["errors"]))' "$hs_fields")"
        done
    done
}

# bench_h2 SCENARIO PATH EXTRA TARGET...: like bench_http with h2load over TLS+ALPN h2:
# H2_CONNECTIONS connections, H2_STREAMS concurrent streams each, one thread. By default that keeps
# CONNECTIONS requests in flight, as wrk does: more would overrun the proxies' 64 kept-alive upstream
# connections (HTTP/1.1, one request each at a time) and measure upstream connection churn.
# Latency percentiles come from h2load's per-request log (bench/h2load_json.py), deleted once read.
bench_h2() {
    local scenario=$1 path=$2 extra=$3
    shift 3
    local targets=("$@") target round raw log json secs warm
    local conns="$H2_CONNECTIONS"
    secs="$(seconds_of "$DURATION")"
    warm="$(seconds_of "$WARMUP")"
    for target in "${targets[@]}"; do
        # shellcheck disable=SC2086 # extra holds several h2load arguments
        taskset -c "$LOAD_CPU" h2load -c"$conns" -m"$H2_STREAMS" -D "$warm" $extra \
            "https://127.0.0.1:$(port_of "$target")$path" >/dev/null 2>&1 || true
    done
    for round in $(seq "$ROUNDS"); do
        for target in "${targets[@]}"; do
            raw="$run/h2load-$scenario-$target-$round.txt"
            log="$run/h2load-$scenario-$target-$round.log"
            # shellcheck disable=SC2086
            taskset -c "$LOAD_CPU" h2load -c"$conns" -m"$H2_STREAMS" -D "$secs" --log-file "$log" $extra \
                "https://127.0.0.1:$(port_of "$target")$path" >"$raw" 2>&1 || true
            if ! json="$(python3 "$bench/h2load_json.py" "$raw" "$log" 2>>"$run/h2load-errors.txt")"; then
                say "$scenario $target round $round: h2load gave no result (see $raw, $run/h2load-errors.txt)"
                rm -f "$log"
                continue
            fi
            rm -f "$log"
            record "{\"kind\":\"http\",\"scenario\":\"$scenario\",\"target\":\"$target\",\"round\":$round,${json#\{}"
            say "$scenario round $round $target: $(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$raw") req/s"
        done
    done
}

# scenario_tls SCENARIO BENCH VERIFY: the proxy-small setup (fast upstreams, GET /) over HTTPS.
scenario_tls() {
    local scenario=$1 bench_fn=$2 verify=$3
    make_cert
    if [ "$bench_fn" = bench_handshake ] && ! find_hsload; then
        skip "$scenario" "$probe_error"
        return
    fi
    if wanted gale && ! gale_supports tls tls; then
        skip "$scenario" "TLS not available (gale check: $probe_error)"
        return
    fi
    use_upstreams fast
    hs_args=()
    if [ "$scenario" = tls-handshake ]; then
        check_full_handshakes
    elif [ "$scenario" = tls-resume ]; then
        hs_args=(--resume)
    fi
    tls_summary=""
    proxy_scheme=https scenario_bench=$bench_fn
    gale_features=(tls)
    proxy_scenario "$scenario" / "" tls "$verify" gale nginx haproxy
    proxy_scheme=http scenario_bench=bench_http
    hs_args=()
    local what key
    key="$( [ "$TLS_KEY" = rsa2048 ] && echo "RSA 2048" || echo "ECDSA P-256") certificate"
    case "$scenario" in
    tls-handshake) what="hsload, $HANDSHAKE_CLIENTS clients, one GET per connection" ;;
    tls-resume) what="hsload --resume, $HANDSHAKE_CLIENTS clients, one GET per connection" ;;
    https-small) what="wrk over HTTPS keep-alive, HTTP/1.1" ;;
    h2-small) what="h2load -c$H2_CONNECTIONS -m$H2_STREAMS, HTTP/2" ;;
    esac
    # One line when every proxy negotiated the same, else one per proxy.
    if [ "$(printf '%s' "$tls_summary" | sed 's/^[^:]*: //' | sort -u | wc -l)" = 1 ]; then
        note "$scenario" "$what; $key; $(printf '%s' "$tls_summary" | head -1 | sed 's/^[^:]*: //')"
    else
        note "$scenario" "$what; $key; $(printf '%s' "$tls_summary" | paste -sd ';' | sed 's/;/; /g')"
    fi
}
