//! Atomic publishing of a verified set: partial files are moved into a
//! hidden staging directory, an encrypted set's decryption key is written
//! beside them (0600), the manifest is written last, and one rename makes
//! the whole set appear.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::layout::{set_dir_name, KEY_FILE, MANIFEST_FILE, STAGING_PREFIX};
use super::manifest::{EncryptionRecord, FileRecord, Manifest, MANIFEST_FORMAT};
use super::{check_instance_id, io_error, sync_dir, LocalSet, Store, StoreError};
use crate::encryption::Encryption;
use crate::model::{check_file_name, BackupKind, BackupMeta};
use crate::private_files::{replace_file, Durability, FileModes};

/// A verified set ready to publish.
#[derive(Debug, Clone)]
pub struct SetToPublish {
    /// The instance.
    pub instance_id: String,
    /// The instance's region.
    pub region: String,
    /// Redis, PostgreSQL base or log.
    pub kind: BackupKind,
    /// The API's backup id.
    pub backup_id: String,
    /// When the backup started.
    pub start: DateTime<Utc>,
    /// When it finished, if the API said.
    pub finish: Option<DateTime<Utc>>,
    /// Each file: the complete, verified partial file on the same file
    /// system (normally under [`Store::partial_dir`]), and its record.
    pub files: Vec<(PathBuf, FileRecord)>,
    /// How the files are encrypted, for an encrypted Redis backup; its key
    /// (when the API gave one) is written to [`KEY_FILE`] in the set.
    pub encryption: Option<Encryption>,
    /// What the API said about the set, recorded in the manifest.
    pub meta: BackupMeta,
}

/// Removes a staging directory from the in-process registry when dropped.
struct StagingClaim<'a> {
    store: &'a Store,
    dir: PathBuf,
}

impl Drop for StagingClaim<'_> {
    fn drop(&mut self) {
        self.store.lock_staging().remove(&self.dir);
    }
}

impl Store {
    /// Publish `set`: afterwards `<instance>/<set dir>/` holds every file
    /// and `manifest.json`, and the set's partial directory is gone.
    ///
    /// A file name that is not a plain name fails the set before anything
    /// is written. A crash at any point leaves either no set directory or a
    /// complete one (a hidden `.tmp-*` leftover is removed by
    /// [`Store::clean_leftovers`]). An already published set (same kind and
    /// backup id) is never overwritten. On failure the partial files are
    /// moved back where they were, so the download need not start over.
    pub fn publish(&self, set: &SetToPublish) -> Result<LocalSet, StoreError> {
        self.check_publishable(set)?;
        let dir_name = set_dir_name(set.start, set.kind, &set.backup_id);
        let instance_dir = self.root.join(&set.instance_id);
        let final_dir = instance_dir.join(&dir_name);
        let already = |dir: PathBuf| StoreError::AlreadyPublished {
            instance_id: set.instance_id.clone(),
            kind: set.kind,
            backup_id: set.backup_id.clone(),
            dir,
        };
        if fs::symlink_metadata(&final_dir).is_ok() {
            return Err(already(final_dir));
        }
        if let Some(existing) = self
            .list_sets(&set.instance_id)?
            .find(set.kind, &set.backup_id)
        {
            return Err(already(existing.dir.clone()));
        }

        let root_existed = self.root.is_dir();
        self.modes
            .create_dir_all(&instance_dir)
            .map_err(io_error("create directory", &instance_dir))?;
        if !root_existed {
            if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        sync_dir(&self.root)?;

        let staging_dir = instance_dir.join(format!("{STAGING_PREFIX}{dir_name}"));
        self.lock_staging().insert(staging_dir.clone());
        let _claim = StagingClaim {
            store: self,
            dir: staging_dir.clone(),
        };
        if fs::symlink_metadata(&staging_dir).is_ok() {
            // A leftover of a crashed attempt at this very set.
            fs::remove_dir_all(&staging_dir)
                .map_err(io_error("remove leftover staging directory", &staging_dir))?;
        }
        self.modes
            .create_dir(&staging_dir)
            .map_err(io_error("create directory", &staging_dir))?;

        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            instance_id: set.instance_id.clone(),
            service: set.kind.service(),
            kind: set.kind,
            backup_id: set.backup_id.clone(),
            region: set.region.clone(),
            start: set.start,
            finish: set.finish,
            published_at: self.clock.now(),
            tcbackup_version: env!("CARGO_PKG_VERSION").to_string(),
            files: set.files.iter().map(|(_, record)| record.clone()).collect(),
            encrypted: set.encryption.is_some(),
            encryption: set.encryption.as_ref().map(|e| EncryptionRecord {
                algorithm: e.algorithm.clone(),
                kms_key_id: Some(e.kms_key_id.clone()).filter(|id| !id.is_empty()),
                key_file: e.key_held().then(|| KEY_FILE.to_string()),
            }),
            meta: set.meta.clone(),
        };
        let mut moved: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(set.files.len());
        let staged = stage(set, self.modes, &staging_dir, &manifest, &mut moved).and_then(|()| {
            fs::rename(&staging_dir, &final_dir).map_err(io_error(
                format!("rename {} to", staging_dir.display()),
                &final_dir,
            ))
        });
        if let Err(err) = staged {
            for (from, to) in moved.iter().rev() {
                if let Err(undo) = fs::rename(to, from) {
                    tracing::warn!(file = %from.display(), error = %undo, "could not move a verified file back to the partial area after a failed publish");
                }
            }
            if let Err(cleanup) = fs::remove_dir_all(&staging_dir) {
                tracing::warn!(dir = %staging_dir.display(), error = %cleanup, "could not remove a staging directory; the next run removes it");
            }
            return Err(err);
        }

        // The set is visible and complete; from here on failures are
        // reported but do not unpublish it.
        if let Err(err) = sync_dir(&instance_dir) {
            tracing::warn!(error = %err, "published set may not survive a power loss");
        }
        let partial = self.partial_path(&set.instance_id, set.kind, &set.backup_id);
        match fs::remove_dir_all(&partial) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(dir = %partial.display(), error = %err, "could not remove the partial directory of a published set; clean_partials removes it later");
            }
        }
        Ok(LocalSet {
            instance_id: set.instance_id.clone(),
            dir_name,
            dir: final_dir,
            manifest,
        })
    }

    /// Every check that needs no disk access; a refused set writes nothing.
    fn check_publishable(&self, set: &SetToPublish) -> Result<(), StoreError> {
        check_instance_id(&set.instance_id)?;
        if set.files.is_empty() {
            return Err(StoreError::EmptySet {
                instance_id: set.instance_id.clone(),
                kind: set.kind,
                backup_id: set.backup_id.clone(),
            });
        }
        let mut names = HashSet::new();
        for (_, record) in &set.files {
            check_file_name(&record.name).map_err(|source| StoreError::UnsafeFileName {
                instance_id: set.instance_id.clone(),
                kind: set.kind,
                backup_id: set.backup_id.clone(),
                source,
            })?;
            let why = if record.name == MANIFEST_FILE {
                Some("reserved for the manifest")
            } else if record.name == KEY_FILE {
                Some("reserved for the decryption key")
            } else if !names.insert(record.name.as_str()) {
                Some("listed twice")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(StoreError::ConflictingFileName {
                    instance_id: set.instance_id.clone(),
                    kind: set.kind,
                    backup_id: set.backup_id.clone(),
                    name: record.name.clone(),
                    why,
                });
            }
        }
        Ok(())
    }
}

/// Move every file into the staging directory and write the manifest;
/// records each move in `moved` so the caller can undo it.
fn stage(
    set: &SetToPublish,
    modes: FileModes,
    staging_dir: &Path,
    manifest: &Manifest,
    moved: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<(), StoreError> {
    for (partial, record) in &set.files {
        let file = File::open(partial).map_err(io_error("open", partial))?;
        let metadata = file.metadata().map_err(io_error("inspect", partial))?;
        if !metadata.is_file() || metadata.len() != record.size {
            return Err(StoreError::SizeMismatch {
                path: partial.clone(),
                expected: record.size,
                actual: metadata.len(),
            });
        }
        // The data must be on disk before a name that says "published"
        // points at it.
        file.sync_all().map_err(io_error("sync", partial))?;
        drop(file);
        let target = staging_dir.join(&record.name);
        fs::rename(partial, &target)
            .map_err(io_error(format!("move {} to", partial.display()), &target))?;
        moved.push((partial.clone(), target));
    }
    if let Some(key) = set.encryption.as_ref().and_then(|e| e.key.as_ref()) {
        // Owner only whatever `group_readable` says: whoever holds the key
        // and the files holds the data. Written before the manifest, so a
        // published encrypted set always has it.
        write_synced(
            FileModes::PRIVATE,
            staging_dir,
            KEY_FILE,
            key.expose().as_bytes(),
        )?;
    }
    let json = serde_json::to_vec_pretty(manifest).map_err(|source| StoreError::Encode {
        path: staging_dir.join(MANIFEST_FILE),
        source,
    })?;
    write_synced(modes, staging_dir, MANIFEST_FILE, &json)?;
    sync_dir(staging_dir)
}

/// Write `dir/name` through a temporary file (created with `modes`, never
/// through a symbolic link), fsynced, then renamed.
pub(super) fn write_synced(
    modes: FileModes,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let temporary = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    replace_file(&temporary, &target, bytes, modes.file(), Durability::Synced).map_err(io_error(
        format!("write {} and rename it to", temporary.display()),
        &target,
    ))
}
