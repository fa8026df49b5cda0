#!/usr/bin/env bash
# Many tenants: start-up time with a warm compile cache, memory per tenant, reload time.
#
#   bench/tenants.sh
#   TENANTS=100 ROUNDS=5 bench/tenants.sh
#
# Generates a config with TENANTS tenants (default 100), each with its own plugin directory holding
# three plugins (header-policy, test-loop and test-trap; the fixtures only misbehave under a path no
# request uses) and one server (server_name tNNN.test) whose location attaches all three with its
# own config: TENANTS x 3 attachments, each with its own warm instance. Then, ROUNDS times each:
#   - start-up: from exec to gale's "listening" line, with the compile cache already warm (one
#     unrecorded start fills it first; the cold start is reported separately);
#   - memory: VmRSS once listening, minus the RSS of the same config without tenants or plugins,
#     divided by TENANTS;
#   - reload: SIGHUP to "reloaded; listening on" in the error log (every tenant and plugin
#     rebuilt: new pools, a configure per attachment).
# Then isolation: tenant a's test-loop spins until its 5 ms deadline on every request while
# LOAD_CLIENTS clients hammer it; tenant b's latency (p50, p99 of ISO_REQUESTS sequential
# keep-alive requests through a header-policy) idle and under that load, with tenant a's
# max_concurrent = 1 and = 64 (gale has threads = 2; the backend is a tiny Python server).
# Not a test: nothing is asserted. Figures go to docs/performance.md by hand, with the load average
# the script prints (a figure taken with a load average above the number of cores is noise).
#
# Settings (environment):
#   TENANTS=100   ROUNDS=3   LOAD_CLIENTS=8   ISO_REQUESTS=300
#   BUILD=1       cargo build --release -p gale (and the plugins when missing); 0: use GALE_BIN
#   GALE_BIN=...  the gale binary (default: $CARGO_TARGET_DIR or target/, release/gale)
#   PLUGIN_DIR=... the built plugins (default: <repo>/target/plugins)
# Output: bench/out/tenants-<date>/ (configs, logs, report.md); the report is printed at the end.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TENANTS="${TENANTS:-100}"
ROUNDS="${ROUNDS:-3}"
BUILD="${BUILD:-1}"
PLUGIN_DIR="${PLUGIN_DIR:-$repo/target/plugins}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
GALE_BIN="${GALE_BIN:-$target_dir/release/gale}"

if [ "$BUILD" = 1 ]; then
    (cd "$repo" && cargo build --release -p gale)
    for p in header_policy test_loop test_trap; do
        [ -f "$PLUGIN_DIR/$p.wasm" ] || { "$repo/scripts/build-plugins.sh"; break; }
    done
fi
[ -x "$GALE_BIN" ] || { echo "tenants.sh: no gale binary at $GALE_BIN (BUILD=1 builds it)" >&2; exit 1; }
GALE_BIN="$(realpath "$GALE_BIN")"
PLUGIN_DIR="$(realpath "$PLUGIN_DIR")"

out="$repo/bench/out/tenants-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
echo "tenants.sh: output in $out"

python3 - "$GALE_BIN" "$PLUGIN_DIR" "$out" "$TENANTS" "$ROUNDS" "${LOAD_CLIENTS:-8}" "${ISO_REQUESTS:-300}" <<'PY'
import http.client, http.server, os, shutil, signal, statistics, subprocess, sys, threading, time

gale, plugin_dir, out, tenants, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
load_clients, iso_requests = int(sys.argv[6]), int(sys.argv[7])
PLUGINS = ["header_policy", "test_loop", "test_trap"]

def config(with_tenants):
    lines = ['[global]', 'threads = 2', 'access_log = "off"', f'plugin_cache_dir = "{out}/cache"', '',
             '[upstream.app]', 'servers = ["127.0.0.1:9"]', '']
    for i in range(tenants):
        name = f"t{i:03d}"
        if with_tenants:
            d = os.path.join(out, "tenants", name)
            os.makedirs(d, exist_ok=True)
            for p in PLUGINS:
                dst = os.path.join(d, p + ".wasm")
                if not os.path.exists(dst):
                    shutil.copy(os.path.join(plugin_dir, p + ".wasm"), dst)
            lines += [f'[tenant.{name}]', f'plugin_dir = "{d}"',
                      'limits = { memory = "16MiB", hook_timeout = "5ms", max_concurrent = 4, max_instances = 8 }', '']
        lines += ['[[server]]', f'listen = ["127.0.0.1:{port}"]',
                  f'server_name = ["{name}.test"]']
        if with_tenants:
            lines.append(f'tenant = "{name}"')
        lines += ['[[server.location]]', 'path = "/"', 'proxy = { pass = "app" }']
        if with_tenants:
            lines.append('plugins = [{ name = "header-policy", config = { response = { set = { x-tenant = "%s" } } } }, '
                         '{ name = "test-loop", config = { path_prefix = "/never-%d" } }, '
                         '{ name = "test-trap", config = { path_prefix = "/never-%d" } }]' % (name, i, i))
        lines.append('')
    return "\n".join(lines)

# One listen address shared by every server: pick a free port.
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def run_once(path, reload=False):
    """Starts gale; returns (startup s, rss KiB, reload s or None)."""
    t0 = time.monotonic()
    p = subprocess.Popen([gale, "run", "--config", path], stdout=subprocess.PIPE, stderr=open(path + ".log", "ab"),
                         text=True, cwd=out)
    try:
        for line in p.stdout:
            if line.startswith("gale: listening on"):
                break
        else:
            raise SystemExit(f"gale exited before listening; see {path}.log")
        startup = time.monotonic() - t0
        time.sleep(0.5)
        rss = rss_kib(p.pid)
        took = None
        if reload:
            with open(path + ".log") as f:
                before = f.read().count("reloaded; listening on")
            t1 = time.monotonic()
            p.send_signal(signal.SIGHUP)
            while True:
                with open(path + ".log") as f:
                    text = f.read()
                if text.count("reloaded; listening on") > before:
                    took = time.monotonic() - t1
                    break
                if "reload failed" in text[-2000:]:
                    raise SystemExit(f"reload failed; see {path}.log")
                time.sleep(0.002)
        return startup, rss, took
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()

plain, full = os.path.join(out, "plain.toml"), os.path.join(out, "tenants.toml")
with open(plain, "w") as f:
    f.write(config(False))
with open(full, "w") as f:
    f.write(config(True))

load = os.getloadavg()
cold = run_once(full)[0]  # fills the compile cache
base = [run_once(plain) for _ in range(rounds)]
runs = [run_once(full, reload=True) for _ in range(rounds)]
med = statistics.median
base_rss = med([r[1] for r in base])
startup = med([r[0] for r in runs])
rss = med([r[1] for r in runs])
reload = med([r[2] for r in runs])
report = f"""# tenants.sh: {tenants} tenants x {len(PLUGINS)} plugins ({tenants * len(PLUGINS)} attachments)

machine: {os.cpu_count()} CPUs, load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {rounds} rounds, medians

| measure | value |
|---|---|
| start-up, cold compile cache (one run) | {cold * 1000:.0f} ms |
| start-up, warm compile cache | {startup * 1000:.0f} ms (every round: {", ".join(f"{r[0] * 1000:.0f}" for r in runs)}) |
| start-up without tenants or plugins | {med([r[0] for r in base]) * 1000:.0f} ms |
| RSS with tenants | {rss / 1024:.1f} MiB |
| RSS of the same servers without tenants or plugins | {base_rss / 1024:.1f} MiB |
| memory per tenant (3 warm instances) | {(rss - base_rss) / tenants:.0f} KiB |
| reload (SIGHUP to "reloaded") | {reload * 1000:.0f} ms (every round: {", ".join(f"{r[2] * 1000:.0f}" for r in runs)}) |
"""

class Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *args):
        pass

backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
threading.Thread(target=backend.serve_forever, daemon=True).start()

def isolation(max_concurrent):
    d = os.path.join(out, "iso")
    os.makedirs(d, exist_ok=True)
    for p in ("test_loop", "header_policy"):
        shutil.copy(os.path.join(plugin_dir, p + ".wasm"), d)
    path = os.path.join(out, f"iso-{max_concurrent}.toml")
    with open(path, "w") as f:
        f.write(f'''[global]
threads = 2
access_log = "off"
error_log = "off"
plugin_cache_dir = "{out}/cache"
[tenant.a]
plugin_dir = "{d}"
limits = {{ hook_timeout = "5ms", max_concurrent = {max_concurrent} }}
breaker = {{ failures = 0 }}
[tenant.b]
plugin_dir = "{d}"
[upstream.app]
servers = ["127.0.0.1:{backend.server_address[1]}"]
[[server]]
listen = ["127.0.0.1:0"]
tenant = "a"
[[server.location]]
path = "/"
proxy = {{ pass = "app" }}
plugins = ["test-loop"]
[[server]]
listen = ["127.0.0.1:0"]
tenant = "b"
[[server.location]]
path = "/"
proxy = {{ pass = "app" }}
plugins = [{{ name = "header-policy", config = {{ response = {{ set = {{ x-b = "1" }} }} }} }}]
''')
    p = subprocess.Popen([gale, "run", "--config", path], stdout=subprocess.PIPE, text=True, cwd=out)
    try:
        for line in p.stdout:
            if line.startswith("gale: listening on"):
                a_addr, b_addr = line.split()[3:5]
                break
        def hostport(addr):
            h, port = addr.rsplit(":", 1)
            return h, int(port)
        def measure(n):
            c = http.client.HTTPConnection(*hostport(b_addr))
            times = []
            for _ in range(n):
                t = time.perf_counter()
                c.request("GET", "/")
                r = c.getresponse()
                r.read()
                assert r.status == 200, r.status
                times.append(time.perf_counter() - t)
            c.close()
            times.sort()
            return times[len(times) // 2], times[int(len(times) * 0.99) - 1]
        measure(50)
        idle = measure(iso_requests)
        stop = threading.Event()
        answered = [0]
        def hammer():
            while not stop.is_set():
                c = http.client.HTTPConnection(*hostport(a_addr))
                c.request("GET", "/")
                c.getresponse().read()
                c.close()
                answered[0] += 1
        threads = [threading.Thread(target=hammer) for _ in range(load_clients)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        loaded = measure(iso_requests)
        stop.set()
        for t in threads:
            t.join()
        return idle, loaded, answered[0]
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)

report += f"""
Isolation: tenant b's latency (ms) while {load_clients} clients keep tenant a's test-loop spinning (5 ms deadline,
breaker off); {iso_requests} sequential keep-alive requests to b per measure; gale threads = 2.

| tenant a's max_concurrent | b p50 idle | b p99 idle | b p50 loaded | b p99 loaded | a answered (503) |
|---|---|---|---|---|---|
"""
for mc in (1, 64):
    (i50, i99), (l50, l99), n = isolation(mc)
    report += f"| {mc} | {i50 * 1000:.2f} | {i99 * 1000:.2f} | {l50 * 1000:.2f} | {l99 * 1000:.2f} | {n} |\n"

with open(os.path.join(out, "report.md"), "w") as f:
    f.write(report)
print(report)
PY
