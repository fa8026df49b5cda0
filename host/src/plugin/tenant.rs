//! Tenants: who owns a set of plugins, and what containment their calls get.
//!
//! A tenant has its own plugin directory (its locations never resolve a
//! plugin anywhere else), its limits (memory and time per call), a cap on
//! its plugin calls in flight (`max_concurrent`, a semaphore: a spinning
//! guest holds a worker thread until its deadline, so this is what keeps one
//! tenant from taking every core), a cap on the warm instances it keeps
//! across all its pools (`max_instances`), and one circuit breaker per
//! plugin. Pools stay per attachment, so two tenants attaching the same
//! plugin never share an instance or its guest state; only the compiled
//! code (immutable) is shared.
//!
//! Servers without a tenant use the "global" tenant built from `[global]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::bindings::World;
use super::breaker::{Admit, Breaker, BreakerSettings, BreakerSnapshot, Health, Transition};
use super::error::PluginError;
use super::limits::Limits;
use super::metrics::{self, CallMetrics, Outcome};
use super::pool::Pool;
use super::runtime::PluginRuntime;

/// Everything that defines a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSettings {
    /// The tenant's name (`global` for servers without a tenant); the
    /// `tenant` label of its metrics.
    pub name: String,
    /// Where its plugins are found; the only place.
    pub plugin_dir: PathBuf,
    /// Memory and time per call.
    pub limits: Limits,
    /// Most plugin calls of this tenant running at once; a call that finds
    /// none free waits up to the hook's time limit, then fails (the
    /// attachment's `on_error` decides what that means for the request).
    pub max_concurrent: usize,
    /// Most warm (idle) instances kept across all the tenant's pools; more
    /// are dropped after their call. Bounds the tenant's memory at about
    /// `(max_instances + max_concurrent) * limits.memory`.
    pub max_instances: usize,
    /// When its plugins are quarantined.
    pub breaker: BreakerSettings,
}

/// A tenant's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Tenant {
    inner: Arc<TenantInner>,
}

struct TenantInner {
    settings: TenantSettings,
    /// Newer tenants of the same name (after a reload) win in `/status`.
    generation: u64,
    permits: Arc<Semaphore>,
    idle: AtomicUsize,
    breakers: Mutex<BTreeMap<String, Arc<Breaker>>>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant").field("name", &self.name()).finish_non_exhaustive()
    }
}

/// The key of a plugin within a tenant: `-` and `_` name the same plugin.
pub fn plugin_key(name: &str) -> String {
    name.replace('_', "-")
}

fn live_list() -> &'static Mutex<Vec<Weak<TenantInner>>> {
    static L: OnceLock<Mutex<Vec<Weak<TenantInner>>>> = OnceLock::new();
    L.get_or_init(Default::default)
}

/// The tenants in use (the newest of each name), sorted by name.
pub(crate) fn live() -> Vec<Tenant> {
    let mut list = live_list().lock().unwrap_or_else(PoisonError::into_inner);
    list.retain(|w| w.strong_count() > 0);
    let mut newest: BTreeMap<String, Arc<TenantInner>> = BTreeMap::new();
    for inner in list.iter().filter_map(Weak::upgrade) {
        match newest.get(&inner.settings.name) {
            Some(have) if have.generation > inner.generation => {}
            _ => {
                newest.insert(inner.settings.name.clone(), inner);
            }
        }
    }
    newest.into_values().map(|inner| Tenant { inner }).collect()
}

/// The plugin section of `/status`: every tenant in use with its limits,
/// calls in flight, warm instances, and each plugin's breaker.
pub fn status() -> serde_json::Value {
    serde_json::json!({ "tenants": live().iter().map(Tenant::status).collect::<Vec<_>>() })
}

impl Tenant {
    /// A tenant with fresh state (closed breakers, no instances). A reload
    /// builds new tenants, so it also ends every quarantine.
    pub fn new(settings: TenantSettings) -> Self {
        static GENERATION: AtomicU64 = AtomicU64::new(0);
        let permits = Arc::new(Semaphore::new(settings.max_concurrent.clamp(1, Semaphore::MAX_PERMITS)));
        let inner = Arc::new(TenantInner {
            settings,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            permits,
            idle: AtomicUsize::new(0),
            breakers: Mutex::new(BTreeMap::new()),
        });
        live_list().lock().unwrap_or_else(PoisonError::into_inner).push(Arc::downgrade(&inner));
        Self { inner }
    }

    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.inner.settings.name
    }

    /// Its settings.
    pub fn settings(&self) -> &TenantSettings {
        &self.inner.settings
    }

    /// Its plugin directory.
    pub fn plugin_dir(&self) -> &Path {
        &self.inner.settings.plugin_dir
    }

    /// Plugin calls running now.
    pub fn in_flight(&self) -> usize {
        self.inner.settings.max_concurrent.clamp(1, Semaphore::MAX_PERMITS) - self.inner.permits.available_permits()
    }

    /// Warm instances kept now, across the tenant's pools.
    pub fn idle_instances(&self) -> usize {
        self.inner.idle.load(Ordering::Relaxed)
    }

    /// The breaker of `plugin` (created on first use): one per plugin,
    /// shared by every attachment of it in this tenant.
    pub(crate) fn breaker(&self, plugin: &str) -> Arc<Breaker> {
        let key = plugin_key(plugin);
        let mut breakers = self.inner.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        breakers
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Breaker::new(self.name(), &key, self.inner.settings.breaker)))
            .clone()
    }

    /// Each plugin's name and breaker.
    pub fn breakers(&self) -> Vec<(String, BreakerSnapshot)> {
        let breakers = self.inner.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        breakers.iter().map(|(name, b)| (name.clone(), b.snapshot())).collect()
    }

    /// This tenant as `/status` shows it.
    pub fn status(&self) -> serde_json::Value {
        let s = &self.inner.settings;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let plugins: Vec<_> = self
            .breakers()
            .into_iter()
            .map(|(name, b)| {
                serde_json::json!({
                    "name": name,
                    "breaker": b.state.as_str(),
                    "recent_failures": b.recent_failures,
                    "recent_calls": b.recent_calls,
                    "retry_in_ms": b.retry_in.map(ms),
                })
            })
            .collect();
        serde_json::json!({
            "name": s.name,
            "plugin_dir": s.plugin_dir.display().to_string(),
            "limits": {
                "memory": s.limits.memory,
                "hook_timeout_ms": ms(s.limits.timeout),
                "max_concurrent": s.max_concurrent,
                "max_instances": s.max_instances,
            },
            "breaker": {
                "failures": s.breaker.failures,
                "failure_percent": s.breaker.failure_percent,
                "window_ms": ms(s.breaker.window),
                "backoff_ms": ms(s.breaker.backoff),
                "max_backoff_ms": ms(s.breaker.max_backoff),
            },
            "in_flight": self.in_flight(),
            "idle_instances": self.idle_instances(),
            "plugins": plugins,
        })
    }
}

impl PluginRuntime {
    /// Loads plugin `name` of world `W` for `tenant`: from the tenant's
    /// plugin directory only, under its limits, with its concurrency cap,
    /// warm-instance cap and the plugin's breaker applied to every call.
    pub(crate) async fn load_for<W: World>(
        &self,
        tenant: &Tenant,
        name: &str,
        config: &toml::Table,
    ) -> Result<Arc<Pool<W>>, PluginError> {
        let scope = Scope::new(tenant, name);
        self.load_scoped(tenant.plugin_dir(), name, config, tenant.settings().limits, Some(scope)).await
    }
}

/// Hooks whose series a scope keeps at hand: a world has at most three
/// (`upload-fields`: `needs-sha256`, `text-field`, `file-fields`; setup
/// calls are not counted).
const SERIES_SLOTS: usize = 3;

/// What a pool of a tenant's attachment applies around each call.
pub(crate) struct Scope {
    tenant: Tenant,
    breaker: Arc<Breaker>,
    /// The pool's series, per hook, looked up once: filled in first-use
    /// order and never changed, so a call reads them without a lock.
    series: [OnceLock<(&'static str, Arc<CallMetrics>)>; SERIES_SLOTS],
}

/// An admitted call: holds a concurrency slot until it is settled or
/// dropped. A probe dropped before it reports lets the next call probe.
#[derive(Debug)]
pub(crate) struct Ticket {
    _permit: OwnedSemaphorePermit,
    started: Instant,
    probe: Option<Arc<Breaker>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(breaker) = self.probe.take() {
            breaker.abandon();
        }
    }
}

impl Scope {
    pub(crate) fn new(tenant: &Tenant, plugin: &str) -> Self {
        Self { tenant: tenant.clone(), breaker: tenant.breaker(plugin), series: Default::default() }
    }

    /// The tenant's name.
    pub(crate) fn tenant(&self) -> &str {
        self.tenant.name()
    }

    fn series(&self, hook: &'static str) -> Arc<CallMetrics> {
        let lookup = || (hook, metrics::series(self.tenant.name(), &self.breaker.plugin, hook));
        for slot in &self.series {
            // A free slot is taken for this hook, unless another thread
            // takes it first (for its own hook): then look further.
            let (h, m) = slot.get_or_init(lookup);
            if *h == hook {
                return m.clone();
            }
        }
        // More hooks than slots: the registry (locked) answers.
        lookup().1
    }

    /// Counts a call of `hook` answered from memory (no admission: nothing
    /// runs).
    pub(crate) fn remembered(&self, hook: &'static str) {
        self.series(hook).outcome(Outcome::Remembered);
    }

    /// Admits a call of `plugin`'s `hook`: refused while the plugin is
    /// quarantined; otherwise it waits up to `wait` for one of the tenant's
    /// concurrency slots.
    pub(crate) async fn admit(&self, plugin: &str, hook: &'static str, wait: Duration) -> Result<Ticket, PluginError> {
        let probe = match self.breaker.admit() {
            Admit::Refuse(retry_in) => {
                self.series(hook).outcome(Outcome::Quarantined);
                return Err(PluginError::Quarantined {
                    plugin: plugin.to_owned(),
                    tenant: self.tenant().to_owned(),
                    hook,
                    retry_in,
                });
            }
            Admit::Probe => true,
            Admit::Run => false,
        };
        let permits = self.tenant.inner.permits.clone();
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => Ok(p),
            Err(_) => match tokio::time::timeout(wait, permits.acquire_owned()).await {
                Ok(Ok(p)) => Ok(p),
                _ => Err(()),
            },
        };
        let Ok(permit) = permit else {
            if probe {
                self.breaker.abandon();
            }
            self.series(hook).outcome(Outcome::Busy);
            return Err(PluginError::Busy {
                plugin: plugin.to_owned(),
                tenant: self.tenant().to_owned(),
                hook,
                max_concurrent: self.tenant.settings().max_concurrent,
                waited: wait,
            });
        };
        Ok(Ticket { _permit: permit, started: Instant::now(), probe: probe.then(|| self.breaker.clone()) })
    }

    /// Records how an admitted call ended (`error`: `None` when it ran and
    /// returned): metrics, and the breaker, which every call feeds (its
    /// window counts them) and only limit hits can open (see
    /// [`PluginError::is_limit_hit`]). Frees the concurrency slot.
    pub(crate) fn settle(&self, mut ticket: Ticket, hook: &'static str, error: Option<&PluginError>) {
        let series = self.series(hook);
        let now = Instant::now();
        series.observe(now.saturating_duration_since(ticket.started));
        let outcome = match error {
            None => Outcome::Ok,
            Some(PluginError::Timeout { .. }) => Outcome::Timeout,
            Some(PluginError::MemoryLimit { .. }) => Outcome::MemoryLimit,
            // A trap, or a fresh instance that failed to set up.
            Some(_) => Outcome::Trap,
        };
        series.outcome(outcome);
        let probe = ticket.probe.take().is_some();
        let health = match error {
            Some(e) if e.is_limit_hit() => Health::LimitHit,
            _ => Health::WithinLimits,
        };
        if let Some(Transition::Opened { .. }) = self.breaker.record(now, health, probe, hook) {
            series.quarantine();
        }
    }

    /// Reserves a warm-instance slot of the tenant; false when it has
    /// `max_instances` already.
    pub(crate) fn keep_idle(&self) -> bool {
        let max = self.tenant.settings().max_instances;
        self.tenant.inner.idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
    }

    /// Gives back `n` warm-instance slots (instances taken or dropped).
    pub(crate) fn release_idle(&self, n: usize) {
        if n > 0 {
            self.tenant.inner.idle.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::BreakerState;

    fn settings(name: &str, max_concurrent: usize, max_instances: usize) -> TenantSettings {
        TenantSettings {
            name: name.into(),
            plugin_dir: "/nonexistent".into(),
            limits: Limits::default(),
            max_concurrent,
            max_instances,
            breaker: BreakerSettings { failures: 2, ..BreakerSettings::default() },
        }
    }

    fn trap() -> PluginError {
        PluginError::Trap { plugin: "p".into(), hook: "on-request", trap: "unreachable".into() }
    }

    fn timeout() -> PluginError {
        PluginError::Timeout { plugin: "p".into(), hook: "on-request", limit: Duration::from_millis(5) }
    }

    #[tokio::test]
    async fn concurrency_is_capped_per_tenant_and_waits_briefly() {
        let tenant = Tenant::new(settings("tenant-test-cap", 1, 4));
        let scope = Scope::new(&tenant, "p");
        let first = scope.admit("p", "on-request", Duration::from_millis(5)).await.expect("a slot is free");
        assert_eq!(tenant.in_flight(), 1);
        let started = Instant::now();
        let busy = scope.admit("p", "on-request", Duration::from_millis(20)).await.expect_err("no slot");
        assert!(matches!(busy, PluginError::Busy { max_concurrent: 1, .. }), "{busy}");
        assert!(busy.is_call_error());
        assert!(started.elapsed() >= Duration::from_millis(20));
        // Another tenant is not affected.
        let other = Tenant::new(settings("tenant-test-cap-other", 1, 4));
        let ticket = Scope::new(&other, "p").admit("p", "on-request", Duration::ZERO).await.expect("own slots");
        drop(ticket);
        // A slot freed while waiting is taken.
        let waiter = tokio::spawn(async move {
            let scope = Scope::new(&tenant, "p");
            scope.admit("p", "on-request", Duration::from_secs(5)).await.map(|_| ())
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        scope.settle(first, "on-request", None);
        waiter.await.expect("task").expect("admitted once the slot was freed");
    }

    #[tokio::test]
    async fn limit_hits_quarantine_the_plugin_for_every_attachment_of_the_tenant() {
        let tenant = Tenant::new(settings("tenant-test-breaker", 8, 4));
        let a = Scope::new(&tenant, "test_loop");
        let b = Scope::new(&tenant, "test-loop");
        for scope in [&a, &b] {
            let t = scope.admit("test-loop", "on-request", Duration::ZERO).await.expect("admitted");
            scope.settle(t, "on-request", Some(&timeout()));
        }
        let refused = a.admit("test-loop", "on-response", Duration::ZERO).await.expect_err("quarantined");
        assert!(matches!(refused, PluginError::Quarantined { .. }), "{refused}");
        assert!(refused.to_string().contains("tenant-test-breaker"), "{refused}");
        let breakers = tenant.breakers();
        assert_eq!(breakers[0].0, "test-loop");
        assert_eq!(breakers[0].1.state, BreakerState::Open);
        // Another tenant's breaker for the same plugin is its own.
        let other = Tenant::new(settings("tenant-test-breaker-2", 8, 4));
        assert!(Scope::new(&other, "test-loop").admit("test-loop", "on-request", Duration::ZERO).await.is_ok());
        let status = status();
        let tenants = status["tenants"].as_array().expect("list");
        let mine = tenants.iter().find(|t| t["name"] == "tenant-test-breaker").expect("listed");
        assert_eq!(mine["plugins"][0]["breaker"], "open");
    }

    #[tokio::test]
    async fn traps_never_quarantine_the_plugin_and_a_trapping_probe_ends_a_quarantine() {
        let tenant = Tenant::new(settings("tenant-test-traps", 8, 4));
        let scope = Scope::new(&tenant, "test-trap");
        // Far more traps than `failures`, and nothing else: every call is still admitted.
        for _ in 0..50 {
            let t = scope.admit("test-trap", "on-request", Duration::ZERO).await.expect("never quarantined");
            scope.settle(t, "on-request", Some(&trap()));
        }
        let snapshot = tenant.breakers()[0].1;
        assert_eq!((snapshot.state, snapshot.recent_failures, snapshot.recent_calls), (BreakerState::Closed, 0, 50));
        // Two limit hits among 52 calls: 2 is `failures`, but far below half of the calls.
        for _ in 0..2 {
            let t = scope.admit("test-trap", "on-request", Duration::ZERO).await.expect("admitted");
            scope.settle(t, "on-request", Some(&timeout()));
        }
        assert_eq!(tenant.breakers()[0].1.state, BreakerState::Closed);
        // Busy refusals (the tenant's cap) do not count either: they never reach the breaker.
        assert!(
            !PluginError::Busy {
                plugin: "p".into(),
                tenant: "t".into(),
                hook: "on-request",
                max_concurrent: 1,
                waited: Duration::ZERO
            }
            .is_limit_hit()
        );

        // A tenant whose plugin does hit its limits is quarantined; a probe that traps (the
        // request's own input) ends the quarantine: the plugin ran within its limits.
        let spinning = Tenant::new(s_with_backoff("tenant-test-traps-2", Duration::from_millis(1)));
        let scope = Scope::new(&spinning, "test-trap");
        for _ in 0..2 {
            let t = scope.admit("test-trap", "on-request", Duration::ZERO).await.expect("admitted");
            scope.settle(t, "on-request", Some(&timeout()));
        }
        assert_eq!(spinning.breakers()[0].1.state, BreakerState::Open);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let probe = scope.admit("test-trap", "on-request", Duration::ZERO).await.expect("the probe");
        assert!(probe.probe.is_some());
        scope.settle(probe, "on-request", Some(&trap()));
        assert_eq!(spinning.breakers()[0].1.state, BreakerState::Closed);
    }

    fn s_with_backoff(name: &str, backoff: Duration) -> TenantSettings {
        let mut s = settings(name, 8, 4);
        s.breaker.backoff = backoff;
        s
    }

    #[test]
    fn warm_instances_are_capped_per_tenant() {
        let tenant = Tenant::new(settings("tenant-test-idle", 1, 2));
        let a = Scope::new(&tenant, "a");
        let b = Scope::new(&tenant, "b");
        assert!(a.keep_idle());
        assert!(b.keep_idle());
        assert!(!a.keep_idle(), "the cap is across the tenant's pools");
        b.release_idle(1);
        assert!(a.keep_idle());
        assert_eq!(tenant.idle_instances(), 2);
    }
}
