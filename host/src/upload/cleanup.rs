//! Who deletes stored files, and when.
//!
//! While the body is received, every created file is owned by a [`FileSet`] guard: any error, or
//! the receiving future being dropped (the client left mid-upload), unlinks all of them at once,
//! so an aborted upload leaves nothing behind. Once the form is complete the files move into
//! [`UploadedFiles`], which implements nginx-upload-module's cleanup table: delete after the listed final
//! statuses, keep otherwise.
//!
//! Unlinking runs on the upload writer threads (`writers.rs`), never on the event loop: removing
//! a large file frees its page-cache pages and blocks, and took tens of milliseconds per 100 MB
//! file (half a second per GiB), during which every other request on the loop waited. A failed
//! upload's files are removed before its error answer; a completed upload's right after its
//! answer (the pipeline does not wait for [`UploadedFiles::finish`]), as nginx-upload-module
//! does when the request is finalized; an abandoned upload's in the background.

use super::config::CleanupPolicy;
use super::fields::StoredFile;
use super::store::Store;
use super::writers;

/// Unlinks every file it holds when dropped, unless handed over with [`FileSet::into_uploaded`].
#[derive(Debug)]
pub(crate) struct FileSet {
    store: Store,
    names: Vec<String>,
}

impl FileSet {
    pub(crate) fn new(store: Store) -> Self {
        FileSet { store, names: Vec::new() }
    }

    /// Takes ownership of a just-created store file.
    pub(crate) fn register(&mut self, name: String) {
        self.names.push(name);
    }

    /// The upload failed: its files are removed before this returns, so that the error answer
    /// never races the cleanup.
    pub(crate) async fn discard(mut self) {
        let (store, names) = (self.store.clone(), std::mem::take(&mut self.names));
        if !names.is_empty() {
            let _ = writers::start(move || remove_aborted(&store, names)).await;
        }
    }

    /// The upload completed: its files now follow the cleanup table.
    pub(crate) fn into_uploaded(mut self, files: Vec<StoredFile>, cleanup: CleanupPolicy) -> UploadedFiles {
        self.names.clear();
        UploadedFiles { store: self.store.clone(), files, cleanup, finished: false }
    }
}

impl Drop for FileSet {
    fn drop(&mut self) {
        if self.names.is_empty() {
            return;
        }
        let (store, names) = (self.store.clone(), std::mem::take(&mut self.names));
        drop(writers::start(move || remove_aborted(&store, names)));
    }
}

fn remove_aborted(store: &Store, names: Vec<String>) {
    for name in names {
        if let Err(e) = store.remove(&name) {
            tracing::warn!(%name, error = %e, "could not remove an aborted upload file");
        }
    }
}

/// The completed files of one upload, pending the request's final status.
///
/// Call [`UploadedFiles::finish`] with the status the client got. Dropping it without a status
/// means the client left while the backend was working: the 499 rule applies. Drop it only after
/// the upstream exchange has been dropped (D12: nginx-upload-module deleted while the backend could still
/// be reading).
#[derive(Debug)]
pub struct UploadedFiles {
    store: Store,
    files: Vec<StoredFile>,
    cleanup: CleanupPolicy,
    finished: bool,
}

/// What [`UploadedFiles::finish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupOutcome {
    /// The status is in the cleanup list: this many files were unlinked.
    Deleted(usize),
    /// The status is not in the list: the files stay (the sweeper removes them after its TTL).
    Kept(usize),
}

impl UploadedFiles {
    /// The stored files in creation order.
    pub fn files(&self) -> &[StoredFile] {
        &self.files
    }

    /// Applies the cleanup table for the final status (499 = the client left); the files are
    /// gone when this returns.
    pub async fn finish(mut self, final_status: u16) -> CleanupOutcome {
        self.finished = true;
        let Some(job) = self.cleanup_job(final_status) else {
            return CleanupOutcome::Kept(self.files.len());
        };
        CleanupOutcome::Deleted(writers::start(job).await.unwrap_or(0))
    }

    /// The unlinking to do for `status`, or `None` when the files stay.
    fn cleanup_job(&mut self, status: u16) -> Option<impl FnOnce() -> usize + Send + 'static> {
        if !self.cleanup.deletes(status) {
            return None;
        }
        let (store, files) = (self.store.clone(), std::mem::take(&mut self.files));
        Some(move || {
            let mut deleted = 0;
            for file in &files {
                match store.remove(&file.store_name) {
                    Ok(()) => deleted += 1,
                    Err(e) => {
                        tracing::warn!(path = %file.path.display(), error = %e, "could not remove an uploaded file")
                    }
                }
            }
            deleted
        })
    }
}

impl Drop for UploadedFiles {
    fn drop(&mut self) {
        if !self.finished
            && let Some(job) = self.cleanup_job(499)
        {
            drop(writers::start(job));
        }
    }
}
