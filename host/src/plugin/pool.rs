//! Warm instances of one plugin attachment, and the call discipline: arm
//! the limits, run the hook, keep the instance on success, discard it on
//! any failure (a trapped instance cannot be entered again, and one that hit
//! a limit may be in any state).
//!
//! A pool belongs to one attachment: instances (and the guest state they
//! carry between requests) are never shared across plugins or configs.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use wasmtime::{Store, Trap};

use super::bindings::World;
use super::error::PluginError;
use super::host::{Ctx, Shared};
use super::limits::{Limits, deadline_ticks};
use super::runtime::Inner;

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
        Self { runtime, pre, shared: Arc::new(Shared::new(name)), config, limits, idle: Mutex::new(Vec::new()) }
    }

    /// The plugin's name, as attached.
    pub(crate) fn name(&self) -> &str {
        &self.shared.name
    }

    /// Creates the first instance (which validates the config through
    /// `configure`) and keeps it warm.
    pub(crate) async fn warm_up(&self) -> Result<(), PluginError> {
        let instance = self.fresh().await?;
        self.put(instance);
        Ok(())
    }

    /// A warm instance, or a fresh one when none is idle.
    pub(crate) async fn take(&self) -> Result<Instance<W>, PluginError> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match idle {
            Some(instance) => Ok(instance),
            None => self.fresh().await,
        }
    }

    /// Runs one hook call on `instance` under the time and memory limits.
    /// Start the call's future first (it borrows the instance), then pass
    /// it here together with the instance's limits already armed by
    /// [`Self::arm`].
    pub(crate) async fn run<T>(
        &self,
        limit: Duration,
        call: impl Future<Output = wasmtime::Result<T>>,
    ) -> wasmtime::Result<T> {
        // The epoch stops a spinning guest; this stops one parked in a host
        // call. One tick of slack lets the epoch report first when it can.
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
        instance: Instance<W>,
        hook: &'static str,
        result: wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        match result {
            Ok(value) => {
                self.put(instance);
                Ok(value)
            }
            Err(error) => Err(self.classify(hook, &error, &instance.store, self.limits.timeout)),
        }
    }

    fn put(&self, instance: Instance<W>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.runtime.options.max_idle_instances {
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
