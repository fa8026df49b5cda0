#!/usr/bin/env bash
# Sets up everything and runs every test: the unit tests of each crate and the end-to-end suite
# (tests/: the real gale binary in front of real Tornado processes). Exits non-zero on any
# failure. This is what CI runs (.ci/run).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

step() { printf '\ntest: %s\n' "$*" >&2; }

step "setup (wasm target, Tornado virtualenv)"
"$repo/scripts/setup.sh"

# The e2e harness runs target/debug/gale (or $GALE_BIN): build it first, cargo test will not.
step "building gale"
cargo build -p gale

step "building the guest plugins (wasm32-wasip2)"
"$repo/scripts/build-plugins.sh"

# This includes the fuzz checks (crate gale-fuzz: the framing tracker against hyper, the multipart
# parser) over their committed corpus plus a bounded, seeded random run; docs/fuzzing.md.
step "cargo test --workspace"
cargo test --workspace

# The plugins' own unit tests (their rules and configs), on the host target.
step "plugin unit tests (plugins/)"
(cd "$repo/plugins" && CARGO_TARGET_DIR="$repo/plugins/target" cargo test --workspace --locked)

step "all tests passed"
