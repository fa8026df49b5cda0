//! nginx's `open_file_cache` for one static location: what opening a path found, kept for a
//! short validity interval so that a hot file is answered without touching the file system.
//!
//! Why it is safe to skip the open: an entry is stored under the exact names the request
//! resolved to (after decoding and refusal in `path.rs`), by a walk that applied the symlink
//! policy. The same names under the same location walk the same way, so until something changes
//! on disk, the entry *is* what a fresh walk would find. What can change on disk is bounded by
//! the validity interval: an entry older than `valid` is never used, the next request walks
//! again (every check runs) and replaces it. A file replaced, removed or turned into a link is
//! therefore served at most `valid` after the change, as with nginx's `open_file_cache_valid`.
//!
//! The container is generic (the value is opaque here) so that its rules (freshness, the entry
//! bound, eviction) are tested without files; `entry.rs` defines what a static location stores.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The settings of one location's cache (`open_file_cache = { ... }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileCacheSettings {
    /// Most entries kept (nginx's `max=`); `0` turns the cache off.
    pub max: usize,
    /// How long an entry is used before the path is opened and checked again (nginx's
    /// `open_file_cache_valid`).
    pub valid: Duration,
    /// Files up to this size are kept in memory with their entry, so a hit sends them without
    /// any system call; larger files keep their open descriptor and stream from it.
    pub max_content_size: u64,
}

impl OpenFileCacheSettings {
    /// nginx's `open_file_cache max=1000` with a 1 s validity (nginx's default validity is 60 s:
    /// gale prefers a deploy to show within a second) and contents up to 64 KiB.
    pub const DEFAULT: Self = Self { max: 1000, valid: Duration::from_secs(1), max_content_size: 64 * 1024 };

    /// No cache: every request opens the file (nginx's `open_file_cache off`).
    pub const OFF: Self = Self { max: 0, ..Self::DEFAULT };

    /// Whether anything is cached at all.
    pub fn enabled(&self) -> bool {
        self.max > 0 && !self.valid.is_zero()
    }
}

impl Default for OpenFileCacheSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Entries by key, each with the instant it was found, bounded by [`OpenFileCacheSettings::max`].
///
/// One mutex: a lookup holds it for a hash and a reference-count increment, far less than the
/// work it saves, and the runtime of a small deployment has one or two threads.
pub(crate) struct OpenCache<V> {
    settings: OpenFileCacheSettings,
    state: Mutex<State<V>>,
}

struct State<V> {
    map: HashMap<Box<[u8]>, Slot<V>>,
    /// When expired entries were last dropped (so that descriptors of removed files are closed
    /// even if nobody asks for them again, as long as the location gets requests).
    last_sweep: Instant,
}

struct Slot<V> {
    found: Instant,
    value: Arc<V>,
}

impl<V> OpenCache<V> {
    pub(crate) fn new(settings: OpenFileCacheSettings) -> Self {
        Self { settings, state: Mutex::new(State { map: HashMap::new(), last_sweep: Instant::now() }) }
    }

    pub(crate) fn settings(&self) -> &OpenFileCacheSettings {
        &self.settings
    }

    /// The value stored under `key`, if it was found less than `valid` before `now`. An expired
    /// entry is dropped: the caller opens the path again.
    pub(crate) fn get(&self, key: &[u8], now: Instant) -> Option<Arc<V>> {
        if !self.settings.enabled() {
            return None;
        }
        let mut state = self.lock();
        if now.saturating_duration_since(state.last_sweep) >= self.settings.valid {
            state.sweep(now, self.settings.valid);
        }
        match state.map.get(key) {
            Some(slot) if self.fresh(slot.found, now) => Some(Arc::clone(&slot.value)),
            Some(_) => {
                state.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores what was found at `found` (taken *before* the path was opened, so the validity
    /// interval never extends past what the walk saw). At the bound, expired entries go first,
    /// then the oldest one.
    pub(crate) fn insert(&self, key: Box<[u8]>, value: Arc<V>, found: Instant, now: Instant) {
        if !self.settings.enabled() || !self.fresh(found, now) {
            return;
        }
        let mut state = self.lock();
        if !state.map.contains_key(&key) && state.map.len() >= self.settings.max {
            state.sweep(now, self.settings.valid);
            if state.map.len() >= self.settings.max {
                let oldest = state.map.iter().min_by_key(|(_, slot)| slot.found).map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    state.map.remove(&oldest);
                }
            }
        }
        state.map.insert(key, Slot { found, value });
    }

    /// How many entries are held (fresh or not yet swept).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn fresh(&self, found: Instant, now: Instant) -> bool {
        now.saturating_duration_since(found) < self.settings.valid
    }

    fn lock(&self) -> MutexGuard<'_, State<V>> {
        // A panic while holding the lock leaves a consistent map (every step is one call).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<V> std::fmt::Debug for OpenCache<V> {
    /// The settings only: the entries are the file system's business.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCache").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl<V> State<V> {
    fn sweep(&mut self, now: Instant, valid: Duration) {
        self.map.retain(|_, slot| now.saturating_duration_since(slot.found) < valid);
        self.last_sweep = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max: usize, valid_ms: u64) -> OpenCache<u32> {
        OpenCache::new(OpenFileCacheSettings { max, valid: Duration::from_millis(valid_ms), max_content_size: 0 })
    }

    fn key(s: &str) -> Box<[u8]> {
        s.as_bytes().into()
    }

    #[test]
    fn an_entry_is_used_only_within_the_validity_interval() {
        let c = cache(10, 1000);
        let t0 = Instant::now();
        c.insert(key("a"), Arc::new(1), t0, t0);
        assert_eq!(c.get(b"a", t0 + Duration::from_millis(999)).as_deref(), Some(&1));
        assert_eq!(c.get(b"a", t0 + Duration::from_millis(1000)), None);
        // The expired entry is gone, not only hidden.
        assert_eq!(c.len(), 0);
        assert_eq!(c.get(b"b", t0), None);
    }

    #[test]
    fn a_fresh_insert_replaces_the_old_value() {
        let c = cache(10, 1000);
        let t0 = Instant::now();
        c.insert(key("a"), Arc::new(1), t0, t0);
        let t1 = t0 + Duration::from_millis(1500);
        assert_eq!(c.get(b"a", t1), None);
        c.insert(key("a"), Arc::new(2), t1, t1);
        assert_eq!(c.get(b"a", t1 + Duration::from_millis(10)).as_deref(), Some(&2));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn what_was_found_before_the_interval_is_not_stored() {
        let c = cache(10, 1000);
        let t0 = Instant::now();
        // A walk that took longer than the interval (a slow disk): its result is already stale.
        c.insert(key("a"), Arc::new(1), t0, t0 + Duration::from_millis(1000));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn never_more_than_max_entries_and_the_oldest_goes_first() {
        let c = cache(3, 10_000);
        let t0 = Instant::now();
        for (i, k) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let at = t0 + Duration::from_millis(i as u64);
            c.insert(key(k), Arc::new(i as u32), at, at);
            assert!(c.len() <= 3);
        }
        let now = t0 + Duration::from_millis(10);
        assert_eq!(c.get(b"a", now), None);
        assert_eq!(c.get(b"b", now), None);
        assert_eq!(c.get(b"c", now).as_deref(), Some(&2));
        assert_eq!(c.get(b"e", now).as_deref(), Some(&4));
        // Replacing an existing key at the bound evicts nothing else.
        c.insert(key("c"), Arc::new(20), now, now);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(b"d", now).as_deref(), Some(&3));
    }

    #[test]
    fn expired_entries_are_evicted_before_fresh_ones() {
        let c = cache(2, 1000);
        let t0 = Instant::now();
        c.insert(key("old"), Arc::new(1), t0, t0);
        let t1 = t0 + Duration::from_millis(600);
        c.insert(key("young"), Arc::new(2), t1, t1);
        let t2 = t0 + Duration::from_millis(1200);
        c.insert(key("new"), Arc::new(3), t2, t2);
        assert_eq!(c.get(b"young", t2).as_deref(), Some(&2));
        assert_eq!(c.get(b"new", t2).as_deref(), Some(&3));
    }

    #[test]
    fn lookups_sweep_expired_entries() {
        let c = cache(100, 1000);
        let t0 = Instant::now();
        for k in ["a", "b", "c"] {
            c.insert(key(k), Arc::new(0), t0, t0);
        }
        // Asking for something else, after the interval, drops all three (their descriptors close).
        assert_eq!(c.get(b"zzz", t0 + Duration::from_secs(2)), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn off_stores_nothing() {
        for settings in
            [OpenFileCacheSettings::OFF, OpenFileCacheSettings { valid: Duration::ZERO, ..Default::default() }]
        {
            let c = OpenCache::new(settings);
            let t0 = Instant::now();
            c.insert(key("a"), Arc::new(1u32), t0, t0);
            assert_eq!(c.get(b"a", t0), None);
            assert_eq!(c.len(), 0);
        }
    }
}
