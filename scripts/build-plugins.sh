#!/usr/bin/env bash
# Builds every guest plugin in plugins/ (release, wasm32-wasip2) and copies the
# components to <repo>/target/plugins/, where gale's tests and the example
# config find them. Run from anywhere: scripts/build-plugins.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target=wasm32-wasip2

if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx "$target"; then
        rustup target add "$target"
    fi
elif [ ! -d "$(rustc --print sysroot)/lib/rustlib/$target" ]; then
    echo "build-plugins: the Rust target $target is not installed (and rustup is missing)" >&2
    exit 1
fi

# The plugins are a workspace of their own with their own target folder,
# whatever CARGO_TARGET_DIR says for the host.
cd "$repo/plugins"
CARGO_TARGET_DIR="$repo/plugins/target" cargo build --release --locked --target "$target" --workspace

out="$repo/target/plugins"
mkdir -p "$out"
for manifest in "$repo"/plugins/*/Cargo.toml; do
    crate="$(basename "$(dirname "$manifest")")"
    wasm="$repo/plugins/target/$target/release/${crate//-/_}.wasm"
    cp "$wasm" "$out/"
    echo "build-plugins: $out/$(basename "$wasm") ($(wc -c <"$wasm") bytes)"
done
