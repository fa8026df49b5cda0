//! Who deletes stored files, and when.
//!
//! While the body is received, every created file is owned by a [`FileSet`] guard: any error, or
//! the receiving future being dropped (the client left mid-upload), unlinks all of them at once,
//! so an aborted upload leaves nothing behind. Once the form is complete the files move into
//! [`UploadedFiles`], which implements the anchor's cleanup table: delete after the listed final
//! statuses, keep otherwise.

use super::config::CleanupPolicy;
use super::fields::StoredFile;
use super::store::Store;

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

    /// The upload completed: its files now follow the cleanup table.
    pub(crate) fn into_uploaded(mut self, files: Vec<StoredFile>, cleanup: CleanupPolicy) -> UploadedFiles {
        self.names.clear();
        UploadedFiles { store: self.store.clone(), files, cleanup, finished: false }
    }
}

impl Drop for FileSet {
    fn drop(&mut self) {
        for name in self.names.drain(..) {
            if let Err(e) = self.store.remove(&name) {
                tracing::warn!(%name, error = %e, "could not remove an aborted upload file");
            }
        }
    }
}

/// The completed files of one upload, pending the request's final status.
///
/// Call [`UploadedFiles::finish`] with the status the client got. Dropping it without a status
/// means the client left while the backend was working: the 499 rule applies. Drop it only after
/// the upstream exchange has been dropped (D12: the anchor deleted while the backend could still
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

    /// Applies the cleanup table for the final status (499 = the client left).
    pub fn finish(mut self, final_status: u16) -> CleanupOutcome {
        self.finished = true;
        self.apply(final_status)
    }

    fn apply(&mut self, status: u16) -> CleanupOutcome {
        if !self.cleanup.deletes(status) {
            return CleanupOutcome::Kept(self.files.len());
        }
        let mut deleted = 0;
        for file in &self.files {
            match self.store.remove(&file.store_name) {
                Ok(()) => deleted += 1,
                Err(e) => {
                    tracing::warn!(path = %file.path.display(), error = %e, "could not remove an uploaded file")
                }
            }
        }
        CleanupOutcome::Deleted(deleted)
    }
}

impl Drop for UploadedFiles {
    fn drop(&mut self) {
        if !self.finished {
            self.apply(499);
        }
    }
}
