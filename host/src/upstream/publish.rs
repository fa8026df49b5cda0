//! The pools in `/metrics` and `/status`: whether each backend is up
//! (`gale_upstream_backend_up`), its active checks, and what each DNS name
//! resolved to (`gale_upstream_resolve_total`, `gale_upstream_addresses`).
//!
//! Pools register themselves when built; the renderer walks the live ones
//! (a pool ends with the last Site that uses it) and, while a reload keeps
//! an old pool alive beside a new one of the same name, shows the newest.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use super::UpstreamPool;
use crate::metrics::label;

fn pools() -> &'static Mutex<Vec<Weak<UpstreamPool>>> {
    static P: OnceLock<Mutex<Vec<Weak<UpstreamPool>>>> = OnceLock::new();
    P.get_or_init(|| {
        crate::metrics::register(Box::new(render));
        Mutex::new(Vec::new())
    })
}

pub(super) fn register(pool: &Arc<UpstreamPool>) {
    let mut list = pools().lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|w| w.strong_count() > 0);
    list.push(Arc::downgrade(pool));
}

/// The newest live pool of each name.
fn live() -> Vec<Arc<UpstreamPool>> {
    let list = pools().lock().unwrap_or_else(|e| e.into_inner());
    let mut out: Vec<Arc<UpstreamPool>> = Vec::new();
    for p in list.iter().rev().filter_map(Weak::upgrade) {
        if !out.iter().any(|o| o.config.name == p.config.name) {
            out.push(p);
        }
    }
    out.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    out
}

fn render(out: &mut String) {
    let pools = live();
    let now = Instant::now();
    out.push_str("# HELP gale_upstream_backend_up Whether a backend gets requests (in rotation, passive and active health up).\n");
    out.push_str("# TYPE gale_upstream_backend_up gauge\n");
    for p in &pools {
        for b in &p.members().backends {
            let _ = writeln!(
                out,
                "gale_upstream_backend_up{{upstream=\"{}\",backend=\"{}\"}} {}",
                label(&p.config.name),
                b.addr,
                u8::from(b.usable(now))
            );
        }
    }
    out.push_str("# HELP gale_upstream_health_checks_total Active health checks, by result.\n");
    out.push_str("# TYPE gale_upstream_health_checks_total counter\n");
    for p in pools.iter().filter(|p| p.config.health_check.is_some()) {
        for b in &p.members().backends {
            for (result, n) in [("pass", &b.active.passed), ("fail", &b.active.failed)] {
                let _ = writeln!(
                    out,
                    "gale_upstream_health_checks_total{{upstream=\"{}\",backend=\"{}\",result=\"{result}\"}} {}",
                    label(&p.config.name),
                    b.addr,
                    n.load(Ordering::Relaxed)
                );
            }
        }
    }
    out.push_str("# HELP gale_upstream_resolve_total DNS lookups of an upstream's server names, by result.\n");
    out.push_str("# TYPE gale_upstream_resolve_total counter\n");
    for p in &pools {
        for n in &p.names {
            for (result, c) in [("ok", &n.counters.ok), ("error", &n.counters.error)] {
                let _ = writeln!(
                    out,
                    "gale_upstream_resolve_total{{upstream=\"{}\",name=\"{}\",result=\"{result}\"}} {}",
                    label(&p.config.name),
                    label(&n.status().name),
                    c.load(Ordering::Relaxed)
                );
            }
        }
    }
    out.push_str("# HELP gale_upstream_addresses Addresses a server name resolves to now (the last good answer).\n");
    out.push_str("# TYPE gale_upstream_addresses gauge\n");
    for p in &pools {
        for s in p.names() {
            let _ = writeln!(
                out,
                "gale_upstream_addresses{{upstream=\"{}\",name=\"{}\"}} {}",
                label(&p.config.name),
                label(&s.name),
                s.addresses.len()
            );
        }
    }
}

impl UpstreamPool {
    /// The pool as `/status` shows it.
    pub fn status_json(&self) -> serde_json::Value {
        let now = Instant::now();
        let backends: Vec<_> = self
            .members()
            .backends
            .iter()
            .map(|b| {
                let health = b.active.is_checked().then(|| {
                    serde_json::json!({
                        "state": if b.active.is_up() { "up" } else { "down" },
                        "passed": b.active.passed.load(Ordering::Relaxed),
                        "failed": b.active.failed.load(Ordering::Relaxed),
                        "last_error": b.active.last_error(),
                    })
                });
                serde_json::json!({
                    "address": b.addr.to_string(),
                    "name": b.name,
                    "weight": b.weight,
                    "state": if b.usable(now) { "up" } else { "down" },
                    "passive": if b.health.is_down(now) { "down" } else { "up" },
                    "health_check": health,
                    "in_flight": b.in_flight(),
                    "in_rotation": b.in_rotation(),
                })
            })
            .collect();
        let names: Vec<_> = self
            .names()
            .into_iter()
            .map(|n| {
                serde_json::json!({
                    "name": n.name,
                    "port": n.port,
                    "addresses": n.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "last_error": n.last_error,
                    "age_seconds": n.age_seconds,
                })
            })
            .collect();
        serde_json::json!({
            "name": self.config.name,
            "balance": format!("{:?}", self.config.balance),
            "backends": backends,
            "names": names,
        })
    }
}
