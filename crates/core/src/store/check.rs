//! Re-checking a published set against its manifest (`tcbackup verify`):
//! each file's size and SHA-256, streamed with a fixed buffer (never through
//! a symbolic link put in a file's place), and for an
//! encrypted set its decryption key file: present, a regular file, not
//! empty, and readable by the owner only.

use std::fmt;
use std::fs;
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::layout::{KEY_FILE, MANIFEST_FILE};
use super::{LocalSet, Store, StoreError};

/// Read buffer for hashing; memory does not grow with file size.
const BUFFER_BYTES: usize = 1 << 20;

/// The result of verifying one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The instance.
    pub instance_id: String,
    /// The set directory name.
    pub dir_name: String,
    /// One check per manifest file, in manifest order.
    pub files: Vec<FileCheck>,
    /// Files in the directory that the manifest does not list (reported,
    /// not a failure).
    pub extra_files: Vec<String>,
    /// The decryption key of an encrypted set.
    pub key: KeyOutcome,
}

impl VerifyReport {
    /// Whether every file matches its manifest record and an encrypted
    /// set's key file is as published (or the API never gave a key).
    pub fn is_ok(&self) -> bool {
        self.files
            .iter()
            .all(|file| file.outcome == FileOutcome::Ok)
            && self.key.is_ok()
    }
}

/// What verifying an encrypted set's key file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome {
    /// The set is not encrypted.
    NotEncrypted,
    /// The key file is there, not empty, owner-only.
    Ok,
    /// The API gave no key (a key held by KMS): nothing to check, but the
    /// set cannot be decrypted with what tcbackup holds.
    NotHeld,
    /// The key file is gone.
    Missing,
    /// Not a regular file (a symbolic link, a directory).
    NotAFile,
    /// The key file is empty.
    Empty,
    /// Others than the owner may read or change it.
    NotPrivate {
        /// Its permission bits.
        mode: u32,
    },
    /// Its metadata could not be read.
    Unreadable {
        /// The OS error.
        error: String,
    },
}

impl KeyOutcome {
    /// Whether the key (or its documented absence) is as published.
    pub fn is_ok(&self) -> bool {
        matches!(
            self,
            KeyOutcome::NotEncrypted | KeyOutcome::Ok | KeyOutcome::NotHeld
        )
    }
}

impl fmt::Display for KeyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOutcome::NotEncrypted => f.write_str("not encrypted"),
            KeyOutcome::Ok => write!(f, "{KEY_FILE} present, owner only"),
            KeyOutcome::NotHeld => f.write_str(
                "no key held: the API gave none (KMS-managed key?); this copy cannot be decrypted without it",
            ),
            KeyOutcome::Missing => write!(f, "{KEY_FILE} is missing: the encrypted files cannot be decrypted without it"),
            KeyOutcome::NotAFile => write!(f, "{KEY_FILE} is not a regular file"),
            KeyOutcome::Empty => write!(f, "{KEY_FILE} is empty"),
            KeyOutcome::NotPrivate { mode } => write!(
                f,
                "{KEY_FILE} has mode {mode:04o}; others than the owner may access it (chmod 600)"
            ),
            KeyOutcome::Unreadable { error } => write!(f, "{KEY_FILE} unreadable: {error}"),
        }
    }
}

/// The check of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// The file name.
    pub name: String,
    /// What was found.
    pub outcome: FileOutcome,
}

/// What verifying one file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// Size and SHA-256 match.
    Ok,
    /// The file is gone.
    Missing,
    /// The size differs (truncated or grown).
    SizeMismatch {
        /// The size in the manifest.
        expected: u64,
        /// The size on disk.
        actual: u64,
    },
    /// The size matches but the contents differ.
    DigestMismatch {
        /// The SHA-256 in the manifest.
        expected: String,
        /// The SHA-256 of the file.
        actual: String,
    },
    /// The file could not be read.
    Unreadable {
        /// The OS error.
        error: String,
    },
}

impl fmt::Display for FileOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileOutcome::Ok => f.write_str("ok"),
            FileOutcome::Missing => f.write_str("missing"),
            FileOutcome::SizeMismatch { expected, actual } => {
                write!(f, "size {actual} bytes, manifest says {expected}")
            }
            FileOutcome::DigestMismatch { expected, actual } => {
                write!(f, "sha256 {actual}, manifest says {expected}")
            }
            FileOutcome::Unreadable { error } => write!(f, "unreadable: {error}"),
        }
    }
}

impl Store {
    /// Re-check every file of `set` against its manifest: size first, then
    /// SHA-256 over the whole file. Blocking and CPU-heavy: run it in
    /// `spawn_blocking`.
    pub fn verify_set(&self, set: &LocalSet) -> Result<VerifyReport, StoreError> {
        let dir = self.instance_dir(&set.instance_id)?.join(&set.dir_name);
        let files = set
            .manifest
            .files
            .iter()
            .map(|record| FileCheck {
                name: record.name.clone(),
                outcome: check_file(&dir.join(&record.name), record.size, &record.sha256),
            })
            .collect();
        let mut extra_files = Vec::new();
        let entries = fs::read_dir(&dir).map_err(super::io_error("list", &dir))?;
        for entry in entries {
            let entry = entry.map_err(super::io_error("list", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let listed = name == MANIFEST_FILE
                || (name == KEY_FILE && set.manifest.encrypted)
                || set.manifest.files.iter().any(|f| f.name == name);
            if !listed {
                extra_files.push(name);
            }
        }
        extra_files.sort();
        let key = match &set.manifest.encryption {
            None => KeyOutcome::NotEncrypted,
            Some(e) if e.key_file.is_none() => KeyOutcome::NotHeld,
            Some(_) => check_key(&dir.join(KEY_FILE)),
        };
        Ok(VerifyReport {
            instance_id: set.instance_id.clone(),
            dir_name: set.dir_name.clone(),
            files,
            extra_files,
            key,
        })
    }
}

/// The key file's metadata, without following a link and without reading
/// the key.
fn check_key(path: &std::path::Path) -> KeyOutcome {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return KeyOutcome::Missing,
        Err(err) => {
            return KeyOutcome::Unreadable {
                error: err.to_string(),
            }
        }
    };
    let mode = metadata.permissions().mode() & 0o7777;
    if !metadata.is_file() {
        KeyOutcome::NotAFile
    } else if mode & 0o077 != 0 {
        KeyOutcome::NotPrivate { mode }
    } else if metadata.len() == 0 {
        KeyOutcome::Empty
    } else {
        KeyOutcome::Ok
    }
}

fn check_file(path: &std::path::Path, expected_size: u64, expected_sha256: &str) -> FileOutcome {
    let unreadable = |err: io::Error| FileOutcome::Unreadable {
        error: err.to_string(),
    };
    // A link put in place of a published file is not what was published.
    let mut file = match crate::private_files::open_read(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return FileOutcome::Missing,
        Err(err) => return unreadable(err),
    };
    let size = match file.metadata() {
        Ok(metadata) => metadata.len(),
        Err(err) => return unreadable(err),
    };
    if size != expected_size {
        return FileOutcome::SizeMismatch {
            expected: expected_size,
            actual: size,
        };
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; BUFFER_BYTES];
    let mut read_total: u64 = 0;
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
                read_total += n as u64;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return unreadable(err),
        }
    }
    if read_total != expected_size {
        // The file changed size while it was read.
        return FileOutcome::SizeMismatch {
            expected: expected_size,
            actual: read_total,
        };
    }
    let actual = hex::encode(hasher.finalize());
    if actual == expected_sha256 {
        FileOutcome::Ok
    } else {
        FileOutcome::DigestMismatch {
            expected: expected_sha256.to_string(),
            actual,
        }
    }
}
