//! Warm instances of one plugin attachment, and the call discipline: arm
//! the limits, run the hook, keep the instance on success, discard it on
//! any failure (a trapped instance cannot be entered again, and one that hit
//! a limit may be in any state).
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
use super::tenant::{Scope, Ticket};

/// One instance and its store.
pub(crate) struct Instance<W> {
    pub(crate) store: Store<Ctx>,
    pub(crate) bindings: W,
    /// The admission of the call in progress (tenant pools only).
    ticket: Option<Ticket>,
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
        let declared = self.run(limit, instance.bindings.declared(&mut instance.store)).await;
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

    /// Takes an instance for a call of `hook`: in a tenant's pool the call
    /// is first admitted (refused while the plugin is quarantined; waits up
    /// to the hook's time limit for one of the tenant's concurrency slots),
    /// then a warm instance is taken, or a fresh one made.
    pub(crate) async fn enter(&self, hook: &'static str) -> Result<Instance<W>, PluginError> {
        let ticket = match &self.scope {
            Some(scope) => Some(scope.admit(self.name(), hook, self.limits.timeout).await?),
            None => None,
        };
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let instance = match idle {
            Some(instance) => {
                if let Some(scope) = &self.scope {
                    scope.release_idle(1);
                }
                Ok(instance)
            }
            None => self.fresh().await,
        };
        match (instance, ticket) {
            (Ok(mut instance), ticket) => {
                instance.ticket = ticket;
                Ok(instance)
            }
            (Err(e), Some(ticket)) => {
                if let Some(scope) = &self.scope {
                    scope.settle(ticket, hook, Some(&e));
                }
                Err(e)
            }
            (Err(e), None) => Err(e),
        }
    }

    /// [`Self::enter`] for a caller that names its hook only when it
    /// finishes: a refusal names the hook `call`. Prefer `enter`; kept so
    /// that world wrappers written against `take` keep their containment.
    #[allow(dead_code)]
    pub(crate) async fn take(&self) -> Result<Instance<W>, PluginError> {
        self.enter("call").await
    }

    /// Runs one hook call on `instance` under the time and memory limits.
    /// Start the call's future first (it borrows the instance), then pass
    /// it here together with the instance's limits already armed by
    /// [`Self::arm`].
    ///
    /// The epoch deadline stops a spinning guest; a host timer stops one
    /// parked in a host call (e.g. sleeping), where the epoch cannot reach
    /// it. The timer is only set once the guest parks: nearly every call
    /// runs to its end in the first poll, and a tokio timer per call would
    /// cost more than some hooks. So a guest that parks is stopped at most
    /// one limit (plus one tick) after it parked, and one that spins at its
    /// epoch deadline.
    pub(crate) async fn run<T>(
        &self,
        limit: Duration,
        call: impl Future<Output = wasmtime::Result<T>>,
    ) -> wasmtime::Result<T> {
        let _running = self.runtime.guest_running();
        let mut call = pin!(call);
        let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
        if let Poll::Ready(result) = first {
            return result;
        }
        // One tick of slack lets the epoch report first when it can.
        let slack = self.runtime.options.epoch_tick;
        match tokio::time::timeout(limit + slack, call).await {
            Ok(result) => result,
            Err(_) => Err(wasmtime::Error::new(HostDeadline)),
        }
    }

    /// Arms `instance` for a hook call: a fresh deadline, a cleared memory
    /// flag and stderr buffer.
    pub(crate) fn arm(&self, instance: &mut Instance<W>, limit: Duration) {
        let ticks = deadline_ticks(limit, self.runtime.options.epoch_tick);
        instance.store.set_epoch_deadline(ticks);
        let data = instance.store.data_mut();
        data.limiter.reset();
        data.stderr.clear();
    }

    /// The hook's time limit.
    pub(crate) fn timeout(&self) -> Duration {
        self.limits.timeout
    }

    /// Ends a call: the instance goes back to the pool when the call
    /// succeeded, and is dropped (with the error classified) when it failed.
    pub(crate) fn finish<T>(
        &self,
        mut instance: Instance<W>,
        hook: &'static str,
        result: wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        let ticket = instance.ticket.take();
        match result {
            Ok(value) => {
                if let (Some(scope), Some(ticket)) = (&self.scope, ticket) {
                    scope.settle(ticket, hook, None);
                }
                self.put(instance);
                Ok(value)
            }
            Err(error) => {
                let error = self.classify(hook, &error, &instance.store, self.limits.timeout);
                if let (Some(scope), Some(ticket)) = (&self.scope, ticket) {
                    scope.settle(ticket, hook, Some(&error));
                }
                Err(error)
            }
        }
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
        let instantiated = self.run(limit, W::instantiate(&self.pre, &mut store)).await;
        let bindings = match instantiated {
            Ok(bindings) => bindings,
            Err(e) => return Err(self.classify("instantiate", &e, &store, limit)),
        };
        let configured = self.run(limit, bindings.configure(&mut store, &self.config)).await;
        match configured {
            Ok(Ok(())) => Ok(Instance { store, bindings, ticket: None }),
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
