//! How gale's heap is backed by memory: small (4 KiB) pages, not transparent huge pages.
//!
//! mimalloc, gale's allocator (see `main.rs`), asks the kernel for transparent huge pages on its
//! arenas (`madvise(MADV_HUGEPAGE)`), so on a kernel whose THP setting is `madvise` (Debian's
//! default) or `always`, touching one byte of a fresh 2 MiB region makes the whole region
//! resident. gale's heap is mostly short-lived buffers scattered over a large arena: a 1 GiB
//! upload keeps about 3 MB of body buffers alive at a time, yet with huge pages the process grew
//! by 14.7-18.9 MB during its first upload (over the 16 MiB that issue 5 allows); with small pages
//! by 7.6-9.9 MB, at the same CPU cost per upload (`docs/performance.md`, 2026-11-30).
//!
//! The switch is `prctl(PR_SET_THP_DISABLE)`, which is per process and inherited across `fork`
//! and `execve`: the supervised backends get the machine's own setting back before they start
//! ([`restore_in_child`]).

/// Backs the rest of this process's memory with small pages. Call it first thing in `main`: pages
/// already faulted in as huge pages stay so. Failure (a kernel without the call) only costs
/// memory, so it is ignored.
pub fn use_small_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

/// Undoes [`use_small_pages`] in a forked child before it execs a backend, so that the backend
/// runs with the machine's THP setting, not gale's. Meant for `Command::pre_exec`: it only makes
/// the `prctl(2)` system call, which is async-signal-safe, and neither allocates nor takes locks.
pub(crate) fn restore_in_child() {
    // A failure leaves the child with small pages, which is harmless.
    let _ = rustix::thread::disable_transparent_huge_pages(false);
}

#[cfg(test)]
mod tests {
    /// `PR_GET_THP_DISABLE` answers 1 once the calling process has opted out.
    #[test]
    fn small_pages_are_switched_on_for_the_process() {
        super::use_small_pages();
        assert_eq!(rustix::thread::transparent_huge_pages_are_disabled().ok(), Some(true));
    }
}
