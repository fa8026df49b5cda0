#!/usr/bin/env bash
# Sets up everything and runs every test: the unit tests of each crate and the end-to-end suite
# (tests/: the real gale binary in front of real Tornado processes). Exits non-zero on any
# failure. This is what CI runs (.ci/run).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

step() { printf '\ntest: %s\n' "$*" >&2; }

# Expected values are written by hand or blessed on purpose (scripts/bless.sh), never by the
# run that checks them.
if [ -n "${GALE_BLESS:-}" ]; then
    echo "test.sh: GALE_BLESS is set: a test run must not rewrite the golden files it checks (use scripts/bless.sh)" >&2
    exit 1
fi

step "setup (wasm target, Tornado virtualenv)"
"$repo/scripts/setup.sh"

step "cargo fmt --check (root and plugins/)"
cargo fmt --all --check
(cd "$repo/plugins" && cargo fmt --all --check)

# The e2e harness runs target/debug/gale (or $GALE_BIN): build it first, cargo test will not.
step "building gale"
cargo build -p gale

step "building the guest plugins (wasm32-wasip2)"
"$repo/scripts/build-plugins.sh"

step "cargo clippy --all-targets -D warnings (root, and plugins/ for wasm32-wasip2)"
cargo clippy --workspace --all-targets --locked -- -D warnings
(cd "$repo/plugins" && CARGO_TARGET_DIR="$repo/plugins/target" \
    cargo clippy --workspace --all-targets --locked --target wasm32-wasip2 -- -D warnings)

# The cargo-fuzz targets (fuzz/libfuzzer, its own workspace) run only on nightly, but they must
# keep compiling against the checks they call: type-check them on stable.
step "fuzz targets compile (fuzz/libfuzzer)"
cargo check --manifest-path "$repo/fuzz/libfuzzer/Cargo.toml" --bins --locked \
    --target-dir "$repo/target"

# This includes the fuzz checks (crate gale-fuzz: the framing tracker against hyper, the multipart
# parser) over their committed corpus plus a bounded, seeded random run (3,000 mutations per
# target); docs/fuzzing.md.
step "cargo test --workspace"
cargo test --workspace

# Marks the run: whether the md5 tests exercised the AVX-512 code or only md-5 (CPU without
# AVX-512; GALE_REQUIRE_AVX512=1 makes that a failure).
step "md5: which implementation the tests ran"
cargo test -q -p gale-md5 --lib says_which_implementation_the_tests_ran -- --nocapture 2>&1 | grep '^md5:' >&2

# The plugins' own unit tests (their rules and configs), on the host target.
step "plugin unit tests (plugins/)"
(cd "$repo/plugins" && CARGO_TARGET_DIR="$repo/plugins/target" cargo test --workspace --locked)

step "all tests passed"
