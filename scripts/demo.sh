#!/usr/bin/env bash
# The main job: gale in front of four demo Tornado processes on 127.0.0.1:8000-8003, which gale
# starts, watches and restarts itself (supervisord's job in the seed deployment), balancing over
# them on http://127.0.0.1:8080/. The config is examples/tornado-demo.toml. Runs in the
# foreground until Ctrl-C: gale drains in-flight requests, then stops its Tornado children.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

"$repo/scripts/setup.sh"

echo "demo: building gale (release)" >&2
cargo build --release -p gale
gale="${CARGO_TARGET_DIR:-$repo/target}/release/gale"
case "$gale" in /*) ;; *) gale="$repo/$gale" ;; esac

# gale prints `gale: listening on ADDR` once its children answer and the listener is bound,
# then the access log (stdout). Ctrl-C reaches gale (its children have their own process
# groups), which shuts down gracefully and stops them.
exec "$gale" run --config "$repo/examples/tornado-demo.toml" > >(
    while IFS= read -r line; do
        printf '%s\n' "$line"
        case "$line" in
            "gale: listening on "*)
                printf '\nOpen http://127.0.0.1:8080/  (reload to see the next backend; Ctrl-C stops)\n'
                printf 'Rolling restart from another shell: %s restart tornadoes --config examples/tornado-demo.toml\n\n' "$gale"
                ;;
        esac
    done
)
