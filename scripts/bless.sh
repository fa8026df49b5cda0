#!/usr/bin/env bash
# Regenerates the golden files (host/src/config/testdata/*.err) from the current code: an
# explicit step, never part of a test run (scripts/test.sh refuses GALE_BLESS). The blessing
# test fails when it changed a file, listing what it rewrote; review `git diff` and commit.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
status=0
GALE_BLESS=1 cargo test -p gale --lib config::tests::golden_errors "$@" || status=$?
git --no-pager diff --stat -- host/src/config/testdata
exit "$status"
