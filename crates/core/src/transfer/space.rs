//! Free-space check before a file starts. A file needs only the bytes the
//! file system has not yet allocated to its part file: a part file
//! preallocated by an earlier run already counts in the free figure, so a
//! resumed download asks for nothing more. Files in flight hold a
//! reservation for the bytes they have yet to allocate, released once
//! their part file is preallocated (or, where the file system cannot
//! preallocate, as they write), so eight downloads that each fit alone
//! cannot together overrun the disk, and none is counted twice.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes promised to files in flight and not yet allocated.
#[derive(Debug, Default)]
pub struct SpaceLedger {
    outstanding: AtomicU64,
    /// Serialises check-and-reserve.
    gate: Mutex<()>,
}

/// The shortfall found by [`SpaceLedger::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    /// Bytes this file still has to allocate.
    pub needed: u64,
    /// Free bytes the file system reports.
    pub available: u64,
    /// Bytes other files in flight still have to allocate.
    pub reserved: u64,
}

impl SpaceLedger {
    /// An empty ledger.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Bytes currently reserved by files in flight.
    pub fn outstanding(&self) -> u64 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Reserve `needed` bytes if `available` (as just measured) minus what
    /// others reserved leaves at least `needed + margin`.
    pub fn reserve(
        self: &Arc<Self>,
        needed: u64,
        available: u64,
        margin: u64,
    ) -> Result<Reservation, Shortfall> {
        // A poisoned gate only means a panic between two atomic updates.
        let _gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        let reserved = self.outstanding.load(Ordering::Relaxed);
        if available.saturating_sub(reserved) < needed.saturating_add(margin) {
            return Err(Shortfall {
                needed,
                available,
                reserved,
            });
        }
        self.outstanding.fetch_add(needed, Ordering::Relaxed);
        Ok(Reservation {
            ledger: self.clone(),
            remaining: AtomicU64::new(needed),
        })
    }
}

/// Bytes a file has yet to allocate; released as they are allocated and
/// when dropped.
#[derive(Debug)]
pub struct Reservation {
    ledger: Arc<SpaceLedger>,
    remaining: AtomicU64,
}

impl Reservation {
    /// At most `unallocated` bytes are still to come (the part file was
    /// just allocated): release the rest of the reservation.
    pub fn limit(&self, unallocated: u64) {
        let prev = self.remaining.fetch_min(unallocated, Ordering::Relaxed);
        let released = prev.saturating_sub(unallocated);
        self.ledger
            .outstanding
            .fetch_sub(released, Ordering::Relaxed);
    }

    /// `n` bytes were written into a file that was not preallocated: they
    /// now count in the file system's figure.
    pub fn consume(&self, n: u64) {
        let prev = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                Some(r.saturating_sub(n))
            })
            .unwrap_or_else(|r| r);
        let released = prev.min(n);
        self.ledger
            .outstanding
            .fetch_sub(released, Ordering::Relaxed);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let rest = self.remaining.swap(0, Ordering::Relaxed);
        self.ledger.outstanding.fetch_sub(rest, Ordering::Relaxed);
    }
}

/// Free bytes for unprivileged users on the file system holding `dir`.
pub fn available(dir: &Path) -> std::io::Result<u64> {
    fs4::available_space(dir)
}

/// Bytes the file system has allocated to `path` (`st_blocks` × 512),
/// written or only preallocated; 0 when there is no such file. A symbolic
/// link counts as nothing allocated.
pub fn allocated(path: &Path) -> std::io::Result<u64> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(allocated_blocks(&m)),
        Ok(_) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// The bytes allocated to the file `m` describes.
pub fn allocated_blocks(m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    m.blocks().saturating_mul(512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_and_release() {
        let ledger = SpaceLedger::new();
        let a = ledger.reserve(600, 1000, 100).unwrap();
        assert_eq!(ledger.outstanding(), 600);
        // Alone 600 would fit in 1000, but 600 are already promised.
        let short = ledger.reserve(600, 1000, 100).unwrap_err();
        assert_eq!(
            short,
            Shortfall {
                needed: 600,
                available: 1000,
                reserved: 600
            }
        );
        a.consume(250);
        assert_eq!(ledger.outstanding(), 350);
        a.consume(1000);
        assert_eq!(ledger.outstanding(), 0);
        drop(a);
        assert_eq!(ledger.outstanding(), 0);
        let b = ledger.reserve(500, 1000, 400).unwrap();
        assert!(ledger.reserve(1, 1000, 0).is_ok());
        drop(b);
        assert_eq!(ledger.outstanding(), 0);
    }

    #[test]
    fn limit_releases_what_is_already_allocated() {
        let ledger = SpaceLedger::new();
        let a = ledger.reserve(600, 1000, 0).unwrap();
        a.limit(700);
        assert_eq!(ledger.outstanding(), 600, "a limit never raises");
        a.limit(100);
        assert_eq!(ledger.outstanding(), 100);
        a.consume(30);
        assert_eq!(ledger.outstanding(), 70);
        a.limit(0);
        assert_eq!(ledger.outstanding(), 0);
        drop(a);
        assert_eq!(ledger.outstanding(), 0);
    }

    #[test]
    fn allocated_counts_preallocated_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert_eq!(allocated(&path).unwrap(), 0);
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(1 << 20).unwrap();
        let sparse = allocated(&path).unwrap();
        assert!(sparse < 1 << 20, "{sparse}");
        if fs4::fs_std::FileExt::allocate(&f, 1 << 20).is_ok() {
            assert!(allocated(&path).unwrap() >= 1 << 20);
        }
    }

    #[test]
    fn margin_counts() {
        let ledger = SpaceLedger::new();
        assert!(ledger.reserve(10, 100, 90).is_ok());
        assert!(ledger.reserve(11, 100, 90).is_err());
    }

    #[test]
    fn available_reports_something_for_tmp() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available(dir.path()).unwrap() > 0);
        assert!(available(&dir.path().join("missing")).is_err());
    }
}
