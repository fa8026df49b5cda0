#!/usr/bin/env bash
# Sets up everything gale's demo and tests need on a machine that has only the Rust toolchain
# and python3. Idempotent: run it as often as you like.
#   - the wasm32-wasip2 target (plugins are WebAssembly components)
#   - a virtualenv at <repo>/.venv with the pinned Tornado (scripts/requirements.txt)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

say() { printf 'setup: %s\n' "$*" >&2; }

# The Rust target for plugins. rust-toolchain.toml names it too; this makes sure it is there.
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        say "adding the wasm32-wasip2 target"
        rustup target add wasm32-wasip2
    fi
else
    say "rustup not found: make sure the wasm32-wasip2 target is installed"
fi

# Tornado in a virtualenv. Debian/Ubuntu ship venv separately (python3-venv).
venv="$repo/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            pyver="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
            say "installing python3-venv with apt-get"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${pyver}-venv" \
                || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        else
            say "python3 cannot create a virtualenv: install python3-venv (as root: apt-get install python3-venv)"
            exit 1
        fi
    fi
    say "creating the virtualenv $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
fi

if ! "$venv/bin/python" - "$repo/scripts/requirements.txt" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, want = line.split("==")
        assert version(name) == want, (name, version(name), want)
EOF
then
    say "installing $(grep -v '^#' scripts/requirements.txt | tr '\n' ' ')into the virtualenv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
fi

# curl: the end-to-end tests use it as the real HTTPS and HTTP/2 client (Debian's has HTTP/2).
if ! command -v curl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing curl with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl
    else
        say "curl not found: install it (as root: apt-get install curl)"
        exit 1
    fi
fi
# systemd-analyze: the e2e suite verifies deploy/gale.service with it (`systemd-analyze verify`).
if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing systemd (for systemd-analyze) with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd
    else
        say "systemd-analyze not found: install it (as root: apt-get install systemd)"
        exit 1
    fi
fi
if ! curl --version | grep -qw HTTP2; then
    say "warning: this curl has no HTTP/2 support; the HTTP/2 end-to-end tests will fail"
fi

say "ready: $("$venv/bin/python" -c 'import tornado; print("tornado", tornado.version)'), $(rustc --version)"
