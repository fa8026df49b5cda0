#!/usr/bin/env python3
"""Turns one h2load run into the JSON record bench/run.sh writes for wrk (see wrk-report.lua).

    python3 bench/h2load_json.py H2LOAD_OUTPUT H2LOAD_LOG_FILE

h2load prints totals (requests, status classes, bytes, duration) but only min/max/mean/sd of the
latency; the percentiles come from its --log-file (one line per request: start time in µs since the
epoch, HTTP status or -1 when the stream failed, elapsed µs). Exits with 1 and a message on stderr
when the output is not a finished HTTP/2 run.
"""

import json
import re
import sys


def duration_us(text):
    m = re.search(r"^finished in ([0-9.]+)(ms|s)\b", text, re.M)
    if not m:
        raise ValueError("no 'finished in' line")
    value = float(m.group(1))
    return int(value * (1e3 if m.group(2) == "ms" else 1e6))


def counts(text, label, names):
    m = re.search(rf"^{label}: (.*)$", text, re.M)
    if not m:
        raise ValueError(f"no '{label}:' line")
    found = dict((k, int(v)) for v, k in re.findall(r"(\d+) (\w+)", m.group(1)))
    return [found.get(n, 0) for n in names]


def percentile(sorted_values, p):
    if not sorted_values:
        return 0
    i = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[i]


def main():
    out_path, log_path = sys.argv[1], sys.argv[2]
    text = open(out_path, errors="replace").read()
    try:
        proto = re.search(r"^Application protocol: (\S+)", text, re.M)
        if not proto or proto.group(1) != "h2":
            raise ValueError(f"application protocol {proto.group(1) if proto else 'missing'}, expected h2")
        started, done, failed, errored, timeout = counts(
            text, "requests", ["started", "done", "failed", "errored", "timeout"])
        s2, s3, s4, s5 = counts(text, "status codes", ["2xx", "3xx", "4xx", "5xx"])
        traffic = re.search(r"^traffic: \S+ \((\d+)\) total", text, re.M)
        if not traffic:
            raise ValueError("no 'traffic:' line")
        elapsed = []
        with open(log_path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[1] != "-1":
                    elapsed.append(int(parts[2]))
        elapsed.sort()
        record = {
            # As wrk counts: every answered request; non-2xx/3xx answers are status errors.
            "requests": s2 + s3 + s4 + s5,
            "duration_us": duration_us(text),
            "bytes": int(traffic.group(1)),
            "connect_errors": 0,
            "read_errors": failed,
            "write_errors": 0,
            "status_errors": s4 + s5,
            "timeouts": timeout,
            "mean_us": round(sum(elapsed) / len(elapsed), 1) if elapsed else 0,
            "p50_us": percentile(elapsed, 50),
            "p90_us": percentile(elapsed, 90),
            "p99_us": percentile(elapsed, 99),
            "max_us": elapsed[-1] if elapsed else 0,
            "protocol": "h2",
            "streams_in_flight_at_end": max(0, started - done),
            "errored": errored,
            "logged": len(elapsed),
        }
    except (ValueError, OSError) as e:
        print(f"{out_path}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
