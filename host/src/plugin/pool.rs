//! Warm instances of one plugin attachment, and the one call protocol every
//! world's hooks go through ([`Pool::call`]): admit, take an instance, arm
//! the limits, run the hook, settle; the instance is kept on success and
//! discarded on any failure (a trapped instance cannot be entered again, and
//! one that hit a limit may be in any state).
//!
//! A pool belongs to one attachment: instances (and the guest state they
//! carry between requests) are never shared across plugins, configs or
//! tenants. A tenant's pool also has a [`Scope`]: its calls are admitted by
//! the plugin's circuit breaker and the tenant's concurrency cap, counted in
//! the metrics, and its warm instances count against the tenant's cap.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;
use std::time::Duration;

use wasmtime::{Store, Trap};

use super::bindings::World;
use super::error::PluginError;
use super::host::{Ctx, Shared};
use super::limits::{Limits, deadline_ticks};
use super::runtime::Inner;
use super::tenant::Scope;

/// One instance and its store.
pub(crate) struct Instance<W> {
    pub(crate) store: Store<Ctx>,
    pub(crate) bindings: W,
}

/// The warm pool of one attachment.
pub(crate) struct Pool<W: World> {
    runtime: Arc<Inner>,
    pre: W::Pre,
    pub(crate) shared: Arc<Shared>,
    config: Arc<str>,
    limits: Limits,
    idle: Mutex<Vec<Instance<W>>>,
    /// The tenant's containment; `None` for a pool loaded without a tenant.
    scope: Option<Scope>,
    /// What the plugin declared about itself once configured (asked at
    /// warm-up; the world's default until then).
    declared: OnceLock<W::Declared>,
}

/// The host-side deadline fired while the guest was parked in a host call
/// (e.g. sleeping), where the epoch cannot interrupt it.
#[derive(Debug)]
struct HostDeadline;

impl std::fmt::Display for HostDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("host deadline elapsed")
    }
}

impl std::error::Error for HostDeadline {}

impl<W: World> Pool<W> {
    pub(crate) fn new(runtime: Arc<Inner>, name: &str, pre: W::Pre, config: Arc<str>, limits: Limits) -> Self {
        Self {
            runtime,
            pre,
            shared: Arc::new(Shared::new(name)),
            config,
            limits,
            idle: Mutex::new(Vec::new()),
            scope: None,
            declared: OnceLock::new(),
        }
    }

    /// Puts the pool under a tenant's containment (before first use).
    pub(crate) fn with_scope(mut self, scope: Option<Scope>) -> Self {
        self.scope = scope;
        self
    }

    /// The tenant the pool belongs to, when it was loaded for one.
    pub(crate) fn tenant(&self) -> Option<&str> {
        self.scope.as_ref().map(Scope::tenant)
    }

    /// The plugin's name, as attached.
    pub(crate) fn name(&self) -> &str {
        &self.shared.name
    }

    /// Creates the first instance (which validates the config through
    /// `configure`), asks it what it declares about itself (see
    /// [`Self::declared`]) and keeps it warm.
    pub(crate) async fn warm_up(&self) -> Result<(), PluginError> {
        let mut instance = self.fresh().await?;
        let limit = self.limits.setup_timeout;
        self.arm(&mut instance, limit);
        let declared = self.run_borrowed(limit, instance.bindings.declared(&mut instance.store)).await;
        match declared {
            Ok(declared) => {
                let _ = self.declared.set(declared);
            }
            Err(e) => return Err(self.classify("declare", &e, &instance.store, limit)),
        }
        self.put(instance);
        Ok(())
    }

    /// What the configured plugin declared about itself at warm-up (for a
    /// header policy: the hooks it wants called). It depends on the config
    /// only, which never changes for a pool.
    pub(crate) fn declared(&self) -> &W::Declared {
        self.declared.get_or_init(W::Declared::default)
    }

    /// Counts a call of `hook` answered from memory in the tenant's metrics.
    pub(crate) fn remembered(&self, hook: &'static str) {
        if let Some(scope) = &self.scope {
            scope.remembered(hook);
        }
    }

    /// The call protocol of every hook of every world: admit the call (in
    /// a tenant's pool: refused while the plugin is quarantined, else it
    /// waits up to the hook's time limit for one of the tenant's concurrency
    /// slots), take a warm instance (or make a fresh one), arm its limits,
    /// run `call`, and settle the outcome: the instance goes back to the
    /// pool after a call that returned and is dropped after one that failed
    /// (with the error classified); the tenant's metrics and the plugin's
    /// breaker record the outcome, and the slot is freed.
    ///
    /// `call` is given the instance and must hand it back with the hook's
    /// result, e.g. `|mut i| async move { let r = i.bindings.f(&mut
    /// i.store).await; (i, r) }`: owning the instance (rather than borrowing
    /// it) lets the call's future borrow the caller's arguments freely, and
    /// a call cut off by the host deadline simply drops it.
    ///
    /// What the caller does with the value (converting or validating it) is
    /// not part of the call: an invalid answer keeps its instance, and the
    /// breaker counts the call as one that ran within its limits.
    pub(crate) async fn call<T, Fut>(
        &self,
        hook: &'static str,
        call: impl FnOnce(Instance<W>) -> Fut,
    ) -> Result<T, PluginError>
    where
        Fut: Future<Output = (Instance<W>, wasmtime::Result<T>)>,
    {
        let ticket = match &self.scope {
            Some(scope) => Some(scope.admit(self.name(), hook, self.limits.timeout).await?),
            None => None,
        };
        let result = self.run_call(hook, call).await;
        if let (Some(scope), Some(ticket)) = (&self.scope, ticket) {
            scope.settle(ticket, hook, result.as_ref().err());
        }
        result
    }

    /// [`Self::call`] once admitted: instance, limits, run, keep or drop.
    async fn run_call<T, Fut>(
        &self,
        hook: &'static str,
        call: impl FnOnce(Instance<W>) -> Fut,
    ) -> Result<T, PluginError>
    where
        Fut: Future<Output = (Instance<W>, wasmtime::Result<T>)>,
    {
        let mut instance = self.instance().await?;
        let limit = self.limits.timeout;
        self.arm(&mut instance, limit);
        match self.run(limit, call(instance)).await {
            Ok((instance, Ok(value))) => {
                self.put(instance);
                Ok(value)
            }
            Ok((instance, Err(error))) => Err(self.classify(hook, &error, &instance.store, limit)),
            Err(HostDeadline) => Err(PluginError::Timeout { plugin: self.name().to_owned(), hook, limit }),
        }
    }

    /// A warm instance, or a fresh one.
    async fn instance(&self) -> Result<Instance<W>, PluginError> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match idle {
            Some(instance) => {
                if let Some(scope) = &self.scope {
                    scope.release_idle(1);
                }
                Ok(instance)
            }
            None => self.fresh().await,
        }
    }

    /// Runs `call` (one guest call on an instance armed by [`Self::arm`])
    /// under the time limit; [`HostDeadline`] when the host timer stopped
    /// it.
    ///
    /// The epoch deadline stops a spinning guest; a host timer stops one
    /// parked in a host call (e.g. sleeping), where the epoch cannot reach
    /// it. The timer is only set once the guest parks: nearly every call
    /// runs to its end in the first poll, and a tokio timer per call would
    /// cost more than some hooks. So a guest that parks is stopped at most
    /// one limit (plus one tick) after it parked, and one that spins at its
    /// epoch deadline.
    async fn run<O>(&self, limit: Duration, call: impl Future<Output = O>) -> Result<O, HostDeadline> {
        let _running = self.runtime.guest_running();
        let mut call = pin!(call);
        let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
        if let Poll::Ready(result) = first {
            return Ok(result);
        }
        // One tick of slack lets the epoch report first when it can.
        let slack = self.runtime.options.epoch_tick;
        tokio::time::timeout(limit + slack, call).await.map_err(|_| HostDeadline)
    }

    /// [`Self::run`] for a call that borrows its store: the host deadline
    /// becomes the call's error (see [`Self::classify`]).
    async fn run_borrowed<T>(
        &self,
        limit: Duration,
        call: impl Future<Output = wasmtime::Result<T>>,
    ) -> wasmtime::Result<T> {
        self.run(limit, call).await.unwrap_or_else(|deadline| Err(wasmtime::Error::new(deadline)))
    }

    /// Arms `instance` for a hook call: a fresh deadline, a cleared memory
    /// flag and stderr buffer.
    fn arm(&self, instance: &mut Instance<W>, limit: Duration) {
        let ticks = deadline_ticks(limit, self.runtime.options.epoch_tick);
        instance.store.set_epoch_deadline(ticks);
        let data = instance.store.data_mut();
        data.limiter.reset();
        data.stderr.clear();
    }

    /// Keeps `instance` warm, unless the pool or the tenant has enough.
    fn put(&self, instance: Instance<W>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.runtime.options.max_idle_instances && self.scope.as_ref().is_none_or(Scope::keep_idle) {
            idle.push(instance);
        }
    }

    /// A new instance, instantiated and configured within the setup limit.
    async fn fresh(&self) -> Result<Instance<W>, PluginError> {
        let limit = self.limits.setup_timeout;
        let mut store = Store::new(&self.runtime.engine, Ctx::new(self.shared.clone(), self.limits.memory));
        store.limiter(|ctx| &mut ctx.limiter);
        // Before instantiating: a new store's deadline has already passed,
        // and instantiation runs guest code.
        store.set_epoch_deadline(deadline_ticks(limit, self.runtime.options.epoch_tick));
        let instantiated = self.run_borrowed(limit, W::instantiate(&self.pre, &mut store)).await;
        let bindings = match instantiated {
            Ok(bindings) => bindings,
            Err(e) => return Err(self.classify("instantiate", &e, &store, limit)),
        };
        let configured = self.run_borrowed(limit, bindings.configure(&mut store, &self.config)).await;
        match configured {
            Ok(Ok(())) => Ok(Instance { store, bindings }),
            Ok(Err(message)) => Err(PluginError::Config { plugin: self.name().to_owned(), message }),
            Err(e) => Err(self.classify("configure", &e, &store, limit)),
        }
    }

    /// What a failed call was: memory limit, time limit, or a trap (with
    /// the guest's panic message from its stderr when it wrote one).
    fn classify(
        &self,
        hook: &'static str,
        error: &wasmtime::Error,
        store: &Store<Ctx>,
        limit: Duration,
    ) -> PluginError {
        let plugin = self.name().to_owned();
        if store.data().limiter.hit() {
            return PluginError::MemoryLimit { plugin, hook, limit: self.limits.memory };
        }
        let trap = error.downcast_ref::<Trap>();
        if matches!(trap, Some(Trap::Interrupt)) || error.downcast_ref::<HostDeadline>().is_some() {
            return PluginError::Timeout { plugin, hook, limit };
        }
        let mut description = match trap {
            Some(trap) => trap.to_string(),
            None => format!("{error:#}"),
        };
        let stderr = store.data().stderr.text();
        if !stderr.is_empty() {
            description.push_str("; guest stderr: ");
            description.push_str(&stderr);
        }
        PluginError::Trap { plugin, hook, trap: description }
    }

    /// Number of idle instances (for tests).
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl<W: World> Drop for Pool<W> {
    /// The warm instances go with the pool: give their slots back.
    fn drop(&mut self) {
        if let Some(scope) = &self.scope {
            scope.release_idle(self.idle.get_mut().unwrap_or_else(PoisonError::into_inner).len());
        }
    }
}
