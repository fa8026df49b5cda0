#!/usr/bin/env bash
# Sets up everything gale's demo and tests need on a machine that has only the Rust toolchain
# and python3. Idempotent: run it as often as you like.
#   - the wasm32-wasip2 target (plugins are WebAssembly components)
#   - a virtualenv at <repo>/.venv with the pinned Tornado (scripts/requirements.txt)
#   - curl, and Debian's chromium (the status page test loads the page in headless Chromium)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

say() { printf 'setup: %s\n' "$*" >&2; }

# Whether apt-get can install packages here (Debian/Ubuntu, as root).
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

# apt-get install PACKAGES, quietly, after an index update.
apt_install() {
    say "installing $* with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# Installs TOOL's package (PACKAGE, default TOOL) where it is missing, or stops with a message
# saying what the tests would lack.
require_tool() {
    local tool="$1" package="${2:-$1}" why="$3"
    command -v "$tool" >/dev/null 2>&1 && return 0
    if can_apt; then
        apt_install "$package"
    else
        say "$tool not found: install it (as root: apt-get install $package): $why"
        exit 1
    fi
}

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
        if can_apt; then
            pyver="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
            apt_install "python${pyver}-venv" || apt_install python3-venv
        else
            say "python3 cannot create a virtualenv: install python3-venv (as root: apt-get install python3-venv)"
            exit 1
        fi
    fi
    say "creating the virtualenv $venv"
    rm -rf "$venv"
    # ensurepip has been seen failing once without a reason on a busy machine; one retry.
    if ! python3 -m venv "$venv"; then
        say "creating the virtualenv failed; trying once more"
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
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
require_tool curl curl "the end-to-end tests need it"
# systemd-analyze: the e2e suite verifies deploy/systemd/gale.service with it.
require_tool systemd-analyze systemd "the e2e suite verifies the systemd unit with it"
if ! curl --version | grep -qw HTTP2; then
    say "warning: this curl has no HTTP/2 support; the HTTP/2 end-to-end tests will fail"
fi

# The multi-host test (tests/tests/e2e/multihost.rs: network namespaces, HAProxy in front of two
# gales) needs `ip` and `haproxy`; the container image test needs buildah. As root with apt-get they
# are installed (buildah on a best-effort basis: it is large, and the image test is skipped without
# it); elsewhere the tests that need them say they are skipped.
if can_apt; then
    needed=()
    command -v ip >/dev/null 2>&1 || needed+=(iproute2)
    command -v haproxy >/dev/null 2>&1 || needed+=(haproxy)
    if [ ${#needed[@]} -gt 0 ]; then
        apt_install "${needed[@]}"
    fi
    if ! command -v buildah >/dev/null 2>&1; then
        apt_install buildah || say "warning: buildah could not be installed; the container image test is skipped"
    fi
else
    for tool in ip haproxy buildah; do
        command -v "$tool" >/dev/null 2>&1 \
            || say "$tool not found: the tests that need it are skipped (as root: scripts/setup.sh installs it)"
    done
fi

# chromium: the status page test (tests/tests/e2e/status_page.rs) loads the admin page in it.
require_tool chromium chromium "the status page test loads the page in it"

say "ready: $("$venv/bin/python" -c 'import tornado; print("tornado", tornado.version)'), $(rustc --version)"
