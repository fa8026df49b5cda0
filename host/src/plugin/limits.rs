//! Per-call limits: how long a hook may run and how much memory an instance
//! may hold. Both stop a misbehaving guest without touching other plugins.

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// Limits of one plugin attachment.
///
/// Time is enforced with wasmtime's epoch interruption (a ticker thread
/// advances the epoch every [`RuntimeOptions::epoch_tick`]), so a limit is
/// exact to about one tick. Memory is enforced per linear memory of an
/// instance; an instance is discarded when it hits either limit.
///
/// [`RuntimeOptions::epoch_tick`]: super::RuntimeOptions::epoch_tick
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes a plugin instance's memory may grow to.
    pub memory: usize,
    /// Longest a hook call (`on-request`, `on-response`) may run.
    pub timeout: Duration,
    /// Longest instantiating a fresh instance and running its `configure`
    /// may take together; larger than `timeout` because it parses config.
    pub setup_timeout: Duration,
}

impl Limits {
    /// 16 MiB: ample for header rules, small enough for many tenants.
    pub const DEFAULT_MEMORY: usize = 16 * 1024 * 1024;
    /// 10 ms: a hook costs microseconds; anything near this is a bug.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10);
    /// 1 s for instantiate + configure.
    pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(1);
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: Self::DEFAULT_MEMORY,
            timeout: Self::DEFAULT_TIMEOUT,
            setup_timeout: Self::DEFAULT_SETUP_TIMEOUT,
        }
    }
}

/// Epoch ticks to allow for `limit`: rounded up, at least one, so that a
/// limit shorter than a tick still lets a call start.
pub(crate) fn deadline_ticks(limit: Duration, tick: Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    let ticks = limit.as_nanos().div_ceil(tick);
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// The store's resource limiter: refuses memory growth past the limit by
/// trapping, and remembers that it did, so the failure is reported as a
/// memory limit rather than as an anonymous trap.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    max_memory: usize,
    max_table_elements: usize,
    hit: bool,
}

impl MemoryLimiter {
    /// Tables hold function references; 64k entries is far beyond any
    /// plugin's need and keeps a runaway `table.grow` cheap.
    const MAX_TABLE_ELEMENTS: usize = 65_536;

    pub(crate) fn new(max_memory: usize) -> Self {
        Self { max_memory, max_table_elements: Self::MAX_TABLE_ELEMENTS, hit: false }
    }

    /// Whether a growth was refused since the last [`Self::reset`].
    pub(crate) fn hit(&self) -> bool {
        self.hit
    }

    /// Forgets an earlier refusal (before each call).
    pub(crate) fn reset(&mut self) {
        self.hit = false;
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = true;
            wasmtime::bail!("memory limit of {} bytes reached (wanted {desired})", self.max_memory);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            self.hit = true;
            wasmtime::bail!("table limit of {} elements reached", self.max_table_elements);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_and_never_reach_zero() {
        let ms = Duration::from_millis;
        assert_eq!(deadline_ticks(ms(10), ms(1)), 10);
        assert_eq!(deadline_ticks(Duration::from_micros(10_500), ms(1)), 11);
        assert_eq!(deadline_ticks(Duration::ZERO, ms(1)), 1);
        assert_eq!(deadline_ticks(ms(1), ms(5)), 1);
        assert_eq!(deadline_ticks(ms(1), Duration::ZERO), 1_000_000);
    }

    #[test]
    fn limiter_refuses_and_remembers() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 16, None).expect("allowed"));
        assert!(!limiter.hit());
        assert!(limiter.memory_growing(1 << 16, (1 << 20) + 1, None).is_err());
        assert!(limiter.hit());
        limiter.reset();
        assert!(!limiter.hit());
        assert!(!limiter.memory_growing(0, 1 << 17, Some(1 << 16)).expect("declined"));
    }
}
