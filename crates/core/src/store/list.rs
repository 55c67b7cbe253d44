//! Listing published sets (only directories with a valid manifest count;
//! everything else visible is reported) and deleting one atomically.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::PathBuf;

use super::layout::DELETING_PREFIX;
use super::manifest::{Manifest, ManifestError};
use super::{io_error, sync_dir, Store, StoreError};
use crate::model::{check_file_name, BackupKind, UnsafeFileName};
use crate::retention::SetInfo;

/// A published set on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSet {
    /// The instance directory it lies in.
    pub instance_id: String,
    /// The set directory's name (unique within the instance; retention's id).
    pub dir_name: String,
    /// The set directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl LocalSet {
    /// The set as retention sees it (id = directory name).
    pub fn set_info(&self) -> SetInfo {
        SetInfo {
            id: self.dir_name.clone(),
            kind: self.manifest.kind,
            start: self.manifest.start,
            finish: self.manifest.finish,
            manual: self.manifest.meta.is_manual(),
        }
    }
}

/// A visible entry of the download directory that is not a published set.
#[derive(Debug)]
pub struct IgnoredEntry {
    /// The entry.
    pub path: PathBuf,
    /// Why it does not count.
    pub reason: IgnoredReason,
}

/// Why a visible entry is not a published set.
#[derive(Debug, thiserror::Error)]
pub enum IgnoredReason {
    /// A file or symlink where set directories live.
    #[error("not a directory")]
    NotADirectory,
    /// A directory whose name cannot be an instance id.
    #[error("not an instance directory (the name {})", .0.why)]
    NotAnInstance(UnsafeFileName),
    /// A directory whose name cannot be a set directory's.
    #[error("not a set directory (the name {})", .0.why)]
    NotASet(UnsafeFileName),
    /// A directory without a usable manifest.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A manifest that names another instance.
    #[error("manifest.json belongs to instance {0}")]
    OtherInstance(String),
}

/// Published sets, oldest first, and what was seen but does not count.
#[derive(Debug, Default)]
pub struct Listing {
    /// Sets with a valid manifest, by instance then start time.
    pub sets: Vec<LocalSet>,
    /// Visible entries that are not published sets.
    pub ignored: Vec<IgnoredEntry>,
}

impl Listing {
    /// The published set of this kind and backup id, if any.
    pub fn find(&self, kind: BackupKind, backup_id: &str) -> Option<&LocalSet> {
        self.sets
            .iter()
            .find(|set| set.manifest.kind == kind && set.manifest.backup_id == backup_id)
    }

    /// The sets as retention sees them.
    pub fn set_infos(&self) -> Vec<SetInfo> {
        self.sets.iter().map(LocalSet::set_info).collect()
    }
}

impl Store {
    /// The published sets of one instance, oldest first. A missing instance
    /// directory is an empty listing. Hidden entries (private state) are
    /// skipped; other entries without a valid manifest are reported in
    /// [`Listing::ignored`].
    pub fn list_sets(&self, instance_id: &str) -> Result<Listing, StoreError> {
        let instance_dir = self.instance_dir(instance_id)?;
        let mut listing = Listing::default();
        let entries = match fs::read_dir(&instance_dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(listing),
            Err(err) => return Err(io_error("list", &instance_dir)(err)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error("list", &instance_dir))?;
            let path = entry.path();
            let file_name = entry.file_name();
            if file_name.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let named = if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                plain_name(&file_name).map_err(IgnoredReason::NotASet)
            } else {
                Err(IgnoredReason::NotADirectory)
            };
            let dir_name = match named {
                Ok(name) => name.to_string(),
                Err(reason) => {
                    listing.ignored.push(IgnoredEntry { path, reason });
                    continue;
                }
            };
            match Manifest::read_from(&path) {
                Ok(manifest) if manifest.instance_id != instance_id => {
                    listing.ignored.push(IgnoredEntry {
                        path,
                        reason: IgnoredReason::OtherInstance(manifest.instance_id),
                    });
                }
                Ok(manifest) => listing.sets.push(LocalSet {
                    instance_id: instance_id.to_string(),
                    dir_name,
                    dir: path,
                    manifest,
                }),
                Err(err) => listing.ignored.push(IgnoredEntry {
                    path,
                    reason: err.into(),
                }),
            }
        }
        listing
            .sets
            .sort_by(|a, b| (a.manifest.start, &a.dir_name).cmp(&(b.manifest.start, &b.dir_name)));
        listing.ignored.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(listing)
    }

    /// The published sets of every instance directory, by instance then
    /// start time. A missing download directory is an empty listing.
    pub fn list_all(&self) -> Result<Listing, StoreError> {
        let mut listing = Listing::default();
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(listing),
            Err(err) => return Err(io_error("list", &self.root)(err)),
        };
        let mut instances = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error("list", &self.root))?;
            let name = entry.file_name();
            if name.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                listing.ignored.push(IgnoredEntry {
                    path: entry.path(),
                    reason: IgnoredReason::NotADirectory,
                });
                continue;
            }
            match plain_name(&name) {
                Ok(name) => instances.push(name.to_string()),
                Err(err) => listing.ignored.push(IgnoredEntry {
                    path: entry.path(),
                    reason: IgnoredReason::NotAnInstance(err),
                }),
            }
        }
        instances.sort();
        for instance_id in instances {
            let Listing { sets, ignored } = self.list_sets(&instance_id)?;
            listing.sets.extend(sets);
            listing.ignored.extend(ignored);
        }
        Ok(listing)
    }

    /// Delete a published set: it is first renamed to a hidden
    /// `.deleting-*` name (so a crash never leaves a half-deleted directory
    /// that looks published), then removed. Refuses when the directory no
    /// longer holds the listed set.
    pub fn delete_set(&self, set: &LocalSet) -> Result<(), StoreError> {
        // The path is rebuilt from checked names rather than trusted.
        let instance_dir = self.instance_dir(&set.instance_id)?;
        let dir = instance_dir.join(&set.dir_name);
        let stale = || StoreError::Stale {
            dir: dir.clone(),
            kind: set.manifest.kind,
            backup_id: set.manifest.backup_id.clone(),
        };
        if check_file_name(&set.dir_name).is_err() {
            return Err(stale());
        }
        match Manifest::read_from(&dir) {
            Ok(on_disk)
                if on_disk.kind == set.manifest.kind
                    && on_disk.backup_id == set.manifest.backup_id => {}
            _ => return Err(stale()),
        }
        let doomed = instance_dir.join(format!("{DELETING_PREFIX}{}", set.dir_name));
        if fs::symlink_metadata(&doomed).is_ok() {
            fs::remove_dir_all(&doomed).map_err(io_error("remove leftover", &doomed))?;
        }
        fs::rename(&dir, &doomed)
            .map_err(io_error(format!("rename {} to", dir.display()), &doomed))?;
        sync_dir(&instance_dir)?;
        // The set is no longer published; if removing its bytes fails they
        // stay hidden until clean_leftovers runs again.
        if let Err(err) = fs::remove_dir_all(&doomed) {
            tracing::warn!(dir = %doomed.display(), error = %err, "could not remove a deleted set's files; the next run retries");
        }
        Ok(())
    }
}

/// A directory entry's name as a plain UTF-8 file name. A name that is not
/// UTF-8 is refused too: read back lossily it would name another path.
fn plain_name(name: &OsStr) -> Result<&str, UnsafeFileName> {
    match name.to_str() {
        Some(name) => check_file_name(name),
        None => Err(UnsafeFileName {
            name: name.to_string_lossy().into_owned(),
            why: "is not UTF-8",
        }),
    }
}
