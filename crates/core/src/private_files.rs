//! Private files: the one place that decides the permission bits of what
//! tcbackup creates, and how it opens its own files.
//!
//! Backups are database dumps. Whatever the umask (cron, a shell or a
//! container often run with 022), every file tcbackup creates under
//! `download_dir` is 0600 and every directory 0700; with
//! `group_readable = true` they are 0640 and 0750, so that a backup-reader
//! group can read them (pgBackRest's defaults). The mode is given at
//! creation, so no wider mode ever exists for a moment, and then set again
//! explicitly on the open descriptor, because the umask can only remove
//! bits (a umask of 077 would otherwise turn 0640 into 0600).
//!
//! Files are opened with `O_NOFOLLOW`: a symbolic link planted at a part,
//! sidecar, manifest or lock path is refused with a clear error instead of
//! being written through to wherever it points. Directories are created one
//! level at a time and their mode set through an `O_NOFOLLOW` descriptor.
//!
//! The metrics textfile does not come here: node_exporter, another user,
//! reads it, and it holds nothing private (see `service::metrics`).
//!
//! The module also answers the reverse question for files and directories
//! that tcbackup reads but does not create (the config file, the profile
//! file, `download_dir` itself): who besides the owner may read them.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The permission bits tcbackup gives what it creates. `Default` is owner
/// only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileModes {
    group_readable: bool,
}

impl FileModes {
    /// Owner only: files 0600, directories 0700.
    pub const PRIVATE: FileModes = FileModes {
        group_readable: false,
    };
    /// Group may read: files 0640, directories 0750.
    pub const GROUP_READABLE: FileModes = FileModes {
        group_readable: true,
    };

    /// The modes for the `group_readable` config key.
    pub fn new(group_readable: bool) -> FileModes {
        FileModes { group_readable }
    }

    /// The mode of a created file.
    pub fn file(self) -> u32 {
        if self.group_readable {
            0o640
        } else {
            0o600
        }
    }

    /// The mode of a created directory.
    pub fn dir(self) -> u32 {
        if self.group_readable {
            0o750
        } else {
            0o700
        }
    }

    /// Open `path` with `options` (which say read, write, create, truncate)
    /// without following a symbolic link at `path`; a file it creates gets
    /// [`FileModes::file`], and so does an existing one (it is ours: only
    /// files tcbackup owns are opened this way). Blocking.
    pub fn open(self, options: &mut OpenOptions, path: &Path) -> io::Result<File> {
        let file = options
            .mode(self.file())
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| not_followed(e, path))?;
        file.set_permissions(Permissions::from_mode(self.file()))?;
        Ok(file)
    }

    /// Create the directory `path` (its parent must exist) with
    /// [`FileModes::dir`]; fails if it exists. Blocking.
    pub fn create_dir(self, path: &Path) -> io::Result<()> {
        DirBuilder::new().mode(self.dir()).create(path)?;
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
            .open(path)
            .map_err(|e| not_followed(e, path))?;
        dir.set_permissions(Permissions::from_mode(self.dir()))
    }

    /// Create `path` and every missing parent, each with
    /// [`FileModes::dir`]; directories that exist keep their mode (the
    /// operator's choice for `download_dir`, see [`other_access`]). Blocking.
    pub fn create_dir_all(self, path: &Path) -> io::Result<()> {
        if path.as_os_str().is_empty() || path.is_dir() {
            return Ok(());
        }
        match self.create_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Created meanwhile by another task or process.
            Err(_) if path.is_dir() => return Ok(()),
            Err(e) => return Err(e),
        }
        match path.parent() {
            Some(parent) => self.create_dir_all(parent)?,
            None => return Err(io::Error::other("cannot create the root directory")),
        }
        match self.create_dir(path) {
            Err(_) if path.is_dir() => Ok(()),
            other => other,
        }
    }
}

/// Whether [`replace_file`] fsyncs the new contents before the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync, then rename: after a crash the file holds the old contents or
    /// the new, never a torn write (manifests, the metrics file).
    Synced,
    /// Rename only: after a crash the file may hold the old contents (fine
    /// for state whose older versions are still true, such as sidecars).
    Unsynced,
}

/// Replace `target` with `bytes` atomically: write `temporary` (created
/// with `mode`, never through a symbolic link), optionally fsync it, then
/// rename it over `target`. A failed write leaves no temporary behind. The
/// one write-then-rename of tcbackup (manifests, sidecars, the metrics
/// file). Blocking.
pub fn replace_file(
    temporary: &Path,
    target: &Path,
    bytes: &[u8],
    mode: u32,
    durability: Durability,
) -> io::Result<()> {
    use std::io::Write as _;
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(temporary)
            .map_err(|e| not_followed(e, temporary))?;
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        if durability == Durability::Synced {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(temporary, target)
    })();
    if written.is_err() {
        // Leave no half-written temporary behind.
        let _ = std::fs::remove_file(temporary);
    }
    written
}

/// Open `path` for reading without following a symbolic link at `path`
/// (for files tcbackup wrote itself, such as sidecars). Blocking.
pub fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| not_followed(e, path))
}

/// Turn the `ELOOP` of `O_NOFOLLOW` into an error that says what happened.
fn not_followed(err: io::Error, path: &Path) -> io::Error {
    if err.raw_os_error() == Some(libc::ELOOP) {
        io::Error::new(
            err.kind(),
            format!(
                "{} is a symbolic link; tcbackup never follows links to its own files (remove it)",
                path.display()
            ),
        )
    } else {
        err
    }
}

/// A path that others than its owner may access, and its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAccess {
    /// The file or directory.
    pub path: PathBuf,
    /// Its permission bits, e.g. `0o644`.
    pub mode: u32,
}

/// `Some` when the group or others may access `path` (`mode & 0o077`,
/// following links); `None` when it is private or its metadata cannot be
/// read. For files that hold a secret.
pub fn group_or_other_access(path: &Path) -> Option<OpenAccess> {
    access_beyond(path, 0o077)
}

/// `Some` when others (not the owner, not the group) may read, write or
/// list `path` (`mode & 0o007`, following links); `None` otherwise or when
/// its metadata cannot be read. For `download_dir`.
pub fn other_access(path: &Path) -> Option<OpenAccess> {
    access_beyond(path, 0o007)
}

fn access_beyond(path: &Path, mask: u32) -> Option<OpenAccess> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & mask != 0).then(|| OpenAccess {
        path: path.to_path_buf(),
        mode,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::symlink;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn created_files_and_directories_get_exactly_the_chosen_mode() {
        let tmp = tempfile::tempdir().unwrap();
        for (modes, file, dir) in [
            (FileModes::PRIVATE, 0o600, 0o700),
            (FileModes::GROUP_READABLE, 0o640, 0o750),
        ] {
            let root = tmp.path().join(format!("{file:o}"));
            let deep = root.join("a/b/c");
            modes.create_dir_all(&deep).unwrap();
            for d in [&root, &root.join("a"), &root.join("a/b"), &deep] {
                assert_eq!(mode(d), dir, "{}", d.display());
            }
            let path = deep.join("f");
            let mut f = modes
                .open(OpenOptions::new().write(true).create(true), &path)
                .unwrap();
            f.write_all(b"x").unwrap();
            assert_eq!(mode(&path), file);
            // An existing file of ours is brought back to the mode.
            std::fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
            modes
                .open(OpenOptions::new().write(true).create(true), &path)
                .unwrap();
            assert_eq!(mode(&path), file);
        }
    }

    #[test]
    fn existing_directories_keep_their_mode() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), Permissions::from_mode(0o755)).unwrap();
        FileModes::PRIVATE.create_dir_all(tmp.path()).unwrap();
        FileModes::PRIVATE
            .create_dir_all(&tmp.path().join("x"))
            .unwrap();
        assert_eq!(mode(tmp.path()), 0o755);
        assert_eq!(mode(&tmp.path().join("x")), 0o700);
    }

    #[test]
    fn a_symlink_is_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, b"precious").unwrap();
        let link = tmp.path().join("f.part");
        symlink(&target, &link).unwrap();
        let err = FileModes::PRIVATE
            .open(
                OpenOptions::new().write(true).create(true).truncate(true),
                &link,
            )
            .unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert!(open_read(&link).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn access_beyond_the_owner_is_reported_with_the_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            group_or_other_access(&path),
            Some(OpenAccess {
                path: path.clone(),
                mode: 0o640
            })
        );
        assert_eq!(other_access(&path), None);
        std::fs::set_permissions(&path, Permissions::from_mode(0o751)).unwrap();
        assert_eq!(other_access(&path).map(|a| a.mode), Some(0o751));
        std::fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        assert_eq!(group_or_other_access(&path), None);
        assert_eq!(other_access(&tmp.path().join("missing")), None);
    }
}
