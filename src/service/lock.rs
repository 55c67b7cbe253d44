//! The run lock: one sync cycle at a time per download directory, whether it
//! comes from the daemon, a `--now` run or the timer unit.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another tcbackup holds it.
    #[error("another tcbackup run holds the lock {path} (a daemon or a --now run); wait for it to finish")]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be opened.
    #[error("cannot open the lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Take the lock `<dir>/.lock` without waiting.
    pub fn try_acquire(dir: &Path) -> Result<RunLock, LockError> {
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| LockError::Io {
                path: path.clone(),
                source,
            })?;
        match FileExt::try_lock_exclusive(&file) {
            Ok(true) => Ok(RunLock { _file: file, path }),
            Ok(false) => Err(LockError::Busy { path }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(LockError::Busy { path }),
            Err(source) => Err(LockError::Io { path, source }),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::try_acquire(dir.path()).unwrap();
        let second = RunLock::try_acquire(dir.path());
        assert!(matches!(second, Err(LockError::Busy { .. })), "{second:?}");
        drop(first);
        assert!(RunLock::try_acquire(dir.path()).is_ok());
    }
}
