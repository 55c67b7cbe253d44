//! End-to-end behaviour of the transfer engine against the fake COS server:
//! one test per fault, each asserting on the bytes on disk and on what the
//! server actually served.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::fake_cos::FakeCos;
use bytes::Bytes;
use chrono::DateTime;
use futures::future::BoxFuture;
use tcbackup_core::transfer::{
    Downloader, FetchedFile, FileJob, ProgressEvent, RestartReason, RetryPolicy, TransferConfig,
    TransferError, UrlSource, UrlSourceError,
};
use tcbackup_core::verify::{self, Expectations, VerifyError};
use tcbackup_emulator::cos::{
    fill_generated, CosStore, Fault, FaultTarget, ObjectBody, ObjectOptions, Repeat, UrlShape,
};
use tcbackup_signing::clock::{Clock, ManualClock};
use tcbackup_signing::secret::SignedUrl;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SECRET_ID: &str = "AKIDtransferTest";
const SECRET_KEY: &str = "transferTestSecretKey";
const MIB: u64 = 1024 * 1024;

/// A fake COS and a download directory.
struct Server {
    cos: FakeCos,
    store: Arc<CosStore>,
    clock: ManualClock,
    base: String,
    dir: tempfile::TempDir,
}

impl Server {
    /// A fake COS on a random port, its clock frozen.
    async fn start() -> Server {
        Self::with_clock(ManualClock::fixed(
            DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        ))
        .await
    }

    async fn with_clock(clock: ManualClock) -> Server {
        let cos = FakeCos::with_clock(clock, SECRET_ID, SECRET_KEY).await;
        Server {
            store: cos.store.clone(),
            clock: cos.clock.clone(),
            base: cos.base.clone(),
            dir: tempfile::tempdir().unwrap(),
            cos,
        }
    }

    fn put_generated(&self, key: &str, seed: u64, len: u64) {
        self.cos.put(key, ObjectBody::Generated { seed, len });
    }

    fn minter(&self, key: &str, lifetime: i64) -> Arc<Minter> {
        Arc::new(Minter {
            store: self.store.clone(),
            base: self.base.clone(),
            key: key.to_string(),
            lifetime,
            calls: AtomicU32::new(0),
        })
    }

    fn job(&self, key: &str, size: u64, url: Arc<dyn UrlSource>) -> FileJob {
        FileJob {
            backup_id: "backup-1".into(),
            file_name: key.to_string(),
            expected_size: size,
            partial_dir: self.dir.path().join(".partial"),
            url,
        }
    }

    fn part(&self, key: &str) -> PathBuf {
        self.dir.path().join(".partial").join(format!("{key}.part"))
    }

    fn served(&self, key: &str) -> u64 {
        self.cos.served(key)
    }
}

/// Mints a fresh presigned URL on every call and counts the calls.
struct Minter {
    store: Arc<CosStore>,
    base: String,
    key: String,
    lifetime: i64,
    calls: AtomicU32,
}

impl UrlSource for Minter {
    fn fresh_url(&self) -> BoxFuture<'_, Result<SignedUrl, UrlSourceError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(SignedUrl::new(self.store.presign(
                &self.base,
                &self.key,
                self.lifetime,
                UrlShape::Wrapped,
            )))
        })
    }
}

/// Fast retries, single stream unless a test asks for segments.
fn config() -> TransferConfig {
    TransferConfig {
        allow_http: true,
        segment_threshold: u64::MAX,
        free_space_margin: 0,
        idle_timeout: Duration::from_secs(20),
        retry: RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
            jitter: true,
            seed: Some(1),
        },
        ..TransferConfig::default()
    }
}

fn segmented(segments: usize) -> TransferConfig {
    TransferConfig {
        segments,
        segment_threshold: 1,
        ..config()
    }
}

fn downloader(config: TransferConfig, clock: &ManualClock) -> Downloader {
    Downloader::new(config, Arc::new(clock.clone())).unwrap()
}

fn generated(seed: u64, len: u64) -> Vec<u8> {
    let mut v = vec![0u8; len as usize];
    fill_generated(seed, 0, &mut v);
    v
}

/// Run a fetch to its end and collect every progress event.
async fn fetch_all(
    dl: &Downloader,
    job: FileJob,
) -> (Result<FetchedFile, TransferError>, Vec<ProgressEvent>) {
    let (tx, mut rx) = mpsc::channel(4096);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(ev) = rx.recv().await {
            events.push(ev);
        }
        events
    });
    let result = dl.fetch(job, tx, CancellationToken::new()).await;
    (result, collector.await.unwrap())
}

/// How long the stall tests wait for a byte: long enough that a loaded
/// machine never looks stalled, short enough to keep the tests quick.
const STALL: Duration = Duration::from_secs(2);

/// For runs that are stopped at a stall: a short idle timeout, and a
/// backoff so long that the cancellation always comes first.
fn stop_at_stall(base: TransferConfig) -> TransferConfig {
    TransferConfig {
        idle_timeout: STALL,
        retry: RetryPolicy {
            base: Duration::from_secs(60),
            cap: Duration::from_secs(60),
            jitter: false,
            ..base.retry.clone()
        },
        ..base
    }
}

/// Run a fetch and cancel it after the `n`th `Retrying` event (with
/// [`stop_at_stall`], when `n` streams sit at their stall points).
async fn fetch_until_retries(
    dl: &Downloader,
    job: FileJob,
    n: usize,
) -> Result<FetchedFile, TransferError> {
    let (tx, mut rx) = mpsc::channel(1024);
    let cancel = CancellationToken::new();
    let run = dl.fetch(job, tx, cancel.clone());
    let watcher = async {
        let mut seen = 0;
        while let Some(ev) = rx.recv().await {
            if matches!(ev, ProgressEvent::Retrying { .. }) {
                seen += 1;
                if seen == n {
                    cancel.cancel();
                }
            }
        }
    };
    let (r, ()) = tokio::join!(run, watcher);
    r
}

/// What a user's Ctrl-C leaves behind: make the first `streams` responses
/// for `key` stall after `stall_after` bytes, fetch it with `base` until
/// every stream sits at its stall point, and cancel. Returns the job that
/// resumes it.
async fn cancelled_at_stall(
    srv: &Server,
    (key, size): (&str, u64),
    stall_after: u64,
    streams: usize,
    base: TransferConfig,
) -> FileJob {
    let job = srv.job(key, size, srv.minter(key, 3600));
    cancel_job_at_stall(srv, job.clone(), stall_after, streams, base).await;
    job
}

/// [`cancelled_at_stall`] for a given job (whose file name is the key).
async fn cancel_job_at_stall(
    srv: &Server,
    job: FileJob,
    stall_after: u64,
    streams: usize,
    base: TransferConfig,
) {
    srv.store.add_fault(
        FaultTarget::Key(job.file_name.clone()),
        Fault::StallAfter(stall_after),
        Repeat::Times(streams as u32),
    );
    let dl = downloader(stop_at_stall(base), &srv.clock);
    let first = fetch_until_retries(&dl, job, streams).await;
    srv.store.release_stalls();
    assert!(first.unwrap_err().is_cancelled());
}

/// The written offsets the sidecar of `key` records, per segment.
fn sidecar_written(srv: &Server, key: &str) -> Vec<u64> {
    let path = srv
        .dir
        .path()
        .join(".partial")
        .join(format!("{key}.part.json"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    json["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["written"].as_u64().unwrap())
        .collect()
}

/// How many leading bytes of the (preallocated) part file already hold the
/// object's content.
fn written_prefix(srv: &Server, key: &str, want: &[u8]) -> u64 {
    let on_disk = std::fs::read(srv.part(key)).unwrap();
    let same = on_disk
        .chunks(4096)
        .zip(want.chunks(4096))
        .take_while(|(a, b)| a == b)
        .count();
    (same * 4096).min(want.len()) as u64
}

fn bytes_reported(events: &[ProgressEvent]) -> u64 {
    // Counts since the last restart, as a progress bar would show them.
    events.iter().fold(0, |acc, ev| match ev {
        ProgressEvent::Bytes { n, .. } => acc + n,
        ProgressEvent::Restarted { .. } => 0,
        _ => acc,
    })
}

fn restarts(events: &[ProgressEvent]) -> Vec<RestartReason> {
    events
        .iter()
        .filter_map(|ev| match ev {
            ProgressEvent::Restarted { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

fn started_from(events: &[ProgressEvent]) -> u64 {
    match events.first() {
        Some(ProgressEvent::Started { resumed_from, .. }) => *resumed_from,
        other => panic!("first event is not Started: {other:?}"),
    }
}

/// The fetched file is exactly `want`, its digests and the server's CRC agree.
fn assert_fetched(f: &FetchedFile, want: &[u8]) {
    let on_disk = std::fs::read(&f.path).unwrap();
    assert_eq!(on_disk.len(), want.len(), "size on disk");
    assert!(on_disk == want, "content on disk differs from the object");
    let v = verify::verify_file(
        &f.path,
        &Expectations {
            size: want.len() as u64,
            server_crc64: f.server_crc64,
            rdb: false,
        },
    )
    .unwrap();
    assert_eq!(v.sha256, f.sha256);
    assert_eq!(v.crc64, f.crc64);
    assert_eq!(f.server_crc64, Some(f.crc64));
}

#[tokio::test]
async fn clean_single_stream_downloads_once_with_digests() {
    let srv = Server::start().await;
    let size = 3 * MIB + 17;
    srv.put_generated("a.rdb", 1, size);
    let dl = downloader(config(), &srv.clock);
    let (r, events) = fetch_all(&dl, srv.job("a.rdb", size, srv.minter("a.rdb", 3600))).await;
    let f = r.unwrap();
    assert_fetched(&f, &generated(1, size));
    let stats = srv.store.stats("a.rdb");
    assert_eq!(stats.statuses(), [200]);
    assert_eq!(stats.ranges(), [None]);
    assert_eq!(stats.bytes_served, size);
    assert_eq!(bytes_reported(&events), size);
    assert!(matches!(
        events.last(),
        Some(ProgressEvent::Finished { .. })
    ));
    // The sidecar says complete and never holds the URL.
    let sidecar = std::fs::read_to_string(&f.sidecar).unwrap();
    assert!(
        !sidecar.contains("q-sign") && !sidecar.contains("http"),
        "{sidecar}"
    );
    verify::verify_with_digests(
        &f.path,
        &f.digests(),
        &Expectations {
            size,
            server_crc64: f.server_crc64,
            rdb: false,
        },
    )
    .unwrap();
    f.remove_sidecar().unwrap();
    assert!(!f.sidecar.exists());
}

#[tokio::test]
async fn segmented_download_uses_exact_ranges() {
    let srv = Server::start().await;
    let size = 10 * MIB + 3;
    srv.put_generated("big.tar.gz", 2, size);
    let dl = downloader(segmented(4), &srv.clock);
    let (r, events) = fetch_all(
        &dl,
        srv.job("big.tar.gz", size, srv.minter("big.tar.gz", 3600)),
    )
    .await;
    let f = r.unwrap();
    assert_fetched(&f, &generated(2, size));
    let stats = srv.store.stats("big.tar.gz");
    assert_eq!(stats.statuses(), [206; 4]);
    let mut ranges: Vec<String> = stats.ranges().into_iter().map(Option::unwrap).collect();
    ranges.sort();
    let q = size / 4;
    let want: Vec<String> = (0..4)
        .map(|i| {
            let start = q * i + (size % 4).min(i);
            let end = q * (i + 1) + (size % 4).min(i + 1);
            format!("bytes={start}-{}", end - 1)
        })
        .collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(ranges, want_sorted);
    // The first request (the one that learns the ETag) is the first segment.
    assert_eq!(stats.ranges()[0].as_deref(), Some(want[0].as_str()));
    assert_eq!(stats.bytes_served, size);
    assert_eq!(bytes_reported(&events), size);
}

#[tokio::test]
async fn pieces_are_taken_in_order_within_a_tiny_memory_budget() {
    let srv = Server::start().await;
    let size = 8 * MIB + 5;
    srv.put_generated("p.tar", 30, size);
    let dl = downloader(
        TransferConfig {
            piece_size: MIB,
            // Less than one buffer per stream: streams wait on each other.
            buffer_budget: 64 * 1024,
            ..segmented(2)
        },
        &srv.clock,
    );
    let (r, _) = fetch_all(&dl, srv.job("p.tar", size, srv.minter("p.tar", 3600))).await;
    assert_fetched(&r.unwrap(), &generated(30, size));
    let stats = srv.store.stats("p.tar");
    assert_eq!(stats.statuses(), [206; 9]);
    assert_eq!(stats.bytes_served, size);
    let starts: Vec<u64> = stats
        .ranges()
        .iter()
        .map(|r| {
            let r = r.as_deref().unwrap();
            r["bytes=".len()..r.find('-').unwrap()].parse().unwrap()
        })
        .collect();
    assert_eq!(starts[0], 0, "the first piece goes first");
    let mut sorted = starts.clone();
    sorted.sort_unstable();
    let want: Vec<u64> = (0..9u64)
        .map(|i| size / 9 * i + (size % 9).min(i))
        .collect();
    assert_eq!(sorted, want);
    // Handed out in order: no piece starts before both earlier ones did.
    for (i, s) in starts.iter().enumerate() {
        let rank = want.iter().position(|w| w == s).unwrap();
        assert!(
            rank <= i + 1,
            "piece {rank} requested as number {i}: {starts:?}"
        );
    }
}

#[tokio::test]
async fn cut_body_resumes_from_the_offset() {
    let srv = Server::start().await;
    let size = 4 * MIB;
    srv.put_generated("cut.rdb", 3, size);
    srv.store.add_fault(
        FaultTarget::Key("cut.rdb".into()),
        Fault::CutAfter(MIB + 5),
        Repeat::Times(2),
    );
    let dl = downloader(config(), &srv.clock);
    let (r, events) = fetch_all(&dl, srv.job("cut.rdb", size, srv.minter("cut.rdb", 3600))).await;
    let f = r.unwrap();
    assert_fetched(&f, &generated(3, size));
    let stats = srv.store.stats("cut.rdb");
    assert_eq!(stats.statuses(), [200, 206, 206]);
    let ranges = stats.ranges();
    assert_eq!(ranges[0], None);
    assert_eq!(
        ranges[1].as_deref(),
        Some(format!("bytes={}-", MIB + 5).as_str())
    );
    assert_eq!(
        ranges[2].as_deref(),
        Some(format!("bytes={}-", 2 * (MIB + 5)).as_str())
    );
    // Nothing was fetched twice.
    assert_eq!(stats.bytes_served, size);
    let retries = events
        .iter()
        .filter(|e| matches!(e, ProgressEvent::Retrying { .. }))
        .count();
    assert_eq!(retries, 2);
    assert_eq!(f.restarts, 0);
}

#[tokio::test]
async fn server_errors_are_retried_then_given_up() {
    let srv = Server::start().await;
    let size = MIB;
    srv.put_generated("e.rdb", 4, size);
    srv.store.add_fault(
        FaultTarget::Key("e.rdb".into()),
        Fault::ServerError(503),
        Repeat::Times(2),
    );
    let dl = downloader(config(), &srv.clock);
    let (r, _) = fetch_all(&dl, srv.job("e.rdb", size, srv.minter("e.rdb", 3600))).await;
    assert_fetched(&r.unwrap(), &generated(4, size));
    assert_eq!(srv.store.stats("e.rdb").statuses(), [503, 503, 200]);

    srv.put_generated("down.rdb", 4, size);
    srv.store.add_fault(
        FaultTarget::Key("down.rdb".into()),
        Fault::ServerError(500),
        Repeat::Always,
    );
    let minter = srv.minter("down.rdb", 3600);
    let (r, _) = fetch_all(&dl, srv.job("down.rdb", size, minter)).await;
    let err = r.unwrap_err();
    match &err {
        TransferError::RetriesExhausted { attempts, last, .. } => {
            assert_eq!(*attempts, 5);
            assert!(last.contains("500"), "{last}");
        }
        other => panic!("expected RetriesExhausted, got {other}"),
    }
    assert_eq!(srv.store.stats("down.rdb").requests, 5);
    assert!(!err.to_string().contains("q-signature"), "{err}");
}

#[tokio::test]
async fn a_200_to_a_ranged_request_starts_over_with_that_body() {
    let srv = Server::start().await;
    let size = 2 * MIB;
    srv.put_generated("r.rdb", 5, size);
    let key = FaultTarget::Key("r.rdb".into());
    srv.store
        .add_fault(key.clone(), Fault::CutAfter(MIB / 2), Repeat::Times(1));
    srv.store
        .add_fault(key, Fault::IgnoreRange, Repeat::Times(1));
    let dl = downloader(config(), &srv.clock);
    let (r, events) = fetch_all(&dl, srv.job("r.rdb", size, srv.minter("r.rdb", 3600))).await;
    let f = r.unwrap();
    assert_fetched(&f, &generated(5, size));
    let stats = srv.store.stats("r.rdb");
    // The second answer ignored the range; its whole body became the file:
    // no third request, nothing appended after the first half MiB.
    assert_eq!(stats.statuses(), [200, 200]);
    assert_eq!(
        stats.ranges()[1].as_deref(),
        Some(format!("bytes={}-", MIB / 2).as_str())
    );
    assert_eq!(stats.bytes_served, MIB / 2 + size);
    assert_eq!(restarts(&events), [RestartReason::RangeIgnored]);
    assert_eq!(bytes_reported(&events), size);
    assert_eq!(f.restarts, 1);
}

#[tokio::test]
async fn segmented_download_falls_back_to_one_stream_when_ranges_are_ignored() {
    let srv = Server::start().await;
    let size = 8 * MIB;
    srv.put_generated("s.tar", 6, size);
    srv.store.add_fault(
        FaultTarget::Key("s.tar".into()),
        Fault::IgnoreRange,
        Repeat::Times(1),
    );
    let dl = downloader(segmented(4), &srv.clock);
    let (r, events) = fetch_all(&dl, srv.job("s.tar", size, srv.minter("s.tar", 3600))).await;
    let f = r.unwrap();
    assert_fetched(&f, &generated(6, size));
    let stats = srv.store.stats("s.tar");
    // Only the first segment asked; the 200 it got was used as the file.
    assert_eq!(stats.statuses(), [200]);
    assert_eq!(stats.bytes_served, size);
    assert_eq!(restarts(&events), [RestartReason::RangeIgnored]);
}

#[tokio::test]
async fn a_shrunk_object_gives_416_and_a_size_error() {
    let srv = Server::start().await;
    let size = 3 * MIB;
    srv.store
        .put(
            "s.rdb",
            ObjectBody::Generated { seed: 7, len: size },
            ObjectOptions {
                legacy_no_crc: true,
            },
        )
        .unwrap();
    cancelled_at_stall(&srv, ("s.rdb", size), 2 * MIB, 1, config()).await;
    assert_eq!(sidecar_written(&srv, "s.rdb"), [2 * MIB]);
    // A server without ETags: nothing to send If-Match with.
    let sidecar_path = srv.dir.path().join(".partial/s.rdb.part.json");
    let mut sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar_path).unwrap()).unwrap();
    sidecar["etag"] = serde_json::Value::Null;
    std::fs::write(&sidecar_path, serde_json::to_vec(&sidecar).unwrap()).unwrap();
    // The object shrinks below what we already have.
    srv.put_generated("s.rdb", 7, MIB / 2);
    let dl = downloader(config(), &srv.clock);
    let (r, _) = fetch_all(&dl, srv.job("s.rdb", size, srv.minter("s.rdb", 3600))).await;
    match r.unwrap_err() {
        TransferError::SizeMismatch {
            expected, actual, ..
        } => assert_eq!((expected, actual), (size, MIB / 2)),
        other => panic!("expected SizeMismatch, got {other}"),
    }
    assert_eq!(srv.store.stats("s.rdb").statuses().last(), Some(&416));
}

/// Rate cap so that a cut at `cut` bytes cannot come earlier than
/// `cut / rate` seconds: longer than the one-second URL below lives.
const CAP: u64 = MIB;

/// With no connection setting and COS capping every connection, the
/// downloader measures that more connections pay and opens more than the
/// four it starts with (`transfer::adaptive::START`); the file arrives
/// intact, every byte served once.
#[tokio::test]
async fn a_per_connection_cap_makes_the_downloader_add_connections() {
    const PER_CONNECTION: u64 = 2 * MIB;
    let srv = Server::start().await;
    let size = 24 * MIB + 7;
    srv.put_generated("capped.tar", 31, size);
    srv.store.set_rate_limit(Some(PER_CONNECTION));
    let config = TransferConfig {
        segment_threshold: 1,
        piece_size: MIB,
        adapt_interval: Duration::from_millis(200),
        ..config()
    };
    let most = config.segments as u64;
    let dl = downloader(config, &srv.clock);
    let (r, events) = fetch_all(
        &dl,
        srv.job("capped.tar", size, srv.minter("capped.tar", 3600)),
    )
    .await;
    assert_fetched(&r.unwrap(), &generated(31, size));
    let stats = srv.store.stats("capped.tar");
    assert!(
        stats.peak_open_bodies > 4,
        "at most {} connections at once",
        stats.peak_open_bodies
    );
    assert!(stats.peak_open_bodies <= most, "{}", stats.peak_open_bodies);
    assert!(
        stats.statuses().iter().all(|s| *s == 206),
        "{:?}",
        stats.statuses()
    );
    assert_eq!(stats.requests, 25, "one request per piece");
    assert_eq!(stats.bytes_served, size);
    assert_eq!(bytes_reported(&events), size);
}

#[tokio::test]
async fn url_expiring_mid_download_is_renewed_before_the_next_request() {
    // Both sides follow the wall clock; the URL lives one second.
    let srv = Server::with_clock(ManualClock::new()).await;
    let size = 4 * MIB;
    srv.put_generated("x.rdb", 8, size);
    srv.store.set_rate_limit(Some(CAP));
    srv.store.add_fault(
        FaultTarget::Key("x.rdb".into()),
        Fault::CutAfter(3 * MIB),
        Repeat::Times(1),
    );
    let minter = srv.minter("x.rdb", 1);
    let dl = downloader(config(), &srv.clock);
    let (r, events) = fetch_all(&dl, srv.job("x.rdb", size, minter.clone())).await;
    let f = r.unwrap();
    assert_fetched(&f, &generated(8, size));
    let stats = srv.store.stats("x.rdb");
    // Renewed before asking: no 403 was needed.
    assert_eq!(stats.statuses(), [200, 206]);
    assert_eq!(
        stats.ranges()[1].as_deref(),
        Some(format!("bytes={}-", 3 * MIB).as_str())
    );
    assert_eq!(stats.bytes_served, size);
    assert_eq!(minter.calls.load(Ordering::SeqCst), 2);
    assert!(events
        .iter()
        .any(|e| matches!(e, ProgressEvent::UrlRefreshed { .. })));
}

#[tokio::test]
async fn url_that_cos_calls_expired_is_renewed_and_the_offset_kept() {
    let srv = Server::with_clock(ManualClock::new()).await;
    let size = 4 * MIB;
    srv.put_generated("y.rdb", 9, size);
    srv.store.set_rate_limit(Some(CAP));
    srv.store.add_fault(
        FaultTarget::Key("y.rdb".into()),
        Fault::CutAfter(3 * MIB),
        Repeat::Times(1),
    );
    let minter = srv.minter("y.rdb", 1);
    // Our clock runs an hour late, so only COS can tell the URL expired.
    let late = ManualClock::new();
    late.advance(chrono::Duration::seconds(-3600));
    let dl = downloader(config(), &late);
    let (r, events) = fetch_all(&dl, srv.job("y.rdb", size, minter.clone())).await;
    let f = r.unwrap();
    assert_fetched(&f, &generated(9, size));
    let stats = srv.store.stats("y.rdb");
    assert_eq!(stats.statuses(), [200, 403, 206]);
    let tail = Some(format!("bytes={}-", 3 * MIB));
    assert_eq!(stats.ranges()[1], tail);
    assert_eq!(stats.ranges()[2], tail);
    // Within the file size plus one segment (here: exactly the file).
    assert!(stats.bytes_served <= size + size, "{}", stats.bytes_served);
    assert_eq!(stats.bytes_served, size);
    assert_eq!(minter.calls.load(Ordering::SeqCst), 2);
    assert!(events
        .iter()
        .any(|e| matches!(e, ProgressEvent::UrlRefreshed { .. })));
}

#[tokio::test]
async fn object_replaced_mid_download_starts_over_with_the_new_object() {
    let srv = Server::start().await;
    let size = 3 * MIB;
    srv.put_generated("o.rdb", 10, size);
    let key = FaultTarget::Key("o.rdb".into());
    srv.store.add_fault(
        key.clone(),
        Fault::ReplaceAfter {
            after_bytes: MIB,
            body: ObjectBody::Generated {
                seed: 11,
                len: size,
            },
        },
        Repeat::Times(1),
    );
    srv.store
        .add_fault(key, Fault::CutAfter(2 * MIB), Repeat::Times(1));
    let dl = downloader(config(), &srv.clock);
    let (r, events) = fetch_all(&dl, srv.job("o.rdb", size, srv.minter("o.rdb", 3600))).await;
    let f = r.unwrap();
    // The bytes are the new object's, none of the old one's.
    assert_fetched(&f, &generated(11, size));
    assert_eq!(
        f.etag.as_deref(),
        Some(srv.store.info("o.rdb").unwrap().etag.as_str())
    );
    let stats = srv.store.stats("o.rdb");
    assert_eq!(stats.statuses(), [200, 412, 200]);
    assert_eq!(stats.bytes_served, 2 * MIB + size);
    assert_eq!(restarts(&events), [RestartReason::ObjectReplaced]);
    assert_eq!(bytes_reported(&events), size);
}

#[tokio::test]
async fn object_replaced_under_segments_restarts_every_segment() {
    let srv = Server::start().await;
    let size = 8 * MIB;
    srv.put_generated("os.tar", 12, size);
    srv.store.add_fault(
        FaultTarget::Key("os.tar".into()),
        Fault::ReplaceAfter {
            after_bytes: 0,
            body: ObjectBody::Generated {
                seed: 13,
                len: size,
            },
        },
        Repeat::Times(1),
    );
    let dl = downloader(segmented(4), &srv.clock);
    let (r, events) = fetch_all(&dl, srv.job("os.tar", size, srv.minter("os.tar", 3600))).await;
    let f = r.unwrap();
    assert_fetched(&f, &generated(13, size));
    let stats = srv.store.stats("os.tar");
    assert!(stats.count_status(412) >= 1, "{:?}", stats.statuses());
    assert_eq!(restarts(&events), [RestartReason::ObjectReplaced]);
    // The first pass served at most its first segment, then all again.
    assert!(
        stats.bytes_served <= size + size / 4,
        "{}",
        stats.bytes_served
    );
}

#[tokio::test]
async fn stalled_response_is_abandoned_and_resumed() {
    let srv = Server::start().await;
    let size = 3 * MIB;
    srv.put_generated("st.rdb", 14, size);
    srv.store.add_fault(
        FaultTarget::Key("st.rdb".into()),
        Fault::StallAfter(MIB),
        Repeat::Times(1),
    );
    let dl = downloader(
        TransferConfig {
            idle_timeout: STALL,
            ..config()
        },
        &srv.clock,
    );
    let (r, events) = fetch_all(&dl, srv.job("st.rdb", size, srv.minter("st.rdb", 3600))).await;
    srv.store.release_stalls();
    let f = r.unwrap();
    assert_fetched(&f, &generated(14, size));
    let stats = srv.store.stats("st.rdb");
    assert_eq!(stats.statuses(), [200, 206]);
    assert_eq!(
        stats.ranges()[1].as_deref(),
        Some(format!("bytes={MIB}-").as_str())
    );
    assert_eq!(stats.bytes_served, size);
    let stalled = events
        .iter()
        .any(|e| matches!(e, ProgressEvent::Retrying { error, .. } if error.contains("no data")));
    assert!(stalled, "{events:?}");
}

#[tokio::test]
async fn cancelled_download_resumes_in_a_new_downloader() {
    let srv = Server::start().await;
    let size = 12 * MIB;
    srv.put_generated("re.rdb", 15, size);
    let job = cancelled_at_stall(&srv, ("re.rdb", size), 6 * MIB, 1, config()).await;
    let kept = sidecar_written(&srv, "re.rdb")[0];
    assert_eq!(kept, 6 * MIB);
    assert_eq!(written_prefix(&srv, "re.rdb", &generated(15, size)), kept);

    // A new process: new downloader, same partial directory.
    let dl = downloader(config(), &srv.clock);
    let (r, events) = fetch_all(&dl, job).await;
    let f = r.unwrap();
    assert_fetched(&f, &generated(15, size));
    assert_eq!(started_from(&events), kept);
    assert_eq!(f.resumed_from, kept);
    let stats = srv.store.stats("re.rdb");
    assert_eq!(
        stats.ranges()[1].as_deref(),
        Some(format!("bytes={kept}-").as_str())
    );
    assert!(
        stats.bytes_served < size + 8 * MIB,
        "{}",
        stats.bytes_served
    );
    // Not one byte twice.
    assert_eq!(stats.bytes_served, size);
}

#[tokio::test]
async fn killed_process_refetches_at_most_one_checkpoint() {
    let srv = Server::start().await;
    let size = 24 * MIB;
    srv.put_generated("k.rdb", 16, size);
    srv.store.add_fault(
        FaultTarget::Key("k.rdb".into()),
        Fault::StallAfter(20 * MIB),
        Repeat::Times(1),
    );
    let job = srv.job("k.rdb", size, srv.minter("k.rdb", 3600));
    let checkpoint = config().checkpoint_bytes;
    // The first "process" runs on its own runtime, which is dropped at once
    // (no cancellation path runs, like SIGKILL; only in-flight disk writes end).
    let (tx, mut rx) = mpsc::channel(1024);
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let victim = {
        let (job, clock) = (job.clone(), srv.clock.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let dl = downloader(config(), &clock);
            rt.spawn(async move {
                let _ = dl.fetch(job, tx, CancellationToken::new()).await;
            });
            kill_rx.recv().unwrap();
            drop(rt);
        })
    };
    let mut seen = 0;
    while let Some(ev) = rx.recv().await {
        if let ProgressEvent::Bytes { n, .. } = ev {
            seen += n;
            if seen >= 16 * MIB {
                break;
            }
        }
    }
    kill_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || victim.join().unwrap())
        .await
        .unwrap();
    srv.store.release_stalls();
    let on_disk = written_prefix(&srv, "k.rdb", &generated(16, size));
    assert!(on_disk >= 16 * MIB, "{on_disk}");

    let dl = downloader(config(), &srv.clock);
    let (r, events) = fetch_all(&dl, job).await;
    let f = r.unwrap();
    assert_fetched(&f, &generated(16, size));
    let resumed = started_from(&events);
    assert!(
        on_disk - resumed <= checkpoint,
        "{on_disk} written before the kill, resumed from {resumed}"
    );
    let stats = srv.store.stats("k.rdb");
    assert_eq!(
        stats.records[1].range.as_deref(),
        Some(format!("bytes={resumed}-").as_str())
    );
    assert_eq!(stats.records[1].bytes_sent, size - resumed);
}

#[tokio::test]
async fn segmented_download_resumes_every_segment() {
    let srv = Server::start().await;
    let size = 16 * MIB;
    // Stop once all four segments sit at their stall points.
    srv.put_generated("sr.tar", 17, size);
    let job = cancelled_at_stall(&srv, ("sr.tar", size), 2 * MIB, 4, segmented(4)).await;

    let dl = downloader(segmented(4), &srv.clock);
    let (r, events) = fetch_all(&dl, job).await;
    let f = r.unwrap();
    assert_fetched(&f, &generated(17, size));
    assert_eq!(started_from(&events), 8 * MIB);
    let stats = srv.store.stats("sr.tar");
    assert_eq!(stats.bytes_served, size);
    let resumed: Vec<String> = stats.ranges()[4..]
        .iter()
        .map(|r| r.clone().unwrap())
        .collect();
    assert_eq!(resumed.len(), 4);
    for i in 0..4u64 {
        let want = format!("bytes={}-{}", i * 4 * MIB + 2 * MIB, (i + 1) * 4 * MIB - 1);
        assert!(resumed.contains(&want), "{want} not in {resumed:?}");
    }
}

/// Pieces are halved as they are taken while fewer wait than there are
/// other workers; the halves are ordinary pieces in the sidecar, so a
/// resume fetches exactly what is missing.
#[tokio::test]
async fn split_pieces_are_fetched_once_and_resumed() {
    let srv = Server::start().await;
    let size = 32 * MIB;
    srv.put_generated("split.tar", 19, size);
    // Four pieces of 8 MiB and four workers: the first piece is the
    // probe's; of the three left, the second is halved as it is taken
    // (its half goes first), the half is too small to halve again, the
    // third is halved. Every stream stops after 2 MiB.
    let job = cancelled_at_stall(&srv, ("split.tar", size), 2 * MIB, 4, segmented(4)).await;
    let first = srv.store.stats("split.tar");
    let mut ranges: Vec<String> = first.ranges().into_iter().flatten().collect();
    ranges.sort_by_key(|r| {
        r["bytes=".len()..r.find('-').unwrap()]
            .parse::<u64>()
            .unwrap()
    });
    let want: Vec<String> = [(0, 8), (8, 12), (12, 16), (16, 20)]
        .iter()
        .map(|(a, b)| format!("bytes={}-{}", a * MIB, b * MIB - 1))
        .collect();
    assert_eq!(ranges, want);
    let written = sidecar_written(&srv, "split.tar");
    assert_eq!(
        written,
        [2, 10, 14, 18, 20, 24].map(|m| m * MIB),
        "six pieces in file order"
    );

    let dl = downloader(segmented(4), &srv.clock);
    let (r, events) = fetch_all(&dl, job).await;
    assert_fetched(&r.unwrap(), &generated(19, size));
    assert_eq!(started_from(&events), 8 * MIB);
    let stats = srv.store.stats("split.tar");
    assert_eq!(stats.bytes_served, size, "not one byte twice");
}

#[tokio::test]
async fn wrong_size_fails_before_anything_is_kept() {
    let srv = Server::start().await;
    srv.put_generated("w.rdb", 18, 2 * MIB);
    let dl = downloader(config(), &srv.clock);
    let (r, _) = fetch_all(
        &dl,
        srv.job("w.rdb", 2 * MIB + 1, srv.minter("w.rdb", 3600)),
    )
    .await;
    match r.unwrap_err() {
        TransferError::SizeMismatch {
            expected, actual, ..
        } => assert_eq!((expected, actual), (2 * MIB + 1, 2 * MIB)),
        other => panic!("expected SizeMismatch, got {other}"),
    }
    assert_eq!(sidecar_written(&srv, "w.rdb"), [0]);
    assert!(std::fs::read(srv.part("w.rdb"))
        .unwrap()
        .iter()
        .all(|b| *b == 0));
    assert_eq!(srv.store.stats("w.rdb").requests, 1);

    // Segmented: the first range's Content-Range total gives it away.
    let dl = downloader(segmented(4), &srv.clock);
    let (r, _) = fetch_all(
        &dl,
        srv.job("w2.rdb", 2 * MIB + 1, srv.minter("w.rdb", 3600)),
    )
    .await;
    assert!(
        matches!(r.unwrap_err(), TransferError::SizeMismatch { actual, .. } if actual == 2 * MIB)
    );
    assert_eq!(srv.store.stats("w.rdb").requests, 2);
}

#[tokio::test]
async fn crc_mismatch_is_reported_by_verification() {
    let srv = Server::start().await;
    let data = generated(19, MIB);
    let src = srv.dir.path().join("object.bin");
    std::fs::write(&src, &data).unwrap();
    srv.store
        .put(
            "c.rdb",
            ObjectBody::File(src.clone()),
            ObjectOptions::default(),
        )
        .unwrap();
    // COS computed its CRC; then the stored bytes rotted.
    let announced = srv.store.crc64("c.rdb").await.unwrap();
    let mut rotten = data.clone();
    rotten[1000] ^= 0x20;
    std::fs::write(&src, &rotten).unwrap();
    let dl = downloader(config(), &srv.clock);
    let (r, events) = fetch_all(&dl, srv.job("c.rdb", MIB, srv.minter("c.rdb", 3600))).await;
    let f = r.unwrap();
    assert_eq!(f.server_crc64, Some(announced));
    assert_ne!(f.crc64, announced);
    assert!(
        restarts(&events).is_empty(),
        "a fresh download is not retried"
    );
    assert_eq!(srv.served("c.rdb"), MIB);
    let err = verify::verify_with_digests(
        &f.path,
        &f.digests(),
        &Expectations {
            size: MIB,
            server_crc64: f.server_crc64,
            rdb: false,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::Crc64Mismatch { expected, actual, .. } if expected == announced && actual == f.crc64)
    );
    assert!(err.to_string().contains("c.rdb.part"), "{err}");
}

#[tokio::test]
async fn corrupted_resumed_bytes_are_fetched_again_once() {
    let srv = Server::start().await;
    let size = 6 * MIB;
    srv.put_generated("h.rdb", 20, size);
    let job = cancelled_at_stall(&srv, ("h.rdb", size), 4 * MIB, 1, config()).await;
    // A bit flips in the kept part (a bad disk, a crash mid-write).
    let part = srv.part("h.rdb");
    let mut bytes = std::fs::read(&part).unwrap();
    let kept = sidecar_written(&srv, "h.rdb")[0];
    bytes[10] ^= 0x01;
    std::fs::write(&part, &bytes).unwrap();

    let dl = downloader(config(), &srv.clock);
    let (r, events) = fetch_all(&dl, job).await;
    let f = r.unwrap();
    assert_fetched(&f, &generated(20, size));
    assert_eq!(restarts(&events), [RestartReason::ChecksumAfterResume]);
    assert_eq!(kept, 4 * MIB);
    let stats = srv.store.stats("h.rdb");
    assert_eq!(stats.statuses(), [200, 206, 200]);
    assert_eq!(stats.bytes_served, 4 * MIB + (size - kept) + size);
}

#[tokio::test]
async fn rdb_footer_mismatch_is_reported_by_verification() {
    let srv = Server::start().await;
    let mut body = b"REDIS0011".to_vec();
    let mut filler = vec![0u8; 200_000];
    fill_generated(21, 0, &mut filler);
    body.extend_from_slice(b"\xfa\x09redis-ver\x057.2.4\xfe\x00\xfb\x01\x00\x00\x03key");
    body.push(0x80);
    body.extend_from_slice(&(filler.len() as u32).to_be_bytes());
    body.extend_from_slice(&filler);
    let good = verify::rdb::seal(body);
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let size = good.len() as u64;
    for (key, bytes) in [("good.rdb", good.clone()), ("bad.rdb", bad)] {
        srv.store
            .put(
                key,
                ObjectBody::Bytes(Bytes::from(bytes)),
                ObjectOptions::default(),
            )
            .unwrap();
    }
    let dl = downloader(config(), &srv.clock);
    let expect = |f: &FetchedFile| Expectations {
        size,
        server_crc64: f.server_crc64,
        rdb: true,
    };
    let (r, _) = fetch_all(&dl, srv.job("good.rdb", size, srv.minter("good.rdb", 3600))).await;
    let f = r.unwrap();
    verify::verify_with_digests(&f.path, &f.digests(), &expect(&f)).unwrap();
    let (r, _) = fetch_all(&dl, srv.job("bad.rdb", size, srv.minter("bad.rdb", 3600))).await;
    let f = r.unwrap();
    // The transfer is faithful (COS's CRC matches); the dump itself is bad.
    assert_eq!(f.server_crc64, Some(f.crc64));
    let err = verify::verify_with_digests(&f.path, &f.digests(), &expect(&f)).unwrap_err();
    assert!(
        matches!(err, VerifyError::RdbChecksumMismatch { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn not_enough_free_space_fails_before_any_request() {
    let srv = Server::start().await;
    srv.put_generated("n.rdb", 22, MIB);
    let dl = downloader(
        TransferConfig {
            free_space_margin: u64::MAX / 2,
            ..config()
        },
        &srv.clock,
    );
    let (r, events) = fetch_all(&dl, srv.job("n.rdb", MIB, srv.minter("n.rdb", 3600))).await;
    let err = r.unwrap_err();
    match &err {
        TransferError::NoSpace {
            path,
            needed,
            available,
            ..
        } => {
            assert_eq!(path, &srv.dir.path().join(".partial"));
            assert_eq!(*needed, MIB);
            assert!(*available > 0);
        }
        other => panic!("expected NoSpace, got {other}"),
    }
    assert!(err.to_string().contains(".partial"), "{err}");
    assert_eq!(srv.store.stats("n.rdb").requests, 0);
    assert!(events.is_empty());
}

#[tokio::test]
async fn denied_and_missing_objects_fail_without_retries() {
    let srv = Server::start().await;
    srv.put_generated("d.rdb", 23, MIB);
    srv.store.add_fault(
        FaultTarget::Key("d.rdb".into()),
        Fault::Deny,
        Repeat::Always,
    );
    let dl = downloader(config(), &srv.clock);
    let (r, _) = fetch_all(&dl, srv.job("d.rdb", MIB, srv.minter("d.rdb", 3600))).await;
    match r.unwrap_err() {
        TransferError::Denied { status, code, .. } => {
            assert_eq!((status, code.as_str()), (403, "AccessDenied"))
        }
        other => panic!("expected Denied, got {other}"),
    }
    assert_eq!(srv.store.stats("d.rdb").requests, 1);
    let (r, _) = fetch_all(&dl, srv.job("none.rdb", MIB, srv.minter("none.rdb", 3600))).await;
    assert!(matches!(
        r.unwrap_err(),
        TransferError::Denied { status: 404, .. }
    ));
}

#[tokio::test]
async fn plain_http_urls_are_refused_unless_allowed() {
    let srv = Server::start().await;
    srv.put_generated("p.rdb", 24, MIB);
    let dl = downloader(
        TransferConfig {
            allow_http: false,
            ..config()
        },
        &srv.clock,
    );
    let (r, _) = fetch_all(&dl, srv.job("p.rdb", MIB, srv.minter("p.rdb", 3600))).await;
    let err = r.unwrap_err();
    assert!(matches!(&err, TransferError::InsecureUrl { scheme, .. } if scheme == "http"));
    assert!(!err.to_string().contains("q-sign"), "{err}");
    assert_eq!(srv.store.stats("p.rdb").requests, 0);
}

#[tokio::test]
async fn transport_errors_never_show_the_signature() {
    let srv = Server::start().await;
    // Nothing listens there any more.
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let url = srv.store.presign(
        &format!("http://{closed}"),
        "t.rdb",
        3600,
        UrlShape::TopLevel,
    );
    let signature = url.split("q-signature=").nth(1).unwrap()[..16].to_string();
    struct Fixed(String);
    impl UrlSource for Fixed {
        fn fresh_url(&self) -> BoxFuture<'_, Result<SignedUrl, UrlSourceError>> {
            Box::pin(async move { Ok(SignedUrl::new(self.0.clone())) })
        }
    }
    let dl = downloader(config(), &srv.clock);
    let (r, events) = fetch_all(&dl, srv.job("t.rdb", MIB, Arc::new(Fixed(url)))).await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, TransferError::RetriesExhausted { .. }),
        "{err}"
    );
    let text = format!("{err} {err:?} {events:?}");
    assert!(!text.contains(&signature), "{text}");
}

#[tokio::test]
async fn eight_files_share_the_connection_limit() {
    let srv = Server::start().await;
    let dl = Arc::new(downloader(
        TransferConfig {
            max_files: 3,
            max_connections: 5,
            ..segmented(4)
        },
        &srv.clock,
    ));
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let key = format!("m{i}.rdb");
        srv.put_generated(&key, 100 + i, 2 * MIB + i);
        let job = srv.job(&key, 2 * MIB + i, srv.minter(&key, 3600));
        let dl = dl.clone();
        tasks.push(tokio::spawn(async move { fetch_all(&dl, job).await.0 }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let f = t.await.unwrap().unwrap();
        assert_fetched(&f, &generated(100 + i as u64, 2 * MIB + i as u64));
        assert_eq!(srv.served(&format!("m{i}.rdb")), 2 * MIB + i as u64);
    }
}

/// A file path under the partial directory is never outside it.
#[tokio::test]
async fn unsafe_file_names_are_refused() {
    let srv = Server::start().await;
    let dl = downloader(config(), &srv.clock);
    for name in ["../x", "a/b", ".hidden", ""] {
        let mut job = srv.job("x", 1, srv.minter("x", 3600));
        job.file_name = name.into();
        let (r, _) = fetch_all(&dl, job).await;
        assert!(
            matches!(r.unwrap_err(), TransferError::BadFileName { .. }),
            "{name}"
        );
    }
    assert!(!Path::new(&srv.dir.path().join("x.part")).exists());
}

#[tokio::test]
async fn expiry_is_judged_by_the_injected_clock() {
    // A URL that by the wall clock expired long ago, but whose expiry by the
    // injected (frozen) clocks is an hour away: no renewal happens.
    let srv = Server::start().await;
    srv.put_generated("c2.rdb", 25, MIB);
    let minter = srv.minter("c2.rdb", 3600);
    let dl = downloader(config(), &srv.clock);
    let (r, events) = fetch_all(&dl, srv.job("c2.rdb", MIB, minter.clone())).await;
    assert_fetched(&r.unwrap(), &generated(25, MIB));
    assert_eq!(minter.calls.load(Ordering::SeqCst), 1);
    assert!(!events
        .iter()
        .any(|e| matches!(e, ProgressEvent::UrlRefreshed { .. })));
    assert!(srv.clock.unix() < chrono::Utc::now().timestamp() - 3600);
}

/// An API that announces an absurd size (here 2^60 bytes) fails that file
/// with "not enough free space", at once and without building a plan the
/// size of the file: the process (and every other backup) carries on.
#[tokio::test]
async fn an_absurd_size_fails_the_file_not_the_process() {
    let srv = Server::start().await;
    srv.put_generated("huge.tar", 26, MIB);
    let size = 1u64 << 60;
    let dl = downloader(
        TransferConfig {
            segments: 4,
            segment_threshold: TransferConfig::default().segment_threshold,
            piece_size: TransferConfig::default().piece_size,
            ..config()
        },
        &srv.clock,
    );
    let (r, events) = fetch_all(&dl, srv.job("huge.tar", size, srv.minter("huge.tar", 3600))).await;
    let err = r.unwrap_err();
    match &err {
        TransferError::NoSpace { needed, .. } => assert_eq!(*needed, size),
        other => panic!("expected NoSpace, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("not enough free space"), "{text}");
    assert!(text.contains(&size.to_string()), "{text}");
    assert_eq!(srv.store.stats("huge.tar").requests, 0);
    assert!(events.is_empty());
    assert!(!srv.part("huge.tar").exists());
    // The same downloader still fetches the next file.
    let (r, _) = fetch_all(&dl, srv.job("huge.tar", MIB, srv.minter("huge.tar", 3600))).await;
    assert_fetched(&r.unwrap(), &generated(26, MIB));
}

/// Hands out the inner source's URLs; on the first call it first makes
/// `path` a directory, so that every later sidecar write fails (as a full
/// disk or a crash at that moment would stop it).
struct BlockSidecarWrites {
    inner: Arc<Minter>,
    path: PathBuf,
}

impl UrlSource for BlockSidecarWrites {
    fn fresh_url(&self) -> BoxFuture<'_, Result<SignedUrl, UrlSourceError>> {
        if let Err(e) = std::fs::create_dir(&self.path) {
            assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        }
        self.inner.fresh_url()
    }
}

/// A pass that starts over (here: the server ignored the resume's range)
/// must take back what the old sidecar vouched for before it zeroes the
/// part file. If the new sidecar then cannot be written, the next run
/// starts from byte 0 instead of resuming over zeros, which, with no COS
/// CRC to catch it (PostgreSQL archives often have none), would be
/// published as the backup.
#[tokio::test]
async fn a_fresh_pass_never_leaves_the_old_sidecar_in_front_of_zeros() {
    let srv = Server::start().await;
    let size = 4 * MIB;
    srv.store
        .put(
            "z.tar",
            ObjectBody::Generated {
                seed: 27,
                len: size,
            },
            ObjectOptions {
                legacy_no_crc: true,
            },
        )
        .unwrap();
    let job = cancelled_at_stall(&srv, ("z.tar", size), 2 * MIB, 1, config()).await;
    assert_eq!(sidecar_written(&srv, "z.tar"), [2 * MIB]);

    // The next run resumes; the server ignores the range, so the file
    // starts over, and from then on the sidecar cannot be written.
    srv.store.add_fault(
        FaultTarget::Key("z.tar".into()),
        Fault::IgnoreRange,
        Repeat::Times(1),
    );
    let obstacle = srv.dir.path().join(".partial/z.tar.part.json.tmp");
    let blocked = FileJob {
        url: Arc::new(BlockSidecarWrites {
            inner: srv.minter("z.tar", 3600),
            path: obstacle.clone(),
        }),
        ..job.clone()
    };
    let dl = downloader(config(), &srv.clock);
    let (r, events) = fetch_all(&dl, blocked).await;
    match r.unwrap_err() {
        TransferError::Io { action, .. } => assert_eq!(action, "write sidecar"),
        other => panic!("expected the sidecar write to fail, got {other}"),
    }
    assert_eq!(restarts(&events), [RestartReason::RangeIgnored]);
    std::fs::remove_dir(&obstacle).unwrap();

    // The run after that must not trust the zeroed bytes.
    let dl = downloader(config(), &srv.clock);
    let (r, events) = fetch_all(&dl, job).await;
    let f = r.unwrap();
    assert_eq!(f.server_crc64, None);
    let on_disk = std::fs::read(&f.path).unwrap();
    assert!(
        on_disk == generated(27, size),
        "the fetched file differs from the object (first {} bytes are zeros)",
        on_disk.iter().take_while(|b| **b == 0).count()
    );
    assert_eq!(started_from(&events), 0);
}

// ---- free space, on a real small file system -------------------------------

/// Whether the file at `path` holds exactly the generated object
/// `seed`/`len`, read a MiB at a time.
fn holds_generated(path: &Path, seed: u64, len: u64) -> bool {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    if f.metadata().unwrap().len() != len {
        return false;
    }
    let (mut got, mut want) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(MIB) as usize;
        f.read_exact(&mut got[..n]).unwrap();
        fill_generated(seed, pos, &mut want[..n]);
        if got[..n] != want[..n] {
            return false;
        }
        pos += n as u64;
    }
    true
}

/// Bytes the sidecar of `job` records as written, over all segments.
fn recorded(job: &FileJob) -> u64 {
    let path = job.partial_dir.join(format!("{}.part.json", job.file_name));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    json["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["written"].as_u64().unwrap() - s["start"].as_u64().unwrap())
        .sum()
}

/// A job of `srv` whose partial directory is on `fs`.
fn job_on(srv: &Server, fs: &SmallFs, key: &str, size: u64) -> FileJob {
    FileJob {
        partial_dir: fs.path().join(".partial"),
        ..srv.job(key, size, srv.minter(key, 3600))
    }
}

use crate::common::tmpfs::SmallFs;

/// The margin the free-space tests keep.
const MARGIN: u64 = 4 * MIB;

/// An 80 MiB download on a 100 MiB file system, interrupted at a quarter,
/// resumes: its part file already holds all its blocks, so only 20 MiB are
/// free, and none more are needed.
#[tokio::test]
async fn a_download_interrupted_on_a_nearly_full_disk_resumes() {
    let srv = Server::start().await;
    let Some(fs) = SmallFs::mount(&srv.dir.path().join("small"), 100) else {
        return;
    };
    let size = 80 * MIB;
    srv.put_generated("big.tar", 40, size);
    let job = job_on(&srv, &fs, "big.tar", size);
    let config = TransferConfig {
        free_space_margin: MARGIN,
        segment_threshold: 64 * MIB,
        piece_size: 32 * MIB,
        ..segmented(4)
    };
    // Four pieces of 20 MiB, halved as they are taken while fewer wait
    // than there are workers: the four streams in flight each stop after
    // 2 MiB.
    cancel_job_at_stall(&srv, job.clone(), 2 * MIB, 4, config.clone()).await;
    assert_eq!(recorded(&job), 8 * MIB);
    assert!(fs.free() <= 20 * MIB, "{} bytes free", fs.free());

    let dl = downloader(config, &srv.clock);
    let (r, events) = fetch_all(&dl, job).await;
    let f = r.unwrap();
    assert!(holds_generated(&f.path, 40, size), "content differs");
    assert_eq!(started_from(&events), 8 * MIB);
    assert_eq!(srv.served("big.tar"), size, "not one byte twice");
}

/// Two 40 MiB downloads in flight at once on a 100 MiB file system: the
/// second starts while the first (preallocated, so already counted in the
/// free figure) is under way, and both complete.
#[tokio::test]
async fn two_files_in_flight_on_a_small_disk_both_complete() {
    let srv = Server::start().await;
    let Some(fs) = SmallFs::mount(&srv.dir.path().join("small"), 100) else {
        return;
    };
    let size = 40 * MIB;
    srv.put_generated("one.tar", 41, size);
    srv.put_generated("two.tar", 42, size);
    srv.store.add_fault(
        FaultTarget::Key("one.tar".into()),
        Fault::StallAfter(8 * MIB),
        Repeat::Times(1),
    );
    let dl = Arc::new(downloader(
        TransferConfig {
            free_space_margin: MARGIN,
            ..config()
        },
        &srv.clock,
    ));
    let (tx, mut rx) = mpsc::channel(4096);
    let first = {
        let (dl, job) = (dl.clone(), job_on(&srv, &fs, "one.tar", size));
        tokio::spawn(async move { dl.fetch(job, tx, CancellationToken::new()).await })
    };
    // The first file is under way (its part file allocated) when the
    // second starts.
    loop {
        match rx.recv().await {
            Some(ProgressEvent::Bytes { .. }) => break,
            Some(_) => {}
            None => panic!("the first download ended early: {:?}", first.await),
        }
    }
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (second, _) = fetch_all(&dl, job_on(&srv, &fs, "two.tar", size)).await;
    srv.store.release_stalls();
    let second = second.unwrap();
    let first = first.await.unwrap().unwrap();
    drain.await.unwrap();
    assert!(holds_generated(&first.path, 41, size), "first differs");
    assert!(holds_generated(&second.path, 42, size), "second differs");
}

/// A file that truly does not fit fails before any request, with a message
/// naming the file system, the bytes needed and the bytes free; the
/// interrupted download beside it loses nothing and completes afterwards.
#[tokio::test]
async fn a_file_that_does_not_fit_fails_clearly_and_costs_nothing_else() {
    let srv = Server::start().await;
    let Some(fs) = SmallFs::mount(&srv.dir.path().join("small"), 100) else {
        return;
    };
    let kept_size = 40 * MIB;
    srv.put_generated("kept.tar", 43, kept_size);
    let kept = job_on(&srv, &fs, "kept.tar", kept_size);
    cancel_job_at_stall(&srv, kept.clone(), 10 * MIB, 1, config()).await;
    let kept_sidecar = kept.partial_dir.join("kept.tar.part.json");
    let sidecar_before = std::fs::read(&kept_sidecar).unwrap();
    assert_eq!(recorded(&kept), 10 * MIB);

    let size = 70 * MIB;
    srv.put_generated("huge.tar", 44, size);
    let free = fs.free();
    let dl = downloader(
        TransferConfig {
            free_space_margin: MARGIN,
            ..config()
        },
        &srv.clock,
    );
    let (r, events) = fetch_all(&dl, job_on(&srv, &fs, "huge.tar", size)).await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, TransferError::NoSpace { needed, available, .. } if needed == size && available == free),
        "{err:?}"
    );
    let text = err.to_string();
    for part in [
        fs.path().join(".partial").display().to_string(),
        size.to_string(),
        free.to_string(),
    ] {
        assert!(text.contains(&part), "{part:?} not in {text:?}");
    }
    assert!(events.is_empty());
    assert_eq!(srv.store.stats("huge.tar").requests, 0);
    assert!(!kept.partial_dir.join("huge.tar.part").exists());
    assert_eq!(fs.free(), free, "the refused file took space");

    // Nothing else was lost: the interrupted file resumes where it was.
    assert_eq!(std::fs::read(&kept_sidecar).unwrap(), sidecar_before);
    let (r, events) = fetch_all(&dl, kept).await;
    let f = r.unwrap();
    assert_eq!(started_from(&events), 10 * MIB);
    assert!(holds_generated(&f.path, 43, kept_size), "content differs");
}

// ---- a server that is not COS -------------------------------------------------

/// A bare HTTP/1.1 server that answers every request with `head` (status
/// line and headers, without the blank line) and then `body`, and closes
/// the connection: with no `Content-Length`, the close ends the body. It
/// records every request's head. Returns its base URL.
async fn raw_server(head: String, body: Vec<u8>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (body, log) = (Arc::new(body), seen.clone());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (head, body, log) = (head.clone(), body.clone(), log.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&request).into_owned());
                let _ = conn.write_all(format!("{head}\r\n\r\n").as_bytes()).await;
                let _ = conn.write_all(&body).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (base, seen)
}

/// A 200 without `Content-Length` whose body runs past the announced size
/// is an error, not a truncated copy: neither this run nor the next one
/// returns the first `size` bytes as the file.
#[tokio::test]
async fn a_body_longer_than_announced_is_refused_not_truncated() {
    let srv = Server::start().await;
    let size = MIB;
    for extra in [1, 300 * 1024] {
        let key = format!("long{extra}.tar");
        let (base, seen) = raw_server(
            "HTTP/1.1 200 OK\r\nConnection: close".into(),
            generated(28, size + extra),
        )
        .await;
        let url = Arc::new(tcbackup_core::transfer::FixedUrl(SignedUrl::new(format!(
            "{base}/{key}"
        ))));
        let dl = downloader(config(), &srv.clock);
        for run in 1..=2 {
            let (r, _) = fetch_all(&dl, srv.job(&key, size, url.clone())).await;
            match r {
                Ok(f) => panic!(
                    "run {run}: a {} byte body was kept as the {size} byte file {}",
                    size + extra,
                    f.path.display()
                ),
                Err(e) => {
                    let text = e.to_string();
                    let want = format!("sent more than the {size} bytes the api announced");
                    assert!(text.contains(&want), "run {run}: {text}");
                }
            }
        }
        assert_eq!(seen.lock().unwrap().len(), 2, "each run asked the server");
    }
}

/// Time spent waiting on the bandwidth limiter is not a stall: with the
/// limiter deep in debt (other downloads used the budget), a stream waits
/// longer than the idle timeout after a chunk, and the server's next bytes
/// come well within the idle timeout after that. On tokio's paused clock.
#[tokio::test(start_paused = true)]
async fn waiting_on_the_bandwidth_limiter_is_not_a_stall() {
    use futures::FutureExt as _;
    let srv = Server::start().await;
    let size = 200 * 1024;
    srv.put_generated("lim.rdb", 29, size);
    srv.store.add_fault(
        FaultTarget::Key("lim.rdb".into()),
        Fault::StallAfter(1000),
        Repeat::Times(1),
    );
    let limiter = Arc::new(tcbackup_core::transfer::BandwidthLimiter::new(
        std::num::NonZeroU64::new(MIB).unwrap(),
    ));
    // Other downloads took 30 s worth of the budget just now.
    assert!(limiter.acquire(30 * MIB).now_or_never().is_none());
    let dl = Arc::new(
        downloader(
            TransferConfig {
                idle_timeout: Duration::from_secs(10),
                ..stop_at_stall(config())
            },
            &srv.clock,
        )
        .with_limiter(limiter),
    );
    let job = srv.job("lim.rdb", size, srv.minter("lim.rdb", 3600));
    let (tx, mut rx) = mpsc::channel(1024);
    let cancel = CancellationToken::new();
    let fetch = {
        let (dl, cancel) = (dl.clone(), cancel.clone());
        tokio::spawn(async move { dl.fetch(job, tx, cancel).await })
    };
    // The first 1000 bytes arrive at once; the limiter holds the stream
    // for about 30 s; the server sends the rest 5 s after that.
    let retry = async {
        while let Some(ev) = rx.recv().await {
            if let ProgressEvent::Retrying { error, .. } = ev {
                return Some(error);
            }
        }
        None
    };
    let retried = tokio::select! {
        biased;
        error = retry => error,
        _ = tokio::time::sleep(Duration::from_secs(35)) => None,
    };
    if let Some(error) = retried {
        cancel.cancel();
        let _ = fetch.await;
        panic!("the wait on the limiter was taken for a stall: {error}");
    }
    srv.store.release_stalls();
    let f = fetch.await.unwrap().unwrap();
    while let Ok(ev) = rx.try_recv() {
        assert!(!matches!(ev, ProgressEvent::Retrying { .. }), "{ev:?}");
    }
    assert_fetched(&f, &generated(29, size));
    assert_eq!(srv.store.stats("lim.rdb").statuses(), [200]);
}

/// A stop abandoned after its grace period ends the process by dropping
/// the runtime with the transfers in it. A trailing hasher (segmented or
/// resumed files) waiting for bytes that will never come must not keep
/// that drop, and so the process, from finishing.
#[tokio::test]
async fn dropping_the_runtime_mid_transfer_is_not_held_by_the_hasher() {
    let srv = Server::start().await;
    let size = 8 * MIB;
    srv.put_generated("ab.tar", 30, size);
    srv.store.add_fault(
        FaultTarget::Key("ab.tar".into()),
        Fault::StallAfter(MIB),
        Repeat::Times(2),
    );
    let job = srv.job("ab.tar", size, srv.minter("ab.tar", 3600));
    let (tx, mut rx) = mpsc::channel(1024);
    let (drop_tx, drop_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let clock = srv.clock.clone();
    let victim = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dl = downloader(segmented(2), &clock);
        rt.spawn(async move {
            let _ = dl.fetch(job, tx, CancellationToken::new()).await;
        });
        drop_rx.recv().unwrap();
        // What the program does after "exiting anyway".
        drop(rt);
        let _ = done_tx.send(());
    });
    while let Some(ev) = rx.recv().await {
        if matches!(ev, ProgressEvent::Bytes { .. }) {
            break;
        }
    }
    drop_tx.send(()).unwrap();
    let dropped =
        tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(20)))
            .await
            .unwrap();
    srv.store.release_stalls();
    assert!(
        dropped.is_ok(),
        "the runtime was still shutting down 20 s after it was dropped"
    );
    victim.join().unwrap();
}

/// A presigned-looking URL on `base` for `key`; the signature is what must
/// never travel further.
fn signed_on(base: &str, key: &str) -> Arc<tcbackup_core::transfer::FixedUrl> {
    Arc::new(tcbackup_core::transfer::FixedUrl(SignedUrl::new(format!(
        "{base}/{key}?q-sign-algorithm=sha1&q-ak={SECRET_ID}&q-header-list=&q-url-param-list=&q-signature=0123456789abcdef0123456789abcdef01234567"
    ))))
}

/// A followed redirect carries no credential: the location gets neither
/// the presigned URL (reqwest sends it as `Referer` by default) nor any
/// authorization header, and the file arrives.
#[tokio::test]
async fn a_followed_redirect_carries_no_credential() {
    let srv = Server::start().await;
    let size = 64 * 1024;
    let (target, seen) = raw_server(
        format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close"),
        generated(31, size),
    )
    .await;
    let (origin, _) = raw_server(
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {target}/elsewhere.tar\r\nContent-Length: 0\r\nConnection: close"
        ),
        Vec::new(),
    )
    .await;
    let dl = downloader(config(), &srv.clock);
    let (r, _) = fetch_all(&dl, srv.job("rd.tar", size, signed_on(&origin, "rd.tar"))).await;
    let f = r.unwrap();
    assert!(holds_generated(&f.path, 31, size));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let head = seen[0].to_ascii_lowercase();
    for leak in [
        "q-signature",
        SECRET_ID,
        "referer",
        "authorization",
        "cookie",
    ] {
        assert!(
            !head.contains(&leak.to_ascii_lowercase()),
            "{leak} sent to the redirect target:\n{head}"
        );
    }
}

/// A redirect that is not followed (a scheme other than https/allowed
/// http, or an endless loop) fails the file with a message saying so.
#[tokio::test]
async fn a_refused_redirect_fails_the_file_clearly() {
    let srv = Server::start().await;
    let (looping, seen) = raw_server(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: /again.tar\r\nContent-Length: 0\r\nConnection: close".into(),
        Vec::new(),
    )
    .await;
    let (to_file, _) = raw_server(
        "HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\nConnection: close"
            .into(),
        Vec::new(),
    )
    .await;
    let dl = downloader(config(), &srv.clock);
    for (base, status) in [(looping, 307), (to_file, 302)] {
        let (r, _) = fetch_all(&dl, srv.job("no.tar", MIB, signed_on(&base, "no.tar"))).await;
        let text = r.unwrap_err().to_string();
        assert!(
            text.contains(&format!("not following the server's redirect ({status})")),
            "{text}"
        );
        assert!(!text.contains("0123456789abcdef"), "{text}");
    }
    // The original request and five redirects, then it stopped.
    assert_eq!(seen.lock().unwrap().len(), 6);
}
