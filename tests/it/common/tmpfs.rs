//! A small real file system for the free-space tests: a tmpfs of a given
//! size mounted on a directory, unmounted when the guard drops (also when
//! the test panics). Tests and CI run as root; where mounting is not
//! possible, [`SmallFs::mount`] prints why and returns `None`, and the test
//! skips (say so loudly: it checked nothing).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; unmounted on drop.
pub struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    /// Mount a tmpfs of `mib` MiB on `dir` (created if missing). `None`,
    /// with the reason printed, when it cannot be mounted (not root, no
    /// `mount`, no permission in this container).
    pub fn mount(dir: &Path, mib: u64) -> Option<SmallFs> {
        std::fs::create_dir_all(dir).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700")])
            .arg("tmpfs")
            .arg(dir)
            .output();
        match output {
            Ok(o) if o.status.success() => Some(SmallFs {
                dir: dir.to_path_buf(),
            }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a {mib} MiB tmpfs on {} (these tests need root): {}",
                    dir.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount for a {mib} MiB tmpfs: {e}");
                None
            }
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Free bytes on it, as `statvfs` reports them.
    pub fn free(&self) -> u64 {
        fs4::available_space(&self.dir).unwrap()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a file still open by a task being torn down): detach it
            // now, the kernel frees it when the last user goes.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}
