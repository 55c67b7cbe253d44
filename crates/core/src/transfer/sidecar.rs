//! The resume state of one partial file: `<file_name>.part.json` next to
//! `<file_name>.part`. It records which object the bytes belong to (backup
//! id, name, size, ETag, COS CRC) and, per segment, how far the bytes are
//! written and how far they are fsynced. It never holds the URL: a URL is a
//! bearer credential and expires; a fresh one is asked for on every run.
//!
//! Two offsets per segment make resume both cheap and safe. `written` is
//! what `pwrite` returned for: after the process dies (SIGKILL, OOM) those
//! bytes are still in the page cache, so they are kept if the kernel did not
//! restart since (same boot id). `synced` is what `fdatasync` returned for:
//! after a power loss or kernel crash only those bytes are trusted.
//!
//! The file is replaced atomically (write a temporary file, rename over).
//! It is read and written without following a symbolic link at its path,
//! with the modes of [`PartialPaths::modes`].
//! An unreadable or inconsistent sidecar means "start over", never "trust".

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::private_files::{replace_file, Durability, FileModes};

/// The format version written into every sidecar.
pub const VERSION: u32 = 1;

/// The longest file name stem that still fits `.part.json.tmp` in 255 bytes.
const MAX_STEM: usize = 255 - ".part.json.tmp".len();

/// Where a partial file and its state live, and the modes they are
/// created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialPaths {
    /// `<dir>/<file_name>.part`: the bytes.
    pub part: PathBuf,
    /// `<dir>/<file_name>.part.json`: the resume state.
    pub sidecar: PathBuf,
    /// `<dir>/<file_name>.part.json.tmp`: the next state before its rename.
    pub sidecar_tmp: PathBuf,
    /// The modes of the part file, the sidecar and the directory.
    pub modes: FileModes,
}

impl PartialPaths {
    /// The paths for `file_name` inside `dir`. `file_name` must already be
    /// checked to be a plain name. A name too long to take the suffixes
    /// within the usual 255-byte limit is shortened and made unique with a
    /// hash of the full name.
    pub fn new(dir: &Path, file_name: &str) -> Self {
        let stem = if file_name.len() > MAX_STEM {
            let mut cut = MAX_STEM - 17;
            while !file_name.is_char_boundary(cut) {
                cut -= 1;
            }
            let hash = crate::verify::digest::sha256_hex(file_name.as_bytes());
            format!("{}~{}", &file_name[..cut], &hash[..16])
        } else {
            file_name.to_owned()
        };
        Self {
            part: dir.join(format!("{stem}.part")),
            sidecar: dir.join(format!("{stem}.part.json")),
            sidecar_tmp: dir.join(format!("{stem}.part.json.tmp")),
            modes: FileModes::PRIVATE,
        }
    }

    /// The same paths, with files created with `modes`.
    pub fn with_modes(mut self, modes: FileModes) -> Self {
        self.modes = modes;
        self
    }
}

/// Progress of one byte range of the file (`start..end`, end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentState {
    /// First byte of the segment.
    pub start: u64,
    /// One past the last byte of the segment.
    pub end: u64,
    /// Bytes `start..written` were written (they survive a process kill).
    pub written: u64,
    /// Bytes `start..synced` were fsynced (they survive a power loss).
    pub synced: u64,
}

impl SegmentState {
    /// An untouched segment.
    pub fn new(start: u64, end: u64) -> Self {
        Self {
            start,
            end,
            written: start,
            synced: start,
        }
    }

    /// Whether every byte of the segment is written.
    pub fn is_complete(&self) -> bool {
        self.written == self.end
    }
}

/// The resume state of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// Always [`VERSION`].
    pub version: u32,
    /// The backup the file belongs to.
    pub backup_id: String,
    /// The file name as the API gave it.
    pub file_name: String,
    /// The size the API announced.
    pub expected_size: u64,
    /// The object's ETag from the first response, sent as `If-Match` on resume.
    pub etag: Option<String>,
    /// The object's CRC-64/XZ from `x-cos-hash-crc64ecma`, if COS sent one.
    pub server_crc64: Option<u64>,
    /// The kernel boot id when `written` offsets were recorded.
    pub boot_id: Option<String>,
    /// The segments, in order, tiling `0..expected_size`.
    pub segments: Vec<SegmentState>,
}

/// Why a sidecar on disk cannot be used for this file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidecarMismatch {
    /// Written by another format version.
    #[error("sidecar format version {0} is not {VERSION}")]
    Version(u32),
    /// Belongs to another backup, file or size.
    #[error("sidecar describes another object ({backup_id}/{file_name}, {expected_size} bytes)")]
    OtherObject {
        /// Its backup id.
        backup_id: String,
        /// Its file name.
        file_name: String,
        /// Its size.
        expected_size: u64,
    },
    /// Segments that do not tile the file or offsets out of their segment.
    #[error("sidecar segments are inconsistent")]
    Segments,
}

impl Sidecar {
    /// Check that this state belongs to `backup_id`/`file_name` of
    /// `expected_size` bytes and is internally consistent.
    pub fn check(
        &self,
        backup_id: &str,
        file_name: &str,
        expected_size: u64,
    ) -> Result<(), SidecarMismatch> {
        if self.version != VERSION {
            return Err(SidecarMismatch::Version(self.version));
        }
        if self.backup_id != backup_id
            || self.file_name != file_name
            || self.expected_size != expected_size
        {
            return Err(SidecarMismatch::OtherObject {
                backup_id: self.backup_id.clone(),
                file_name: self.file_name.clone(),
                expected_size: self.expected_size,
            });
        }
        if !segments_tile(&self.segments, expected_size) {
            return Err(SidecarMismatch::Segments);
        }
        Ok(())
    }

    /// The segments with the offsets this boot may trust: `written` when the
    /// kernel has not restarted since they were recorded, `synced` otherwise.
    pub fn trusted_segments(&self, current_boot: Option<&str>) -> Vec<SegmentState> {
        let same_boot =
            matches!((self.boot_id.as_deref(), current_boot), (Some(a), Some(b)) if a == b);
        self.segments
            .iter()
            .map(|s| {
                let trusted = if same_boot { s.written } else { s.synced };
                SegmentState {
                    start: s.start,
                    end: s.end,
                    written: trusted,
                    synced: s.synced.min(trusted),
                }
            })
            .collect()
    }

    /// Bytes already present according to `segments`.
    pub fn present(segments: &[SegmentState]) -> u64 {
        segments.iter().map(|s| s.written - s.start).sum()
    }
}

/// Whether `segments` are non-empty, contiguous, cover `0..size`, and hold
/// offsets inside their own bounds with `synced <= written`.
pub fn segments_tile(segments: &[SegmentState], size: u64) -> bool {
    let mut expected_start = 0;
    for s in segments {
        let ok = s.start == expected_start
            && s.start <= s.end
            && (s.start..=s.end).contains(&s.written)
            && (s.start..=s.written).contains(&s.synced);
        if !ok {
            return false;
        }
        expected_start = s.end;
    }
    !segments.is_empty() && expected_start == size
}

/// Split `0..size` into `n` contiguous segments of near-equal length
/// (at least one segment; an empty file has one empty segment).
pub fn split(size: u64, n: usize) -> Vec<SegmentState> {
    let n = (n.max(1) as u64).min(size.max(1));
    (0..n)
        .map(|i| {
            let start = size / n * i + (size % n).min(i);
            let end = size / n * (i + 1) + (size % n).min(i + 1);
            SegmentState::new(start, end)
        })
        .collect()
}

/// Read the sidecar at `path`. `Ok(None)` when there is none or when it is
/// not valid JSON of this format (then the download starts over).
pub fn load(path: &Path) -> std::io::Result<Option<Sidecar>> {
    let mut bytes = Vec::new();
    match crate::private_files::open_read(path) {
        Ok(mut f) => f.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match serde_json::from_slice(&bytes) {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable sidecar");
            Ok(None)
        }
    }
}

/// Replace the sidecar atomically: write `paths.sidecar_tmp`, rename it over
/// `paths.sidecar`. Not fsynced on purpose: a lost update only means an
/// older state (whose offsets are still true) or none (start over).
pub fn store(paths: &PartialPaths, sidecar: &Sidecar) -> std::io::Result<()> {
    let json = serde_json::to_vec(sidecar).map_err(std::io::Error::other)?;
    replace_file(
        &paths.sidecar_tmp,
        &paths.sidecar,
        &json,
        paths.modes.file(),
        Durability::Unsynced,
    )
}

/// Remove the sidecar (and a stray temporary), ignoring absence.
pub fn remove(paths: &PartialPaths) -> std::io::Result<()> {
    remove_if_exists(&paths.sidecar)?;
    remove_if_exists(&paths.sidecar_tmp)
}

/// Remove a file; one that is already gone is fine.
pub(crate) fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Take back what the sidecar vouches for before its part file is
/// truncated: remove it and, when there was one, fsync the directory, so
/// that neither a crash nor a power loss can leave the old offsets in
/// front of a file that no longer holds those bytes.
pub fn discard(paths: &PartialPaths) -> std::io::Result<()> {
    match std::fs::remove_file(&paths.sidecar) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match paths.sidecar.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// The kernel's boot id (Linux), read once. `None` elsewhere, which makes
/// resume trust only fsynced bytes.
pub fn boot_id() -> Option<&'static str> {
    static BOOT_ID: OnceLock<Option<String>> = OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sidecar {
        Sidecar {
            version: VERSION,
            backup_id: "b1".into(),
            file_name: "f.rdb".into(),
            expected_size: 100,
            etag: Some("\"abc\"".into()),
            server_crc64: Some(u64::MAX),
            boot_id: Some("boot-a".into()),
            segments: vec![
                SegmentState {
                    start: 0,
                    end: 50,
                    written: 40,
                    synced: 30,
                },
                SegmentState {
                    start: 50,
                    end: 100,
                    written: 100,
                    synced: 60,
                },
            ],
        }
    }

    #[test]
    fn round_trip_through_disk_without_url() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PartialPaths::new(dir.path(), "f.rdb");
        assert_eq!(load(&paths.sidecar).unwrap(), None);
        let s = sample();
        store(&paths, &s).unwrap();
        let text = std::fs::read_to_string(&paths.sidecar).unwrap();
        assert!(!text.contains("http"), "{text}");
        assert!(
            text.contains("18446744073709551615"),
            "u64 stays exact: {text}"
        );
        assert_eq!(load(&paths.sidecar).unwrap(), Some(s));
        assert!(!paths.sidecar_tmp.exists());
        remove(&paths).unwrap();
        assert!(!paths.sidecar.exists());
        remove(&paths).unwrap();
    }

    #[test]
    fn discard_removes_the_state_and_tolerates_absence() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PartialPaths::new(dir.path(), "f.rdb");
        discard(&paths).unwrap();
        store(&paths, &sample()).unwrap();
        discard(&paths).unwrap();
        assert_eq!(load(&paths.sidecar).unwrap(), None);
    }

    #[test]
    fn garbage_sidecar_is_treated_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PartialPaths::new(dir.path(), "f");
        std::fs::write(&paths.sidecar, b"{\"version\":1,").unwrap();
        assert_eq!(load(&paths.sidecar).unwrap(), None);
        std::fs::write(&paths.sidecar, b"").unwrap();
        assert_eq!(load(&paths.sidecar).unwrap(), None);
    }

    #[test]
    fn check_rejects_other_objects_and_bad_tiling() {
        let s = sample();
        assert_eq!(s.check("b1", "f.rdb", 100), Ok(()));
        assert!(matches!(
            s.check("b2", "f.rdb", 100),
            Err(SidecarMismatch::OtherObject { .. })
        ));
        assert!(matches!(
            s.check("b1", "f.rdb", 101),
            Err(SidecarMismatch::OtherObject { .. })
        ));
        let mut gap = s.clone();
        gap.segments[1].start = 51;
        assert_eq!(
            gap.check("b1", "f.rdb", 100),
            Err(SidecarMismatch::Segments)
        );
        let mut ahead = s.clone();
        ahead.segments[0].synced = 45;
        assert_eq!(
            ahead.check("b1", "f.rdb", 100),
            Err(SidecarMismatch::Segments)
        );
        let mut past = s.clone();
        past.segments[0].written = 51;
        assert_eq!(
            past.check("b1", "f.rdb", 100),
            Err(SidecarMismatch::Segments)
        );
        let mut v = s;
        v.version = 2;
        assert_eq!(
            v.check("b1", "f.rdb", 100),
            Err(SidecarMismatch::Version(2))
        );
    }

    #[test]
    fn trust_written_only_within_the_same_boot() {
        let s = sample();
        let same = s.trusted_segments(Some("boot-a"));
        assert_eq!((same[0].written, same[1].written), (40, 100));
        assert_eq!(Sidecar::present(&same), 90);
        let rebooted = s.trusted_segments(Some("boot-b"));
        assert_eq!((rebooted[0].written, rebooted[1].written), (30, 60));
        assert_eq!(Sidecar::present(&rebooted), 40);
        let unknown = s.trusted_segments(None);
        assert_eq!(unknown, rebooted);
    }

    #[test]
    fn split_tiles_exactly() {
        for (size, n) in [
            (0u64, 4usize),
            (1, 4),
            (10, 3),
            (1 << 30, 4),
            (7, 7),
            (5, 0),
        ] {
            let segs = split(size, n);
            assert!(segments_tile(&segs, size), "{size}/{n}: {segs:?}");
            assert!(segs
                .iter()
                .all(|s| s.written == s.start && s.synced == s.start));
            let lens: Vec<u64> = segs.iter().map(|s| s.end - s.start).collect();
            let (min, max) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
            assert!(max - min <= 1, "{lens:?}");
        }
        assert_eq!(split(10, 3).len(), 3);
        assert_eq!(split(2, 4).len(), 2);
    }

    #[test]
    fn long_names_are_shortened_uniquely() {
        let dir = Path::new("/p");
        let short = PartialPaths::new(dir, "a.rdb");
        assert_eq!(short.part, Path::new("/p/a.rdb.part"));
        let long_a = "é".repeat(127) + "a";
        let long_b = "é".repeat(127) + "b";
        let (a, b) = (
            PartialPaths::new(dir, &long_a),
            PartialPaths::new(dir, &long_b),
        );
        assert_ne!(a.part, b.part);
        for p in [&a.part, &a.sidecar, &a.sidecar_tmp, &b.sidecar_tmp] {
            let name = p.file_name().unwrap().to_str().unwrap();
            assert!(name.len() <= 255, "{} bytes", name.len());
        }
    }

    #[test]
    fn boot_id_is_stable() {
        assert_eq!(boot_id(), boot_id());
    }
}
