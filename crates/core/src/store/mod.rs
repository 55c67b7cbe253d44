//! The local store: the only code that writes the download directory.
//!
//! Layout (design.md §2 "Disk layout"):
//! ```text
//! <download_dir>/
//!   .lock                                   held while a cycle runs
//!   .partial/<instance>/<kind>_<id>/        the transfer engine's private area
//!   <instance>/
//!     2024-12-31T155959Z_redis_<id>/        one published set, named by its
//!       <file as the API named it>…         start time (UTC) so `ls` sorts it
//!       manifest.json                       written last: a set without it is
//!                                           not a backup
//!     .tmp-<set dir>/                        a set being published
//!     .deleting-<set dir>/                   a set being deleted
//! ```
//! Every name that starts with a dot is private state; listings skip it.
//! `.tmp-*` and `.deleting-*` left by a process that died are removed by
//! [`Store::clean_leftovers`], which every cycle calls under the lock.
//!
//! Everything the store creates (directories, the lock, owner files,
//! manifests) goes through [`crate::private_files`]: owner-only modes
//! whatever the umask (or group-readable, see [`Store::with_modes`]), and no
//! symbolic link at one of its paths is followed.
//!
//! Invariants: a crash at any point leaves either no set directory or a
//! complete one (publish builds the set in a hidden staging directory and
//! renames it into place; delete renames it to a hidden name first); a
//! published set is never overwritten; no file is written outside
//! `download_dir`, whatever names the API sends.
//!
//! All methods do blocking file I/O: call them from `spawn_blocking` in
//! async code. [`Store`] is cheap to clone and `Send + Sync`.

mod apply;
mod check;
mod layout;
mod list;
mod manifest;
mod partial;
mod publish;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::model::{check_file_name, BackupKind, UnsafeFileName};
use crate::private_files::FileModes;
use tcbackup_signing::clock::Clock;

pub use apply::{ApplyReport, RetentionError};
pub use check::{FileCheck, FileOutcome, KeyOutcome, VerifyReport};
pub use layout::{
    sanitize_backup_id, set_dir_name, KEY_FILE, LOCK_FILE, MANIFEST_FILE, PARTIAL_DIR,
};
pub use list::{IgnoredEntry, IgnoredReason, Listing, LocalSet};
pub use manifest::{
    ContentChecks, EncryptionRecord, FileRecord, Manifest, ManifestError, MANIFEST_FORMAT,
};
pub use partial::{PartialOwner, PartialRemoval, RemovedPartial};
pub use publish::SetToPublish;

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done ("create directory", "rename into place").
        action: String,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The instance id cannot name a directory.
    #[error("instance id {instance_id:?} cannot name a directory")]
    UnsafeInstanceId {
        /// The id as given.
        instance_id: String,
        /// Why.
        #[source]
        source: UnsafeFileName,
    },
    /// A file name from the API is not a plain name; the set fails and
    /// nothing is written.
    #[error("refusing {kind} backup {backup_id} of {instance_id}")]
    UnsafeFileName {
        /// The instance.
        instance_id: String,
        /// The kind.
        kind: BackupKind,
        /// The backup.
        backup_id: String,
        /// The refused name and why.
        #[source]
        source: UnsafeFileName,
    },
    /// The set lists no files.
    #[error("{kind} backup {backup_id} of {instance_id} has no files to publish")]
    EmptySet {
        /// The instance.
        instance_id: String,
        /// The kind.
        kind: BackupKind,
        /// The backup.
        backup_id: String,
    },
    /// Two files of the set have the same name, or a file is named like
    /// the manifest.
    #[error("{kind} backup {backup_id} of {instance_id} cannot hold file {name:?} ({why})")]
    ConflictingFileName {
        /// The instance.
        instance_id: String,
        /// The kind.
        kind: BackupKind,
        /// The backup.
        backup_id: String,
        /// The file name.
        name: String,
        /// "listed twice" or "reserved for the manifest".
        why: &'static str,
    },
    /// The set is already published; published sets are never overwritten.
    #[error("{kind} backup {backup_id} of {instance_id} is already published in {}", dir.display())]
    AlreadyPublished {
        /// The instance.
        instance_id: String,
        /// The kind.
        kind: BackupKind,
        /// The backup.
        backup_id: String,
        /// The published set directory.
        dir: PathBuf,
    },
    /// A partial file is not the size its record says.
    #[error("{} is {actual} bytes but its record says {expected}", path.display())]
    SizeMismatch {
        /// The partial file.
        path: PathBuf,
        /// The size in the record.
        expected: u64,
        /// The size on disk.
        actual: u64,
    },
    /// A manifest or owner file could not be encoded.
    #[error("encode {}", path.display())]
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The set directory no longer holds the set the caller listed.
    #[error("{} no longer holds {kind} backup {backup_id}", dir.display())]
    Stale {
        /// The set directory.
        dir: PathBuf,
        /// The kind the caller expected.
        kind: BackupKind,
        /// The backup the caller expected.
        backup_id: String,
    },
    /// Another process holds the download directory's lock.
    #[error("another tcbackup is running on this download directory (lock {} is held)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// An operation that needs this download directory's lock was given
    /// the lock of another directory.
    #[error("refusing to clean {}: the lock held is {}, not this directory's", root.display(), held.display())]
    NotLocked {
        /// The download directory.
        root: PathBuf,
        /// The lock file that is held.
        held: PathBuf,
    },
}

/// A closure turning an `io::Error` into [`StoreError::Io`].
fn io_error(action: impl Into<String>, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let action = action.into();
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// Flush a directory's entries (new names, renames) to disk.
fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("sync directory", path))
}

/// Refuse an instance id that could not name a directory safely.
fn check_instance_id(instance_id: &str) -> Result<(), StoreError> {
    check_file_name(instance_id)
        .map(|_| ())
        .map_err(|source| StoreError::UnsafeInstanceId {
            instance_id: instance_id.to_string(),
            source,
        })
}

/// The download directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    clock: Arc<dyn Clock>,
    /// The modes of what the store creates.
    modes: FileModes,
    /// Staging directories of publishes in progress in this process, which
    /// [`Store::clean_leftovers`] must not remove.
    staging: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Store {
    /// A store rooted at `download_dir`. Touches nothing on disk: the
    /// directory is created by the first operation that writes. What it
    /// creates is owner-only ([`FileModes::PRIVATE`]).
    pub fn open(download_dir: impl Into<PathBuf>, clock: Arc<dyn Clock>) -> Store {
        Store {
            root: download_dir.into(),
            clock,
            modes: FileModes::PRIVATE,
            staging: Arc::default(),
        }
    }

    /// The same store, creating files and directories with `modes`
    /// (`Config::file_modes`).
    pub fn with_modes(mut self, modes: FileModes) -> Store {
        self.modes = modes;
        self
    }

    /// The modes of what the store creates (also for the transfer engine's
    /// files in the partial area).
    pub fn modes(&self) -> FileModes {
        self.modes
    }

    /// The download directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding an instance's published sets.
    pub fn instance_dir(&self, instance_id: &str) -> Result<PathBuf, StoreError> {
        check_instance_id(instance_id)?;
        Ok(self.root.join(instance_id))
    }

    /// Take the download directory's lock, so two tcbackup processes never
    /// download into, publish into or prune the same directory. Creates the
    /// directory (a cycle is about to write it). The lock is released when
    /// the returned guard is dropped or the process exits.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        use fs4::fs_std::FileExt;
        self.modes
            .create_dir_all(&self.root)
            .map_err(io_error("create directory", &self.root))?;
        let path = self.root.join(LOCK_FILE);
        let file = self
            .modes
            .open(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false),
                &path,
            )
            .map_err(io_error("open lock file", &path))?;
        match FileExt::try_lock_exclusive(&file) {
            Ok(true) => Ok(StoreLock {
                _file: Arc::new(file),
                path,
            }),
            Ok(false) => Err(StoreError::Locked { path }),
            Err(source) => Err(StoreError::Io {
                action: "lock".to_string(),
                path,
                source,
            }),
        }
    }

    fn lock_staging(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        // A poisoned lock only means a panic elsewhere mid-insert of a path;
        // the set is still usable.
        self.staging.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Holds the download directory's lock until the last clone is dropped.
/// Operations that are only safe while no other tcbackup process is live
/// ([`Store::clean_leftovers`]) take one as proof; a clone can go into a
/// blocking task and keeps the lock held while it runs.
#[derive(Debug, Clone)]
pub struct StoreLock {
    _file: Arc<File>,
    path: PathBuf,
}

impl StoreLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests;
