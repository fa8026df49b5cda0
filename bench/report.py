#!/usr/bin/env python3
"""Turns the raw records bench/run.sh wrote (results.jsonl, meta.json) into Markdown tables.

    python3 bench/report.py bench/out/RUN            # prints the report
    python3 bench/report.py bench/out/RUN -o FILE    # also writes it to FILE

Every figure is the median over the rounds of one run; ratios are taken between medians of the
same run (never across runs: figures drift from machine to machine and run to run).
"""

import argparse
import json
import statistics
import sys
from collections import OrderedDict
from pathlib import Path

# Row order inside a scenario; anything else follows in the order it was recorded.
TARGET_ORDER = ["gale", "gale-base", "gale-one-core", "gale-noplugins", "gale-idle", "gale-uploading", "direct-idle", "direct-uploading", "nginx", "haproxy", "md5sum"]


def load(run_dir):
    records = []
    with open(run_dir / "results.jsonl") as f:
        for line in f:
            line = line.strip()
            if line:
                records.append(json.loads(line))
    meta_path = run_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return meta, records


def ordered(targets):
    known = [t for t in TARGET_ORDER if t in targets]
    return known + [t for t in targets if t not in known]


def ms(us):
    return f"{us / 1000:.2f} ms"


def pct(x):
    return "—" if x is None else f"{100 * x:.0f}%"


def ratio(a, b):
    if not b:
        return "—"
    return f"{a / b:.2f}x"


def group(records, kind):
    """scenario -> target -> [records], scenarios and targets in recorded order."""
    out = OrderedDict()
    for r in records:
        if r.get("kind") != kind:
            continue
        out.setdefault(r["scenario"], OrderedDict()).setdefault(r["target"], []).append(r)
    return out


def plugin_cost(scenario, med, attachments):
    """The plugin cost of a run that has gale and a plugin-free gale (proxy-plugins), per request
    and per attachment: issue 3's figures. An attachment has at most two hooks; the bundled header
    policy declares only the hooks its config uses, so per attachment is per hook called."""
    if "gale" not in med or "gale-noplugins" not in med:
        return None
    with_rps, without_rps = med["gale"]["rps"], med["gale-noplugins"]["rps"]
    if not with_rps or not without_rps:
        return None
    cost = 1e6 / with_rps - 1e6 / without_rps
    text = (f"{scenario}: gale with plugins at {with_rps / without_rps:.2f}x plugin-free gale; the plugins cost "
            f"{cost:.1f} µs per request")
    if attachments:
        noun = "attachment" if attachments == 1 else "attachments"
        text += (f", {cost / attachments:.1f} µs per attachment ({attachments} {noun}; at most two hooks each, "
                 f"only the declared ones called)")
    return text + " (medians; issue 3's target: ≤ 5 µs per hook, ≥ 0.9x)."


def http_table(records, notes):
    groups = group(records, "http")
    if not groups:
        return []
    attachments = {r["scenario"]: r["count"] for r in records if r.get("kind") == "attachments"}
    costs = []
    lines = [
        "| scenario | proxy | req/s (median) | req/s min–max | MiB/s | p50 | p99 | req/s ratio | p99 ratio | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, by_target in groups.items():
        med = {}
        for target, rs in by_target.items():
            rps = [r["requests"] / (r["duration_us"] / 1e6) for r in rs]
            med[target] = {
                "rps": statistics.median(rps),
                "min": min(rps),
                "max": max(rps),
                "mibps": statistics.median(r["bytes"] / (r["duration_us"] / 1e6) / 2**20 for r in rs),
                "p50": statistics.median(r["p50_us"] for r in rs),
                "p99": statistics.median(r["p99_us"] for r in rs),
                "errors": sum(
                    r["connect_errors"] + r["read_errors"] + r["write_errors"]
                    + r["status_errors"] + r["timeouts"]
                    for r in rs
                ),
            }
        cost = plugin_cost(scenario, med, attachments.get(scenario))
        if cost:
            costs.append(cost)
        if "gale" in med and "gale-base" in med and med["gale-base"]["rps"]:
            costs.append(
                f"{scenario}: gale at {med['gale']['rps'] / med['gale-base']['rps']:.2f}x gale-base's req/s, "
                f"p99 {ratio(med['gale']['p99'], med['gale-base']['p99'])} gale-base's (GALE_BASE_BIN; medians)."
            )
        # Ratios are to nginx; upload-p99 compares each row to the same path while idle.
        label = scenario + (f" ({notes[scenario]})" if scenario in notes else "")
        for target in ordered(list(med)):
            base = med.get("nginx") or med.get(target.split("-")[0] + "-idle")
            m = med[target]
            lines.append(
                f"| {label} | {target} | {m['rps']:,.0f} | {m['min']:,.0f}–{m['max']:,.0f} "
                f"| {m['mibps']:,.1f} | {ms(m['p50'])} | {ms(m['p99'])} "
                f"| {ratio(m['rps'], base['rps']) if base else '—'} "
                f"| {ratio(m['p99'], base['p99']) if base else '—'} | {m['errors']} |"
            )
    lines += [
        "",
        "Ratios are to nginx in the same run (in upload-p99, to the same path while idle: `gale-idle`, "
        "`direct-idle`); a p99 ratio below 1 is "
        "better than nginx. MiB/s counts response bytes including headers. Errors: wrk's connect, "
        "read, write and timeout errors (h2load: failed streams and timeouts) plus non-2xx/3xx "
        "answers, over all rounds.",
    ]
    if costs:
        lines += [""] + costs
    return lines


def idle_table(records, notes):
    groups = group(records, "idle")
    lines = []
    for scenario, by_target in groups.items():
        n = next(iter(by_target.values()))[0]["connections"]
        note = f" Note: {notes[scenario]}." if scenario in notes else ""
        lines += [
            f"Scenario `{scenario}`: {n} idle keep-alive connections (one request each, then idle); "
            f"VmRSS of the serving process (nginx: its worker); growth per connection actually open.{note}",
            "",
            "| proxy | RSS before | RSS with connections open | growth per connection | RSS vs nginx | open / still open / failed |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        med = {}
        for target, rs in by_target.items():
            med[target] = {
                "before": statistics.median(r["rss_before_kb"] for r in rs),
                "after": statistics.median(r["rss_after_kb"] for r in rs),
                "opened": min(r["opened"] for r in rs),
                "alive": min(r["alive"] for r in rs),
                "failed": max(r["failed"] for r in rs),
            }
        base = med.get("nginx")
        for target in ordered(list(med)):
            m = med[target]
            per = (m["after"] - m["before"]) * 1024 / m["opened"] if m["opened"] else 0
            lines.append(
                f"| {target} | {m['before'] / 1024:.1f} MiB | {m['after'] / 1024:.1f} MiB "
                f"| {per:,.0f} B | {ratio(m['after'], base['after']) if base else '—'} "
                f"| {m['opened']} / {m['alive']} / {m['failed']} |"
            )
        lines.append("")
    return lines


def upload_table(records, notes):
    groups = group(records, "upload")
    lines = []
    for scenario, by_target in groups.items():
        size = next(iter(by_target.values()))[0]["bytes"]
        note = f" Note: {notes[scenario]}." if scenario in notes else ""
        lines += [
            f"Scenario `{scenario}`: {size / 2**20:,.0f} MiB, gale (multipart POST to /upload) versus "
            f"`md5sum` of the same file (page cache warm).{note}",
            "",
            "| what | MiB/s (median) | vs md5sum | CPU s per GiB | peak RSS growth | statuses |",
            "|---|---:|---:|---:|---:|---|",
        ]
        med = {}
        for target, rs in by_target.items():
            # Only uploads gale accepted count: a quick 413 or 400 is not a throughput.
            ok = [r for r in rs if target == "md5sum" or 200 <= r.get("status", 0) < 300]
            med[target] = {
                "mibps": statistics.median(r["bytes"] / r["seconds"] / 2**20 for r in ok) if ok else None,
                "growth": max((r.get("hwm_kb", 0) - r.get("rss_before_kb", 0)) for r in rs),
                "statuses": ",".join(sorted({str(r.get("status", "")) for r in rs})),
                # Older runs did not record CPU time.
                "cpu": statistics.median(r["cpu_seconds"] * 2**30 / r["bytes"] for r in ok)
                if ok and all("cpu_seconds" in r for r in ok)
                else None,
            }
        base = med.get("md5sum")
        for target in ordered(list(med)):
            m = med[target]
            growth = f"{m['growth'] / 1024:.1f} MiB" if target != "md5sum" else "—"
            cpu = "—" if m["cpu"] is None else f"{m['cpu']:.2f}"
            if m["mibps"] is None:
                lines.append(f"| {target} | no successful upload | — | {cpu} | {growth} | {m['statuses']} |")
                continue
            lines.append(
                f"| {target} | {m['mibps']:,.0f} | {ratio(m['mibps'], base['mibps']) if base and base['mibps'] else '—'} "
                f"| {cpu} | {growth} | {m['statuses'] if target != 'md5sum' else '—'} |"
            )
        steal = sum(r.get("steal_seconds", 0) for rs in by_target.values() for r in rs)
        if steal:
            lines += ["", f"The hypervisor took {steal:.2f} s of CPU time from this machine during the uploads (steal)."]
        lines += paired_upload_ratios(by_target)
        lines.append("")
    return lines


def paired_upload_ratios(by_target):
    """Each round runs md5sum and then the uploads, a minute apart at most: on a host whose speed
    drifts, the ratio within a round is steadier than the ratio of the two medians."""
    md5sum = {r["round"]: r["bytes"] / r["seconds"] for r in by_target.get("md5sum", [])}
    lines = []
    for target in ordered([t for t in by_target if t != "md5sum"]):
        pairs = [
            (r["bytes"] / r["seconds"]) / md5sum[r["round"]]
            for r in by_target[target]
            if r["round"] in md5sum and 200 <= r.get("status", 0) < 300
        ]
        if pairs:
            listed = ", ".join(f"{p:.2f}x" for p in pairs)
            lines += ["", f"Per round, {target} against md5sum: {listed}; median {statistics.median(pairs):.2f}x."]
    return lines


def handshake_table(records, notes):
    """tls-handshake: full TLS handshakes (one request each) per second, and the proxy's CPU time
    per handshake, which stays comparable when the load generator and not the proxy is the limit."""
    groups = group(records, "handshake")
    lines = []
    for scenario, by_target in groups.items():
        note = f" ({notes[scenario]})" if scenario in notes else ""
        resumed = any(r.get("resume") for rs in by_target.values() for r in rs)
        kind = ("resumed handshakes (TLS 1.3 tickets from earlier connections)" if resumed
                else "full handshakes (no session resumption)")
        lines += [
            f"Scenario `{scenario}`{note}: a new TLS connection per request, {kind}.",
            "",
            "| proxy | handshakes/s (median) | min–max | p50 | p99 | proxy CPU | client CPU "
            "| CPU per handshake | hs/s ratio | CPU/hs ratio | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        med = {}
        for target, rs in by_target.items():
            rates = [r["connections"] / r["seconds"] for r in rs]
            per = [r["cpu_seconds"] / r["connections"] * 1e6 for r in rs if r["connections"]]
            med[target] = {
                "rate": statistics.median(rates),
                "min": min(rates),
                "max": max(rates),
                "p50": statistics.median(r["p50_us"] for r in rs),
                "p99": statistics.median(r["p99_us"] for r in rs),
                "cpu": statistics.median(r["cpu_seconds"] / r["cpu_wall_seconds"] for r in rs),
                "client": statistics.median(r["client_cpu_seconds"] / r["seconds"] for r in rs)
                if all("client_cpu_seconds" in r for r in rs) else None,
                "per": statistics.median(per) if per else 0,
                "errors": sum(r["errors"] for r in rs),
            }
        base = med.get("nginx")
        for target in ordered(list(med)):
            m = med[target]
            lines.append(
                f"| {target} | {m['rate']:,.0f} | {m['min']:,.0f}–{m['max']:,.0f} | {ms(m['p50'])} "
                f"| {ms(m['p99'])} | {100 * m['cpu']:.0f}% | {pct(m['client'])} | {m['per']:,.0f} µs "
                f"| {ratio(m['rate'], base['rate']) if base else '—'} "
                f"| {ratio(m['per'], base['per']) if base else '—'} | {m['errors']} |"
            )
        lines += [
            "",
            "p50/p99: one connection from connect to close (handshake, request, answer). Proxy CPU: "
            "the serving process's user+system time over the round's wall time (nginx: its worker); "
            "near 100% means the proxy was the limit. Client CPU: hsload's, over its own run (all threads, one "
            "core: LOAD_CPU, shared with the upstreams); when neither is near 100%, the load side was "
            "starved by something else on its core. CPU per handshake is that time divided by the "
            "connections (lower is better; a CPU/hs ratio below 1 beats nginx). Errors: failed "
            "connections, non-200 answers, and handshakes of the wrong kind (resumed in tls-handshake, "
            "full after a client's first in tls-resume), over all rounds.",
            "",
        ]
    return lines


def render(meta, records):
    notes = {}
    for r in records:
        if r.get("kind") == "note":
            notes[r["scenario"]] = "; ".join(filter(None, [notes.get(r["scenario"]), r["text"]]))
    out = []
    if meta:
        out += [
            f"Run `{meta.get('run', '?')}` on {meta.get('date', '?')}: {meta.get('cpu', '?')}, "
            f"{meta.get('cores', '?')} cores, Linux {meta.get('kernel', '?')}.",
            f"Settings: ROUNDS={meta.get('rounds')} DURATION={meta.get('duration')} "
            f"CONNECTIONS={meta.get('connections')} WRK_THREADS={meta.get('wrk_threads')}; "
            f"proxies on CPU {meta.get('proxy_cpu')}, load generator and upstreams on CPU "
            f"{meta.get('load_cpu')}.",
            f"Versions: gale {meta.get('gale', '?')}, {meta.get('nginx', '?')}, "
            f"{meta.get('haproxy', '?')}, {meta.get('wrk', '?')}"
            + "".join(f", {meta[k]}" for k in ("h2load", "openssl") if meta.get(k))
            + ". Load average at start: "
            f"{meta.get('loadavg', '?')}.",
            "",
        ]
    table = http_table(records, notes)
    if table:
        out += table + [""]
    out += handshake_table(records, notes)
    out += idle_table(records, notes)
    out += upload_table(records, notes)
    skips = [r for r in records if r.get("kind") == "skip"]
    if skips:
        out.append("Skipped:")
        out += [f"- `{r['scenario']}`: {r['reason']}" for r in skips]
        out.append("")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    meta, records = load(args.run_dir)
    text = render(meta, records)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
