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

# The SDK embeds the WIT package (so that it builds outside this repository):
# it must be the one in wit/.
"$repo/plugins/gale-plugin/sync-wit.sh" --check

# The plugins are a workspace of their own with their own target folder,
# whatever CARGO_TARGET_DIR says for the host. The SDK's example (the issue's
# tagger) is built too: e2e tests attach it.
cd "$repo/plugins"
CARGO_TARGET_DIR="$repo/plugins/target" cargo build --release --locked --target "$target" --workspace
CARGO_TARGET_DIR="$repo/plugins/target" cargo build --release --locked --target "$target" -p gale-plugin --example tagger

out="$repo/target/plugins"
mkdir -p "$out"
release="$repo/plugins/target/$target/release"
wasms=("$release/examples/tagger.wasm")
for manifest in "$repo"/plugins/*/Cargo.toml; do
    crate="$(basename "$(dirname "$manifest")")"
    # The SDK is a library, not a plugin.
    [ "$crate" = gale-plugin ] && continue
    wasms+=("$release/${crate//-/_}.wasm")
done
for wasm in "${wasms[@]}"; do
    cp "$wasm" "$out/"
    echo "build-plugins: $out/$(basename "$wasm") ($(wc -c <"$wasm") bytes)"
done
