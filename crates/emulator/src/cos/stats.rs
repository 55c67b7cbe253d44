//! Per-object request statistics of the fake COS server, so tests can assert
//! on what the emulator actually served (requests, ranges, statuses, bytes).

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How many request records are kept per key; counters go on past it.
const MAX_RECORDS: usize = 10_000;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The `Range` header as sent, if any.
    pub range: Option<String>,
    /// The status code answered.
    pub status: u16,
    /// Body bytes sent so far (final once the response ended).
    pub bytes_sent: u64,
    /// Whether it reached the intranet listener (`InnerDownloadUrl`'s host)
    /// rather than the public one.
    pub intranet: bool,
}

/// A snapshot of the statistics of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectStats {
    /// Requests received for the key (any outcome).
    pub requests: u64,
    /// Body bytes sent for the key, over all responses.
    pub bytes_served: u64,
    /// The requests, oldest first (at most 10 000; see `dropped_records`).
    pub records: Vec<RequestRecord>,
    /// Requests not kept in `records` because the list was full.
    pub dropped_records: u64,
    /// The most response bodies of the key that were streaming at once
    /// (one per connection: how many connections a client really used).
    pub peak_open_bodies: u64,
}

impl ObjectStats {
    /// The status of every recorded request, oldest first.
    pub fn statuses(&self) -> Vec<u16> {
        self.records.iter().map(|r| r.status).collect()
    }

    /// The `Range` header of every recorded request, oldest first.
    pub fn ranges(&self) -> Vec<Option<String>> {
        self.records.iter().map(|r| r.range.clone()).collect()
    }

    /// How many recorded requests reached the intranet listener.
    pub fn intranet_requests(&self) -> usize {
        self.records.iter().filter(|r| r.intranet).count()
    }

    /// How many recorded requests were answered with `status`.
    pub fn count_status(&self, status: u16) -> usize {
        self.records.iter().filter(|r| r.status == status).count()
    }
}

/// Live counters of one request, shared with its body stream.
#[derive(Debug)]
pub(crate) struct LiveRecord {
    method: String,
    range: Option<String>,
    intranet: bool,
    status: AtomicU16,
    bytes: AtomicU64,
    key: Arc<KeyStats>,
}

impl LiveRecord {
    /// Remember the status answered.
    pub(crate) fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// Count a response body as streaming until the returned guard drops.
    pub(crate) fn open_body(&self) -> OpenBody {
        let key = Arc::clone(&self.key);
        let now = key.open_bodies.fetch_add(1, Ordering::Relaxed) + 1;
        key.peak_open_bodies.fetch_max(now, Ordering::Relaxed);
        OpenBody(key)
    }

    /// Count `n` body bytes as sent.
    pub(crate) fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.key.bytes.fetch_add(n, Ordering::Relaxed);
    }
}

/// A response body counted as streaming; dropping it counts it out.
#[derive(Debug)]
pub(crate) struct OpenBody(Arc<KeyStats>);

impl Drop for OpenBody {
    fn drop(&mut self) {
        self.0.open_bodies.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters of one key.
#[derive(Debug, Default)]
pub(crate) struct KeyStats {
    requests: AtomicU64,
    open_bodies: AtomicU64,
    peak_open_bodies: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    records: Mutex<Vec<Arc<LiveRecord>>>,
}

impl KeyStats {
    fn records(&self) -> std::sync::MutexGuard<'_, Vec<Arc<LiveRecord>>> {
        // A poisoned lock only means a panic elsewhere mid-push; the list is usable.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start recording a request.
    pub(crate) fn begin(
        self: &Arc<Self>,
        method: &str,
        range: Option<&str>,
        intranet: bool,
    ) -> Arc<LiveRecord> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let record = Arc::new(LiveRecord {
            method: method.to_string(),
            range: range.map(str::to_string),
            intranet,
            status: AtomicU16::new(0),
            bytes: AtomicU64::new(0),
            key: Arc::clone(self),
        });
        let mut records = self.records();
        if records.len() < MAX_RECORDS {
            records.push(Arc::clone(&record));
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        record
    }

    /// A snapshot.
    pub(crate) fn snapshot(&self) -> ObjectStats {
        let records = self
            .records()
            .iter()
            .map(|r| RequestRecord {
                method: r.method.clone(),
                range: r.range.clone(),
                status: r.status.load(Ordering::Relaxed),
                intranet: r.intranet,
                bytes_sent: r.bytes.load(Ordering::Relaxed),
            })
            .collect();
        ObjectStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_served: self.bytes.load(Ordering::Relaxed),
            records,
            dropped_records: self.dropped.load(Ordering::Relaxed),
            peak_open_bodies: self.peak_open_bodies.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_follow_live_counters() {
        let key = Arc::new(KeyStats::default());
        let a = key.begin("GET", Some("bytes=0-9"), false);
        let b = key.begin("HEAD", None, true);
        a.set_status(206);
        a.add_bytes(4);
        a.add_bytes(6);
        b.set_status(200);
        let snap = key.snapshot();
        assert_eq!(snap.requests, 2);
        assert_eq!(snap.bytes_served, 10);
        assert_eq!(snap.statuses(), vec![206, 200]);
        assert_eq!(snap.ranges(), vec![Some("bytes=0-9".to_string()), None]);
        assert_eq!(snap.records[0].bytes_sent, 10);
        assert_eq!(snap.count_status(200), 1);
        assert_eq!(snap.intranet_requests(), 1);
        assert!(snap.records[1].intranet);
        assert_eq!(snap.peak_open_bodies, 0);
    }

    #[test]
    fn the_peak_of_open_bodies_is_kept() {
        let key = Arc::new(KeyStats::default());
        let a = key.begin("GET", None, false);
        let b = key.begin("GET", None, false);
        let (x, y) = (a.open_body(), b.open_body());
        drop(x);
        let z = a.open_body();
        drop((y, z));
        let _w = a.open_body();
        assert_eq!(key.snapshot().peak_open_bodies, 2);
    }
}
