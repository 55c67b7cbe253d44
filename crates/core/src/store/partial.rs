//! The private areas of the download directory: per-backup partial
//! directories handed to the transfer engine, their cleanup, and the
//! removal of leftovers of interrupted publishes and deletes.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::layout::{
    partial_dir_name, DELETING_PREFIX, LOCK_FILE, OWNER_FILE, PARTIAL_DIR, STAGING_PREFIX,
};
use super::publish::write_synced;
use super::{check_instance_id, io_error, Store, StoreError, StoreLock};
use crate::model::BackupKind;

/// Which backup a partial directory belongs to (its `.owner.json`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartialOwner {
    /// The instance.
    pub instance_id: String,
    /// The kind.
    pub kind: BackupKind,
    /// The API's backup id (the directory name holds only a sanitised form).
    pub backup_id: String,
}

/// Why a partial directory was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartialRemoval {
    /// Its backup is published (a crash came between publish and cleanup).
    Published,
    /// The API no longer lists its backup and it was idle for the grace period.
    NotListed {
        /// How long nothing in it changed.
        idle: Duration,
    },
    /// It has no readable owner and was idle for the grace period.
    Unidentified {
        /// How long nothing in it changed.
        idle: Duration,
    },
}

impl fmt::Display for PartialRemoval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::duration::format_duration;
        match self {
            PartialRemoval::Published => f.write_str("the backup is published"),
            PartialRemoval::NotListed { idle } => write!(
                f,
                "the API no longer lists the backup and it was idle for {}",
                format_duration(*idle)
            ),
            PartialRemoval::Unidentified { idle } => write!(
                f,
                "it belongs to no known backup and was idle for {}",
                format_duration(*idle)
            ),
        }
    }
}

/// A partial directory [`Store::clean_partials`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedPartial {
    /// The directory.
    pub path: PathBuf,
    /// Whose it was, when known.
    pub owner: Option<PartialOwner>,
    /// Why it was removed.
    pub reason: PartialRemoval,
    /// Bytes freed.
    pub bytes: u64,
}

impl Store {
    /// The private directory for a backup's partial files,
    /// `<download_dir>/.partial/<instance>/<kind>_<id>/`, created (with the
    /// download directory) if needed. The transfer engine keeps
    /// `<file>.part` and `<file>.part.json` there.
    pub fn partial_dir(
        &self,
        instance_id: &str,
        kind: BackupKind,
        backup_id: &str,
    ) -> Result<PathBuf, StoreError> {
        check_instance_id(instance_id)?;
        let dir = self.partial_path(instance_id, kind, backup_id);
        self.modes
            .create_dir_all(&dir)
            .map_err(io_error("create directory", &dir))?;
        if fs::symlink_metadata(dir.join(OWNER_FILE)).is_err() {
            let owner = PartialOwner {
                instance_id: instance_id.to_string(),
                kind,
                backup_id: backup_id.to_string(),
            };
            let json = serde_json::to_vec(&owner).map_err(|source| StoreError::Encode {
                path: dir.join(OWNER_FILE),
                source,
            })?;
            write_synced(self.modes, &dir, OWNER_FILE, &json)?;
        }
        Ok(dir)
    }

    /// Where a backup's partial files live; the instance id must be checked.
    pub(super) fn partial_path(
        &self,
        instance_id: &str,
        kind: BackupKind,
        backup_id: &str,
    ) -> PathBuf {
        self.root
            .join(PARTIAL_DIR)
            .join(instance_id)
            .join(partial_dir_name(kind, backup_id))
    }

    /// Remove partial directories that are no longer needed: those of
    /// published backups at once, and those of backups not in `active`
    /// (instance, kind, backup id: every backup the API still lists) once
    /// nothing in them changed for `grace`. Returns what was removed.
    ///
    /// Call it after a cycle that listed every instance: a partial of an
    /// instance whose listing failed looks "no longer listed".
    pub fn clean_partials(
        &self,
        active: &HashSet<(String, BackupKind, String)>,
        grace: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<RemovedPartial>, StoreError> {
        let partial_root = self.root.join(PARTIAL_DIR);
        let mut removed = Vec::new();
        for (instance_name, instance_path) in subdirectories(&partial_root)? {
            // Listed at most once per instance, and only if a partial
            // directory of it has an owner to look up.
            let mut published: Option<HashSet<(BackupKind, String)>> = None;
            for (_, dir) in subdirectories(&instance_path)? {
                let owner = read_owner(&dir).filter(|owner| owner.instance_id == instance_name);
                let idle = idle_for(&dir, now);
                let reason = match &owner {
                    Some(owner) => {
                        let published =
                            published.get_or_insert_with(|| self.published_backups(&instance_name));
                        if published.contains(&(owner.kind, owner.backup_id.clone())) {
                            Some(PartialRemoval::Published)
                        } else if idle < grace
                            || active.contains(&(
                                owner.instance_id.clone(),
                                owner.kind,
                                owner.backup_id.clone(),
                            ))
                        {
                            None
                        } else {
                            Some(PartialRemoval::NotListed { idle })
                        }
                    }
                    None if idle >= grace => Some(PartialRemoval::Unidentified { idle }),
                    None => None,
                };
                let Some(reason) = reason else { continue };
                let bytes = dir_size(&dir);
                fs::remove_dir_all(&dir).map_err(io_error("remove", &dir))?;
                removed.push(RemovedPartial {
                    path: dir,
                    owner,
                    reason,
                    bytes,
                });
            }
            // An emptied instance directory goes too; a failure (not empty,
            // raced with a new partial) is harmless.
            let _ = fs::remove_dir(&instance_path);
        }
        Ok(removed)
    }

    /// The (kind, backup id) of every published set of an instance; an
    /// instance that cannot be listed has none, so no partial directory is
    /// removed as "published" on a guess.
    fn published_backups(&self, instance_id: &str) -> HashSet<(BackupKind, String)> {
        self.list_sets(instance_id)
            .map(|listing| {
                listing
                    .sets
                    .into_iter()
                    .map(|set| (set.manifest.kind, set.manifest.backup_id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Remove leftovers of interrupted publishes (`.tmp-*`) and deletes
    /// (`.deleting-*`) in every instance directory, except staging
    /// directories of publishes running in this process. Returns what was
    /// removed.
    ///
    /// Why this cannot remove another process's live directory: every
    /// tcbackup that creates `.tmp-*` or `.deleting-*` names (a sync cycle
    /// publishing or pruning, `tcbackup prune`) does so only while holding
    /// this download directory's lock, and `held` proves that this process
    /// holds it now. So no other process is live here, and any such name
    /// not registered by this process is a leftover of one that died.
    pub fn clean_leftovers(&self, held: &StoreLock) -> Result<Vec<PathBuf>, StoreError> {
        let own_lock = self.root.join(LOCK_FILE);
        if held.path() != own_lock {
            return Err(StoreError::NotLocked {
                root: self.root.clone(),
                held: held.path().to_path_buf(),
            });
        }
        let mut removed = Vec::new();
        for (name, instance_dir) in subdirectories(&self.root)? {
            if name.starts_with('.') {
                continue;
            }
            for (entry_name, path) in subdirectories(&instance_dir)? {
                let leftover = entry_name.starts_with(STAGING_PREFIX)
                    || entry_name.starts_with(DELETING_PREFIX);
                if !leftover || self.lock_staging().contains(&path) {
                    continue;
                }
                fs::remove_dir_all(&path).map_err(io_error("remove leftover", &path))?;
                removed.push(path);
            }
        }
        Ok(removed)
    }
}

/// The subdirectories of `dir` (not following symlinks) with their names;
/// a missing `dir` has none.
fn subdirectories(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(io_error("list", dir)(err)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            out.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    out.sort();
    Ok(out)
}

fn read_owner(dir: &Path) -> Option<PartialOwner> {
    let bytes = fs::read(dir.join(OWNER_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// How long nothing in `dir` (itself or a direct entry) was modified.
fn idle_for(dir: &Path, now: DateTime<Utc>) -> Duration {
    let mut latest = fs::metadata(dir).and_then(|m| m.modified()).ok();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                latest = Some(latest.map_or(modified, |l| l.max(modified)));
            }
        }
    }
    let Some(latest) = latest else {
        // Unknown age: treat as just touched, so nothing is removed early.
        return Duration::ZERO;
    };
    let latest: DateTime<Utc> = latest.into();
    (now - latest).to_std().unwrap_or(Duration::ZERO)
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.metadata().ok())
                .filter(|metadata| metadata.is_file())
                .map(|metadata| metadata.len())
                .sum()
        })
        .unwrap_or(0)
}
