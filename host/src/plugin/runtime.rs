//! The engine and its lifecycle: one wasmtime `Engine` per process with
//! epoch interruption and a ticker thread; components compiled once and
//! cached on disk (keyed by the wasm's hash and the engine's compatibility
//! hash) so that a restart does not recompile; `instantiate_pre` once per
//! attachment.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{self, World};
use super::error::PluginError;
use super::host::Ctx;
use super::limits::Limits;
use super::pool::Pool;
use super::source;
use super::tenant::Scope;

/// Process-wide settings of the plugin runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled components (`.cwasm`) are kept between runs. `None`
    /// compiles every plugin at every start (~25 ms each in release). The
    /// folder is created with mode 0700 and ignored (with a warning) when it
    /// is writable by others or owned by another user, because loading a
    /// `.cwasm` runs its native code.
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch advances: the granularity of hook time limits.
    /// 1 ms costs one wake-up per millisecond of a tiny thread.
    pub epoch_tick: Duration,
    /// Most idle instances kept warm per plugin attachment; beyond that,
    /// instances are dropped after their call.
    pub max_idle_instances: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self { cache_dir: None, epoch_tick: Duration::from_millis(1), max_idle_instances: 32 }
    }
}

/// The plugin runtime: compiles, caches and instantiates plugins. One per
/// process; cheap to clone. Plugins loaded from it keep it alive (they need
/// its epoch ticker for their time limits).
#[derive(Clone)]
pub struct PluginRuntime {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime").field("options", &self.inner.options).finish()
    }
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    linker: Linker<Ctx>,
    pub(crate) options: RuntimeOptions,
    /// The disk cache folder, once checked to be safe.
    cache_dir: Option<PathBuf>,
    /// Compiled components by the sha-256 of their wasm, so that attaching
    /// one plugin to many locations compiles it once.
    components: Mutex<HashMap<[u8; 32], Component>>,
    ticker: Ticker,
}

impl Inner {
    /// Marks guest code as (possibly) running until the guard is dropped:
    /// the epoch must advance meanwhile, so a sleeping ticker is woken.
    pub(crate) fn guest_running(&self) -> GuestRunning<'_> {
        let ticker = &self.ticker;
        ticker.running.fetch_add(1, Ordering::SeqCst);
        if ticker.sleeping.load(Ordering::SeqCst)
            && let Some(thread) = &ticker.thread
        {
            thread.thread().unpark();
        }
        GuestRunning(ticker)
    }
}

/// See [`Inner::guest_running`].
pub(crate) struct GuestRunning<'a>(&'a Ticker);

impl Drop for GuestRunning<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PluginRuntime {
    /// Whether the epoch ticker is asleep (no guest code ran lately).
    #[cfg(test)]
    pub(crate) fn ticker_sleeping(&self) -> bool {
        self.inner.ticker.sleeping.load(Ordering::SeqCst)
    }

    /// Creates the engine, starts the epoch ticker and prepares the linker
    /// (deny-everything WASI plus gale's `host` interface).
    pub fn new(options: RuntimeOptions) -> Result<Self, PluginError> {
        let engine_error = |e: wasmtime::Error| PluginError::Engine { message: format!("{e:#}") };
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        bindings::add_imports(&mut linker).map_err(engine_error)?;
        let cache_dir = options.cache_dir.as_deref().and_then(|dir| match prepare_cache_dir(dir) {
            Ok(()) => Some(dir.to_owned()),
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), "plugin compile cache disabled: {reason}");
                None
            }
        });
        if options.epoch_tick.is_zero() {
            return Err(PluginError::Engine { message: "epoch_tick must not be zero".into() });
        }
        let ticker = Ticker::start(engine.clone(), options.epoch_tick)
            .map_err(|e| PluginError::Engine { message: format!("cannot start the epoch ticker thread: {e}") })?;
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                options,
                cache_dir,
                components: Mutex::new(HashMap::new()),
                ticker,
            }),
        })
    }

    /// Loads plugin `name` from `dir` as a plugin of world `W`: finds the
    /// file, builds its config, compiles (or loads from the cache), checks
    /// the world, and creates a first instance, whose `configure` validates
    /// the config. That instance stays warm in the returned pool.
    pub(crate) async fn load<W: World>(
        &self,
        dir: &Path,
        name: &str,
        config: &toml::Table,
        limits: Limits,
    ) -> Result<Arc<Pool<W>>, PluginError> {
        self.load_scoped(dir, name, config, limits, None).await
    }

    /// [`Self::load`], with the pool put under a tenant's containment when
    /// `scope` is given (see `tenant.rs`).
    pub(crate) async fn load_scoped<W: World>(
        &self,
        dir: &Path,
        name: &str,
        config: &toml::Table,
        limits: Limits,
        scope: Option<Scope>,
    ) -> Result<Arc<Pool<W>>, PluginError> {
        let files = source::find(dir, name)?;
        let json = source::config_json(name, files.defaults.as_deref(), config)?;
        let component = self.component(name, &files.wasm)?;
        let wrong_world = |e: wasmtime::Error| PluginError::WrongWorld {
            plugin: name.to_owned(),
            world: W::NAME,
            message: format!("{e:#}"),
        };
        let instance_pre = self.inner.linker.instantiate_pre(&component).map_err(wrong_world)?;
        let pre = W::pre(instance_pre).map_err(wrong_world)?;
        let pool = Arc::new(Pool::new(self.inner.clone(), name, pre, json.into(), limits).with_scope(scope));
        pool.warm_up().await?;
        Ok(pool)
    }

    /// The compiled component for `path`: from memory, the disk cache, or a
    /// fresh compilation (which is then cached).
    pub(crate) fn component(&self, plugin: &str, path: &Path) -> Result<Component, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            plugin: plugin.to_owned(),
            path: path.to_owned(),
            source,
        })?;
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        let mut components = self.inner.components.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(component) = components.get(&hash) {
            return Ok(component.clone());
        }
        let cached = self.inner.cache_dir.as_ref().map(|dir| dir.join(self.cache_name(&hash)));
        if let Some(file) = cached.as_deref().filter(|f| f.is_file()) {
            // SAFETY: the file is in our private cache folder (checked at
            // startup to be ours and not writable by others) and was written
            // by `Component::serialize` of this very wasmtime build (the
            // name carries the engine's compatibility hash); wasmtime also
            // checks its version and settings before loading it.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize_file(&self.inner.engine, file) };
            match loaded {
                Ok(component) => {
                    components.insert(hash, component.clone());
                    return Ok(component);
                }
                Err(e) => tracing::warn!(file = %file.display(), "ignoring cached plugin: {e:#}"),
            }
        }
        let compile_error =
            |message: String| PluginError::Compile { plugin: plugin.to_owned(), path: path.to_owned(), message };
        if let Some(message) = not_a_component(&bytes) {
            return Err(compile_error(message));
        }
        let component = Component::new(&self.inner.engine, &bytes).map_err(|e| compile_error(format!("{e:#}")))?;
        if let Some(file) = cached.as_deref()
            && let Err(e) = write_cache(&component, file)
        {
            tracing::warn!(file = %file.display(), "cannot cache compiled plugin: {e}");
        }
        components.insert(hash, component.clone());
        Ok(component)
    }

    /// The engine every plugin is compiled for.
    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// `<sha-256 of the wasm>-<engine compatibility hash>.cwasm`: a cached
    /// file is only ever loaded by an engine that could have written it.
    fn cache_name(&self, wasm_hash: &[u8; 32]) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner.engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{}-{:016x}.cwasm", hex(wasm_hash), hasher.finish())
    }

    /// Where the compiled form of the wasm at `path` is (or would be)
    /// cached; `None` without a usable cache folder. For tests and tools.
    pub fn cache_file_for(&self, path: &Path) -> Option<PathBuf> {
        let dir = self.inner.cache_dir.as_ref()?;
        let bytes = std::fs::read(path).ok()?;
        Some(dir.join(self.cache_name(&Sha256::digest(&bytes).into())))
    }
}

/// A plain-words reason when `bytes` is clearly not a component: wasmtime's
/// own parser errors are precise but cryptic for these common mistakes.
fn not_a_component(bytes: &[u8]) -> Option<String> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => None,
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
            Some("it is a core WebAssembly module, not a component (build it for wasm32-wasip2)".into())
        }
        _ => Some("it is not a WebAssembly file".into()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates the cache folder (mode 0700) or checks that an existing one is
/// ours and not writable by anyone else.
fn prepare_cache_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("cannot create it: {e}"))?;
    let meta = std::fs::metadata(dir).map_err(|e| format!("cannot read it: {e}"))?;
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(format!("it belongs to uid {}, not to us ({uid})", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("it is writable by others (mode {:o})", meta.mode() & 0o777));
    }
    Ok(())
}

/// Writes the compiled component next to its final name, then renames it,
/// so that a concurrent start never loads half a file.
fn write_cache(component: &Component, file: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
    let tmp = file.with_extension(format!("tmp-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.to_string());
    }
    Ok(())
}

/// How long the ticker goes on ticking after the last guest code ran
/// before it sleeps: long enough that a steady stream of calls never waits
/// for it to wake, short enough that an idle gale (or one busy with other
/// work, such as hashing an upload) is not woken a thousand times a second.
const TICKER_LINGER: Duration = Duration::from_millis(100);

/// The thread that advances the engine's epoch every tick while guest code
/// runs (and for [`TICKER_LINGER`] after); it sleeps, parked, otherwise, so
/// a gale whose plugins are idle pays no wake-ups. Stopped (and joined) when
/// the runtime and every plugin loaded from it are gone.
struct Ticker {
    stop: Arc<AtomicBool>,
    /// Guest calls (and instantiations) in progress.
    running: Arc<AtomicUsize>,
    /// Set by the thread just before it parks; a caller that sees it wakes it.
    sleeping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicUsize::new(0));
        let sleeping = Arc::new(AtomicBool::new(false));
        let (flag, busy, asleep) = (stop.clone(), running.clone(), sleeping.clone());
        let linger_ticks = TICKER_LINGER.as_nanos().div_ceil(tick.as_nanos()).max(1);
        let thread = std::thread::Builder::new().name("gale-plugin-epoch".into()).spawn(move || {
            let mut idle_ticks = 0;
            while !flag.load(Ordering::Acquire) {
                if busy.load(Ordering::SeqCst) > 0 {
                    idle_ticks = 0;
                } else if idle_ticks >= linger_ticks {
                    // A caller increments `running` and then reads `sleeping`;
                    // this sets `sleeping` and then reads `running`: one of the
                    // two sees the other (both SeqCst), so no call is missed.
                    asleep.store(true, Ordering::SeqCst);
                    if busy.load(Ordering::SeqCst) == 0 && !flag.load(Ordering::Acquire) {
                        std::thread::park();
                    }
                    asleep.store(false, Ordering::SeqCst);
                    idle_ticks = 0;
                    continue;
                } else {
                    idle_ticks += 1;
                }
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })?;
        Ok(Self { stop, running, sleeping, thread: Some(thread) })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_mistakes_are_named() {
        assert_eq!(not_a_component(b"\0asm\x0d\0\x01\0rest"), None);
        let core = not_a_component(b"\0asm\x01\0\0\0").expect("core module");
        assert!(core.contains("core WebAssembly module"), "{core}");
        let elf = not_a_component(b"\x7fELF\x02\x01\x01\0").expect("not wasm");
        assert!(elf.contains("not a WebAssembly file"), "{elf}");
        assert!(not_a_component(b"").is_some());
    }
}
