#!/usr/bin/env bash
# The whole classic Tornado deployment, served by gale: examples/tornado-site.toml (the
# translation of docs/nginx-reference.conf). gale starts four demo Tornado processes on
# 127.0.0.1:8000-8003 itself (supervisord's job in that deployment) and, on
# http://127.0.0.1:8080/, balances `/` over them, serves `/static/` with the cache rule, gzips,
# takes uploads to `/upload` off Tornado's hands and runs the header-policy plugin. The page
# it prints links to each part. Runs in the foreground until Ctrl-C: gale drains in-flight
# requests, then stops its Tornado children.
#
# Environment (the end-to-end test uses both; tests/tests/e2e/demo.rs):
#   GALE_BIN          run this gale binary; the caller has set up and built everything
#                     (scripts/setup.sh, the binary, scripts/build-plugins.sh), so this
#                     script does not
#   GALE_DEMO_CONFIG  serve this config instead of examples/tornado-site.toml
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

config="${GALE_DEMO_CONFIG:-$repo/examples/tornado-site.toml}"

if [ -n "${GALE_BIN:-}" ]; then
    gale="$GALE_BIN"
else
    "$repo/scripts/setup.sh"
    echo "demo: building the plugins (wasm32-wasip2, into target/plugins)" >&2
    "$repo/scripts/build-plugins.sh" >&2
    echo "demo: building gale (release)" >&2
    cargo build --release -p gale
    gale="${CARGO_TARGET_DIR:-$repo/target}/release/gale"
fi
case "$gale" in /*) ;; *) gale="$repo/$gale" ;; esac

# gale prints `gale: listening on ADDR` once its children answer and the listener is bound,
# then the access log (stdout). Ctrl-C reaches gale (its children have their own process
# groups), which shuts down gracefully and stops them.
exec "$gale" run --config "$config" > >(
    while IFS= read -r line; do
        printf '%s\n' "$line"
        case "$line" in
            "gale: listening on "*)
                addr="${line#gale: listening on }"
                url="http://${addr%% *}"
                cat <<EOF

Open $url/  (Ctrl-C stops)
  $url/                    balanced over the four Tornado processes (reload: the next one answers)
  $url/static/app.css?v=1  a static file; versioned, so cached forever (Expires, Cache-Control)
  $url/html?n=5000         gzipped for clients that accept it (curl --compressed -v)
  $url/form                an upload form; gale stores the file, Tornado gets its fields
  $url/robots.txt          denied (404) by the header-policy plugin, before Tornado sees it
  curl -I $url/            X-Frame-Options: SAMEORIGIN, added by the same plugin to every proxied answer
Rolling restart from another shell: $gale restart tornadoes --config $config

EOF
                ;;
        esac
    done
)
