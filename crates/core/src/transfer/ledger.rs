//! The in-memory progress of one pass over a file, shared by its streams,
//! the background syncer and the trailing hasher, and the only writer of the
//! sidecar while the pass runs.
//!
//! Writers report each finished `pwrite`; every `checkpoint_bytes` the
//! writing thread itself stores the sidecar (so a killed process loses at
//! most that much). The syncer fsyncs in the background every `sync_bytes`
//! or `sync_interval` and then records the `synced` offsets, so the byte
//! loop never waits for the disk.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::sidecar::{self, PartialPaths, SegmentState, Sidecar};
use crate::verify::digest::{Digests, FileDigest, READ_CHUNK};

/// What identifies the object the bytes belong to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObjectId {
    pub etag: Option<String>,
    pub crc64: Option<u64>,
}

#[derive(Debug)]
struct State {
    segments: Vec<SegmentState>,
    object: ObjectId,
    since_save: u64,
    since_sync: u64,
}

/// Shared progress of one pass.
#[derive(Debug)]
pub(crate) struct Ledger {
    state: Mutex<State>,
    progress: Condvar,
    save_lock: Mutex<()>,
    sync_wanted: Notify,
    aborted: AtomicBool,
    paths: PartialPaths,
    backup_id: String,
    file_name: String,
    expected_size: u64,
    checkpoint_bytes: u64,
    sync_bytes: u64,
}

impl Ledger {
    pub(crate) fn new(
        paths: PartialPaths,
        backup_id: String,
        file_name: String,
        expected_size: u64,
        segments: Vec<SegmentState>,
        object: ObjectId,
        config: &super::TransferConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                segments,
                object,
                since_save: 0,
                since_sync: 0,
            }),
            progress: Condvar::new(),
            save_lock: Mutex::new(()),
            sync_wanted: Notify::new(),
            aborted: AtomicBool::new(false),
            paths,
            backup_id,
            file_name,
            expected_size,
            checkpoint_bytes: config.checkpoint_bytes.max(1),
            sync_bytes: config.sync_bytes.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Poisoning means a panic in another stream while it held plain
        // integers; they are still consistent enough to save and resume.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The size the file will have.
    pub(crate) fn expected_size(&self) -> u64 {
        self.expected_size
    }

    /// The segments as they stand.
    pub(crate) fn segments(&self) -> Vec<SegmentState> {
        self.lock().segments.clone()
    }

    /// The object identity learned so far.
    pub(crate) fn object(&self) -> ObjectId {
        self.lock().object.clone()
    }

    /// Record the identity from the first response; the next finished
    /// write stores it in the sidecar, so a resume can send `If-Match`.
    pub(crate) fn learn_object(&self, object: ObjectId) {
        let mut st = self.lock();
        st.object = object;
        st.since_save = st.since_save.max(self.checkpoint_bytes);
    }

    /// Cut the part of segment `seg` not yet written in two, if that part
    /// is at least `2 * min` bytes and there are fewer than `max_segments`
    /// segments: `seg` keeps the first half, and the second half becomes a
    /// new segment at the end of the list, whose index is returned. Only
    /// for a segment no stream is fetching (its stream would not know
    /// that its end moved).
    pub(crate) fn split(&self, seg: usize, min: u64, max_segments: usize) -> Option<usize> {
        let mut st = self.lock();
        if st.segments.len() >= max_segments {
            return None;
        }
        let s = st.segments.get_mut(seg)?;
        let left = s.end.saturating_sub(s.written);
        if left < min.max(1).saturating_mul(2) {
            return None;
        }
        let mid = s.written + left / 2;
        let tail = SegmentState::new(mid, s.end);
        s.end = mid;
        st.segments.push(tail);
        Some(st.segments.len() - 1)
    }

    /// Segment `seg` is now written up to `written`. Returns whether a
    /// sidecar save is due (the caller is on a blocking thread and saves).
    pub(crate) fn advance(&self, seg: usize, written: u64) -> bool {
        let (save_due, sync_due) = {
            let mut st = self.lock();
            let Some(s) = st.segments.get_mut(seg) else {
                return false;
            };
            let delta = written.saturating_sub(s.written);
            s.written = s.written.max(written.min(s.end));
            st.since_save += delta;
            st.since_sync += delta;
            (
                st.since_save >= self.checkpoint_bytes,
                st.since_sync >= self.sync_bytes,
            )
        };
        self.progress.notify_all();
        if sync_due {
            self.sync_wanted.notify_one();
        }
        save_due
    }

    /// Bytes written since the last fsync.
    fn unsynced(&self) -> u64 {
        self.lock().since_sync
    }

    /// Snapshot the written offsets before an fsync.
    fn begin_sync(&self) -> Vec<u64> {
        let mut st = self.lock();
        st.since_sync = 0;
        st.segments.iter().map(|s| s.written).collect()
    }

    /// An fsync that started after `snapshot` completed.
    fn end_sync(&self, snapshot: &[u64]) {
        let mut st = self.lock();
        for (s, w) in st.segments.iter_mut().zip(snapshot) {
            s.synced = s.synced.max(*w).min(s.written);
        }
    }

    /// Store the current state as the sidecar. Blocking.
    pub(crate) fn save(&self) -> std::io::Result<()> {
        // Saves are serialised and each takes its snapshot under the lock,
        // so a later save never stores an older state.
        let _guard = self.save_lock.lock().unwrap_or_else(|e| e.into_inner());
        let sidecar = {
            let mut st = self.lock();
            st.since_save = 0;
            Sidecar {
                version: sidecar::VERSION,
                backup_id: self.backup_id.clone(),
                file_name: self.file_name.clone(),
                expected_size: self.expected_size,
                etag: st.object.etag.clone(),
                server_crc64: st.object.crc64,
                boot_id: sidecar::boot_id().map(str::to_owned),
                // Split pieces are appended; the sidecar lists them in file
                // order, as a resume checks.
                segments: {
                    let mut segments = st.segments.clone();
                    segments.sort_by_key(|s| s.start);
                    segments
                },
            }
        };
        sidecar::store(&self.paths, &sidecar)
    }

    /// fsync the data and record everything written so far as synced. Blocking.
    pub(crate) fn sync_all(&self, file: &File) -> std::io::Result<()> {
        let snapshot = self.begin_sync();
        file.sync_data()?;
        self.end_sync(&snapshot);
        self.save()
    }

    /// A local I/O error on the part file (or the sidecar).
    pub(crate) fn io_error(
        &self,
        sidecar: bool,
        action: &'static str,
        source: std::io::Error,
    ) -> super::TransferError {
        let path = if sidecar {
            self.paths.sidecar.clone()
        } else {
            self.paths.part.clone()
        };
        super::TransferError::Io {
            path,
            action,
            source,
        }
    }

    /// Stop the pass: wake the hasher so it gives up.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        let _st = self.lock();
        self.progress.notify_all();
    }

    /// Block until the byte at `pos` is written; returns how far the
    /// segment holding it is written, or `None` once the pass is aborted
    /// (or if no segment holds `pos`, which tiling rules out).
    fn wait_at(&self, pos: u64) -> Option<u64> {
        let mut st = self.lock();
        loop {
            if self.aborted.load(Ordering::SeqCst) {
                return None;
            }
            // Segments tile the file but split ones are appended, so they
            // are searched rather than walked in order.
            let written = st
                .segments
                .iter()
                .find(|s| s.start <= pos && pos < s.end)
                .map(|s| s.written)?;
            if written > pos {
                return Some(written);
            }
            st = self.progress.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Run until `stop`: fsync every `sync_bytes` of new data or every
/// `interval` when anything is unsynced, then store the sidecar. An fsync
/// error is returned (the disk is failing; the pass should stop).
pub(crate) async fn run_syncer(
    ledger: Arc<Ledger>,
    file: Arc<File>,
    interval: Duration,
    stop: CancellationToken,
) -> std::io::Result<()> {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            _ = ledger.sync_wanted.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
        if ledger.unsynced() == 0 {
            continue;
        }
        let (l, f) = (ledger.clone(), file.clone());
        tokio::task::spawn_blocking(move || l.sync_all(&f))
            .await
            .map_err(std::io::Error::other)??;
    }
}

/// Hash the file in order while the pass writes it: follow each segment's
/// written offset, reading back from the page cache, feeding the same bytes
/// to the archive content check the file name calls for. Blocking. `Ok(None)`
/// when the pass was aborted.
pub(crate) fn trailing_hash(ledger: &Ledger, file: &File) -> std::io::Result<Option<Digests>> {
    let mut digest = FileDigest::for_file(&ledger.file_name, ledger.expected_size);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pos = 0;
    while pos < ledger.expected_size {
        let Some(written) = ledger.wait_at(pos) else {
            return Ok(None);
        };
        while pos < written {
            let n = (written - pos).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], pos)?;
            digest.update(&buf[..n]);
            pos += n as u64;
        }
    }
    Ok(Some(digest.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::sidecar::split;

    fn ledger(dir: &std::path::Path, size: u64, n: usize) -> Arc<Ledger> {
        named_ledger(dir, "f", size, n)
    }

    fn named_ledger(dir: &std::path::Path, name: &str, size: u64, n: usize) -> Arc<Ledger> {
        Ledger::new(
            PartialPaths::new(dir, name),
            "b".into(),
            name.into(),
            size,
            split(size, n),
            ObjectId {
                etag: Some("\"e\"".into()),
                crc64: Some(7),
            },
            &crate::transfer::TransferConfig {
                checkpoint_bytes: 100,
                sync_bytes: 100,
                ..Default::default()
            },
        )
    }

    #[test]
    fn saves_are_due_every_checkpoint_and_record_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path(), 1000, 2);
        assert!(!l.advance(0, 60));
        assert!(l.advance(1, 550));
        l.save().unwrap();
        let s = sidecar::load(&PartialPaths::new(dir.path(), "f").sidecar)
            .unwrap()
            .unwrap();
        assert_eq!(s.check("b", "f", 1000), Ok(()));
        assert_eq!(s.segments[0].written, 60);
        assert_eq!(s.segments[1].written, 550);
        assert_eq!(s.segments[0].synced, 0);
        assert_eq!(s.etag.as_deref(), Some("\"e\""));
        assert!(!l.advance(0, 100), "counter restarts after a save");
        l.learn_object(ObjectId::default());
        assert!(
            l.advance(0, 101),
            "a new identity is saved with the next write"
        );
    }

    #[test]
    fn sync_all_marks_synced() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path(), 1000, 1);
        let f = File::create(dir.path().join("f.part")).unwrap();
        l.advance(0, 300);
        l.sync_all(&f).unwrap();
        assert_eq!(l.segments()[0].synced, 300);
        assert_eq!(l.unsynced(), 0);
        let s = sidecar::load(&PartialPaths::new(dir.path(), "f").sidecar)
            .unwrap()
            .unwrap();
        assert_eq!((s.segments[0].written, s.segments[0].synced), (300, 300));
    }

    #[test]
    fn trailing_hash_follows_segments_and_stops_on_abort() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let path = dir.path().join("f.part");
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap(),
        );
        file.set_len(10_000).unwrap();
        let l = ledger(dir.path(), 10_000, 3);
        let (l2, f2) = (l.clone(), file.clone());
        let hasher = std::thread::spawn(move || trailing_hash(&l2, &f2));
        // Write the segments back to front, in pieces.
        for (i, s) in l.segments().iter().enumerate().rev() {
            let mut pos = s.start;
            while pos < s.end {
                let n = (s.end - pos).min(777);
                file.write_all_at(&data[pos as usize..(pos + n) as usize], pos)
                    .unwrap();
                pos += n;
                l.advance(i, pos);
            }
        }
        let d = hasher.join().unwrap().unwrap().unwrap();
        let mut want = FileDigest::new();
        want.update(&data);
        assert_eq!(d, want.finish());

        let l = ledger(dir.path(), 10_000, 2);
        let l2 = l.clone();
        let f2 = file.clone();
        let hasher = std::thread::spawn(move || trailing_hash(&l2, &f2));
        l.advance(0, 10);
        l.abort();
        assert_eq!(hasher.join().unwrap().unwrap(), None);
    }

    /// A split segment's second half is appended: the hasher still reads
    /// the file in order, and the sidecar lists the pieces in order.
    #[test]
    fn split_segments_are_hashed_and_saved_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("f.part");
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap(),
        );
        file.set_len(10_000).unwrap();
        let l = ledger(dir.path(), 10_000, 2);
        l.advance(1, 5_500);
        // What is left of [5000, 10000) is [5500, 10000): halves at 7750.
        assert_eq!(l.split(1, 1_000, 8), Some(2));
        let segs = l.segments();
        assert_eq!(
            (segs[1].start, segs[1].end, segs[1].written),
            (5_000, 7_750, 5_500)
        );
        assert_eq!(
            (segs[2].start, segs[2].end, segs[2].written),
            (7_750, 10_000, 7_750)
        );
        assert_eq!(l.split(1, 2_000, 8), None, "2250 left is under twice 2000");
        assert_eq!(l.split(0, 1_000, 3), None, "three segments already");
        assert_eq!(l.split(9, 1, 8), None, "no such segment");

        let (l2, f2) = (l.clone(), file.clone());
        let hasher = std::thread::spawn(move || trailing_hash(&l2, &f2));
        file.write_all_at(&data[5_000..5_500], 5_000).unwrap();
        for (i, s) in l.segments().iter().enumerate().rev() {
            let mut pos = s.written;
            while pos < s.end {
                let n = (s.end - pos).min(777);
                file.write_all_at(&data[pos as usize..(pos + n) as usize], pos)
                    .unwrap();
                pos += n;
                l.advance(i, pos);
            }
        }
        let d = hasher.join().unwrap().unwrap().unwrap();
        let mut want = FileDigest::new();
        want.update(&data);
        assert_eq!(d, want.finish());

        l.save().unwrap();
        let saved = sidecar::load(&PartialPaths::new(dir.path(), "f").sidecar)
            .unwrap()
            .unwrap();
        let starts: Vec<u64> = saved.segments.iter().map(|s| s.start).collect();
        assert_eq!(starts, [0, 5_000, 7_750]);
        assert!(sidecar::segments_tile(&saved.segments, 10_000));
    }

    /// The trailing hasher feeds the archive check the file's name calls
    /// for, in file order, whatever order the segments land in.
    #[test]
    fn trailing_hash_checks_an_archive_written_out_of_order() {
        use crate::verify::archive::ContentCheck;
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        for i in 0..4u8 {
            let data: Vec<u8> = (0..20_000u32).map(|j| (j % 251) as u8 ^ i).collect();
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder
                .append_data(&mut header, format!("f{i}"), &data[..])
                .unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        gz.write_all(&builder.into_inner().unwrap()).unwrap();
        let mut archive = gz.finish().unwrap();
        let size = archive.len() as u64;
        let run = |bytes: &[u8]| {
            let path = dir.path().join("base.tar.gz.part");
            let file = Arc::new(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)
                    .unwrap(),
            );
            file.set_len(size).unwrap();
            let l = named_ledger(dir.path(), "base.tar.gz", size, 3);
            let (l2, f2) = (l.clone(), file.clone());
            let hasher = std::thread::spawn(move || trailing_hash(&l2, &f2));
            for (i, s) in l.segments().iter().enumerate().rev() {
                file.write_all_at(&bytes[s.start as usize..s.end as usize], s.start)
                    .unwrap();
                l.advance(i, s.end);
            }
            hasher.join().unwrap().unwrap().unwrap().content
        };
        assert!(
            matches!(run(&archive), ContentCheck::Archive(Ok(s)) if s.entries == 4),
            "{:?}",
            run(&archive)
        );
        // A flipped byte inside the first entry's data (stored, not
        // compressed: gzip header 10 bytes, stored block header 5, tar
        // header 512): only the CRC-32 can tell.
        archive[10 + 5 + 512 + 100] ^= 0x01;
        assert!(
            matches!(
                run(&archive),
                ContentCheck::Archive(Err(
                    crate::verify::archive::ArchiveError::GzipCrcMismatch { .. }
                ))
            ),
            "{:?}",
            run(&archive)
        );
    }
}
