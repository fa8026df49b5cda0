#!/usr/bin/env bash
# The main job: gale with its embedded default config (listen 127.0.0.1:8080, round robin over
# 127.0.0.1:8000-8003) in front of four demo Tornado processes, which this script runs the way
# supervisord did in the seed deployment. Runs in the foreground until Ctrl-C; the Tornado
# processes are stopped when it exits.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

"$repo/scripts/setup.sh"

echo "demo: building gale (release)" >&2
cargo build --release -p gale
gale="${CARGO_TARGET_DIR:-$repo/target}/release/gale"
case "$gale" in /*) ;; *) gale="$repo/$gale" ;; esac

python="$repo/.venv/bin/python"
ports=(8000 8001 8002 8003)
pids=()
state="$(mktemp -d)"

cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for port in "${ports[@]}"; do
    "$python" "$repo/tests/tornado/app.py" --port "$port" --name "tornado-$port" >"$state/$port" &
    pids+=("$!")
done

# Each backend prints its port once it listens; give up if one dies (port taken, ...).
for i in "${!ports[@]}"; do
    port="${ports[$i]}"
    for _ in $(seq 100); do
        [ -s "$state/$port" ] && break
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            echo "demo: the Tornado backend on port $port did not start (see above)" >&2
            exit 1
        fi
        sleep 0.1
    done
    [ -s "$state/$port" ] || { echo "demo: the Tornado backend on port $port is not up" >&2; exit 1; }
done
echo "demo: four Tornado backends on 127.0.0.1:${ports[0]}-${ports[3]}" >&2

# gale prints `gale: listening on ADDR` once bound, then the access log (stdout). It runs in
# the background so that this script's traps fire at once on Ctrl-C or SIGTERM; gale itself
# shuts down gracefully on either signal.
"$gale" run > >(
    while IFS= read -r line; do
        printf '%s\n' "$line"
        case "$line" in
            "gale: listening on "*)
                printf '\nOpen http://127.0.0.1:8080/  (reload to see the next backend; Ctrl-C stops)\n\n'
                ;;
        esac
    done
) &
gale_pid="$!"
pids=("$gale_pid" "${pids[@]}")
status=0
wait "$gale_pid" || status=$?
exit "$status"
