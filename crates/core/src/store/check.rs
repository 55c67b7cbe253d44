//! Re-checking a published set against its manifest (`tcbackup verify`):
//! each file's size and SHA-256, streamed with a fixed buffer.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::layout::MANIFEST_FILE;
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
}

impl VerifyReport {
    /// Whether every file matches its manifest record.
    pub fn is_ok(&self) -> bool {
        self.files
            .iter()
            .all(|file| file.outcome == FileOutcome::Ok)
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
            let listed = name == MANIFEST_FILE || set.manifest.files.iter().any(|f| f.name == name);
            if !listed {
                extra_files.push(name);
            }
        }
        extra_files.sort();
        Ok(VerifyReport {
            instance_id: set.instance_id.clone(),
            dir_name: set.dir_name.clone(),
            files,
            extra_files,
        })
    }
}

fn check_file(path: &std::path::Path, expected_size: u64, expected_sha256: &str) -> FileOutcome {
    let unreadable = |err: io::Error| FileOutcome::Unreadable {
        error: err.to_string(),
    };
    let mut file = match File::open(path) {
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
