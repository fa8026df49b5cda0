//! The supervisor wired to the live [`Site`]: each supervised child's
//! backend in its pool is moved in and out of rotation through a
//! [`Rotation`] hook, a reload points the children at the new pools, and
//! the children show in `/status` and `/metrics`. The supervisor itself
//! stays a leaf that knows nothing of pools; `main.rs` calls these.

use std::sync::Arc;

use crate::site::Site;
use crate::supervisor::{Handover, Rotation, Supervisor, SupervisorError};
use crate::upstream;

/// Starts the children of `site`'s supervised upstreams (see
/// [`Supervisor::start`]): returns once each accepts or has failed its
/// first start. After an upgrade, the slots whose child the old gale runs
/// (`handover`) are inherited instead.
pub async fn start(site: &Site, handover: Option<&Handover>) -> Result<Arc<Supervisor>, SupervisorError> {
    Supervisor::start(&site.config, |u, i| hook(site, u, i, None), handover).await
}

/// The supervisor's hook into a pool backend: in rotation only while its
/// child accepts; a fresh child starts with a clean health record and
/// without idle connections to its predecessor. After a reload rebuilt the
/// pool, requests still in flight on the old pool's backend count too.
struct PoolRotation {
    backend: Arc<upstream::Backend>,
    previous: Option<Arc<upstream::Backend>>,
}

impl Rotation for PoolRotation {
    fn set_in_rotation(&self, on: bool) {
        for b in std::iter::once(&self.backend).chain(&self.previous) {
            if on && !b.in_rotation() {
                b.health.reset();
                // A new process that passed its start-up check (or accepts).
                b.active.reset();
                b.conns.clear_idle();
            }
            b.set_in_rotation(on);
        }
    }

    fn in_flight(&self) -> usize {
        self.backend.in_flight() + self.previous.as_ref().map_or(0, |b| b.in_flight())
    }
}

/// The hook for backend `index` of `site.upstreams[upstream]`; `previous`
/// is the site it replaces, whose pool for the same upstream may differ.
fn hook(site: &Site, upstream: usize, index: usize, previous: Option<&Site>) -> Arc<dyn Rotation> {
    let pool = &site.upstreams[upstream];
    let backend = pool.fixed()[index].clone();
    let previous = previous
        .and_then(|old| old.upstreams.iter().find(|p| p.config.name == pool.config.name))
        .filter(|old| !Arc::ptr_eq(old, pool))
        .and_then(|old| old.fixed().get(index).cloned())
        .filter(|b| b.addr == backend.addr);
    Arc::new(PoolRotation { backend, previous })
}

/// Points the supervisor at `site`'s pools.
pub fn attach(children: &Supervisor, site: &Site, previous: Option<&Site>) {
    for (u, pool) in site.upstreams.iter().enumerate() {
        let Some(process) = &pool.config.process else { continue };
        let hooks = (0..process.count).map(|i| hook(site, u, i, previous)).collect();
        if let Err(e) = children.attach(&pool.config.name, hooks, pool.config.health_check.clone()) {
            tracing::error!("cannot attach the children of `{}` to the new pool: {e}", pool.config.name);
        }
    }
}

/// The children in `/status` (`"children": [...]`) and `/metrics`
/// (`gale_child_state`, `gale_child_restarts_total`).
pub fn publish(children: &Arc<Supervisor>) {
    if children.is_empty() {
        return;
    }
    let weak = Arc::downgrade(children);
    crate::admin::add_status_section(Box::new(move || {
        let list: Vec<serde_json::Value> = weak
            .upgrade()
            .map(|s| s.status())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                serde_json::json!({
                    "upstream": c.upstream,
                    "index": c.index,
                    "port": c.port,
                    "state": c.state.to_string(),
                    "pid": c.pid,
                    "restarts": c.restarts,
                    "last_exit": c.last_exit,
                })
            })
            .collect();
        ("children".to_owned(), serde_json::Value::Array(list))
    }));
    let weak = Arc::downgrade(children);
    crate::metrics::register(Box::new(move |out: &mut String| {
        use std::fmt::Write as _;
        let Some(children) = weak.upgrade() else { return };
        let status = children.status();
        let _ = writeln!(out, "# HELP gale_child_state Supervised child state (1 = current).");
        let _ = writeln!(out, "# TYPE gale_child_state gauge");
        for c in &status {
            for state in ["starting", "running", "backoff", "failed", "stopping", "stopped", "inherited"] {
                let on = u8::from(c.state.to_string() == state);
                let _ = writeln!(
                    out,
                    "gale_child_state{{upstream=\"{}\",index=\"{}\",state=\"{state}\"}} {on}",
                    crate::metrics::label(&c.upstream),
                    c.index
                );
            }
        }
        let _ = writeln!(out, "# HELP gale_child_restarts_total Starts of a supervised child after its first.");
        let _ = writeln!(out, "# TYPE gale_child_restarts_total counter");
        for c in &status {
            let _ = writeln!(
                out,
                "gale_child_restarts_total{{upstream=\"{}\",index=\"{}\"}} {}",
                crate::metrics::label(&c.upstream),
                c.index,
                c.restarts
            );
        }
    }));
}
