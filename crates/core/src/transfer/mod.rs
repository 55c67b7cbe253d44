//! The transfer engine: moves the bytes of one remote file into
//! `<partial_dir>/<file_name>.part`, resumably and verifiably, and knows
//! nothing about Redis or PostgreSQL.
//!
//! A [`Downloader`] holds one HTTP client, the limits (files in flight,
//! connections in flight, an optional process-wide [`BandwidthLimiter`]) and
//! the clock. [`Downloader::fetch`] takes a [`FileJob`] whose URLs come from
//! a [`UrlSource`] (asked again before a URL expires and after COS says it
//! has) and returns a [`FetchedFile`]: complete, fsynced, with its SHA-256
//! and CRC-64/XZ. Publishing the file is the store's job.
//!
//! How a file is fetched:
//! - **Plan**: a valid sidecar for the same backup, name and size means
//!   resume from its trusted offsets (see [`sidecar`]); anything else means
//!   start over. The part file is allocated at full size up front. Files of
//!   at least `segment_threshold` bytes are cut into pieces that `segments`
//!   connections take in file order; smaller ones are one stream.
//! - **Free space** is checked before the first byte: the bytes not yet
//!   allocated to the part file (none for a part file an earlier run
//!   preallocated) against the free figure less what other files in
//!   flight have yet to allocate (see [`space`]).
//! - **Each response is checked** before its body is kept (strict 206 and
//!   `Content-Range`, ETag/CRC identity, `If-Match` on every ranged request
//!   once the ETag is known). A 200 to a ranged request, a 412 or a 416
//!   start the file over (the 200's body is used as the new start). A body
//!   that runs past the announced size fails the file, never truncated
//!   into a "complete" one. Redirects are followed only to https (or
//!   allowed http) and carry no credential (see [`Downloader::new`]).
//! - **Failures** (transport errors, cut bodies, 5xx, stalls) are retried
//!   from the current offset with jittered backoff; an expired URL is
//!   renewed and the transfer continues from the same offset.
//! - **Durability**: the sidecar records written offsets every
//!   `checkpoint_bytes` (what a killed process fetches again at most) and
//!   fsynced offsets after each background fsync (`sync_bytes` or
//!   `sync_interval`; what survives a power loss). A pass that starts
//!   over removes the sidecar (and fsyncs the directory) before it
//!   truncates the part file, so no sidecar ever vouches for zeroed bytes.
//! - **Memory**: received bytes wait in a process-wide pool of
//!   `buffer_size` buffers (`buffer_budget` in all); a stream that finds it
//!   empty stops reading until a writer gives a buffer back.
//! - **Hashing**: a fresh single stream hashes each buffer just before it
//!   is written; resumed and segmented files are hashed by a reader that
//!   trails the writers through the page cache, so almost nothing is left
//!   to hash when the last byte lands.
//! - **A bad resume heals itself**: when bytes kept from an earlier run do
//!   not add up to the CRC COS announced, the file is fetched once more
//!   from byte 0.

mod error;
pub mod events;
mod fetch;
mod ledger;
pub mod limiter;
mod pool;
pub mod range;
pub mod retry;
mod segmented;
pub mod sidecar;
pub mod space;
mod url;

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use error::{TransferError, UrlSourceError};
pub use events::{FileRef, ProgressEvent, RestartReason};
pub use limiter::BandwidthLimiter;
pub use retry::RetryPolicy;
pub use sidecar::PartialPaths;

use crate::private_files::FileModes;
use crate::verify::Digests;
use events::Emitter;
use fetch::{Stream, StreamEnd};
use ledger::{Ledger, ObjectId};
use pool::BufferPool;
use retry::Backoff;
use sidecar::SegmentState;
use space::{Reservation, SpaceLedger};
use tcbackup_signing::clock::Clock;
use tcbackup_signing::secret::SignedUrl;
use url::UrlLease;

/// Where a file's download URLs come from. The sync cycle implements it by
/// asking the cloud API again; it is called for the first URL, before the
/// current one expires, and after COS reports it expired.
pub trait UrlSource: Send + Sync {
    /// A freshly signed URL for the file.
    fn fresh_url(&self) -> BoxFuture<'_, Result<SignedUrl, UrlSourceError>>;
}

/// A URL source that always hands out the same URL (benchmarks, one-off
/// downloads of a URL that outlives the transfer).
#[derive(Debug, Clone)]
pub struct FixedUrl(pub SignedUrl);

impl UrlSource for FixedUrl {
    fn fresh_url(&self) -> BoxFuture<'_, Result<SignedUrl, UrlSourceError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// One file to fetch.
#[derive(Clone)]
pub struct FileJob {
    /// The backup the file belongs to (recorded in the sidecar).
    pub backup_id: String,
    /// The file name as the API gave it; must be a plain name.
    pub file_name: String,
    /// The size the API announced; the object must have exactly this size.
    pub expected_size: u64,
    /// The private directory for `<file_name>.part` and its sidecar.
    pub partial_dir: PathBuf,
    /// Where URLs come from.
    pub url: Arc<dyn UrlSource>,
}

impl std::fmt::Debug for FileJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileJob")
            .field("backup_id", &self.backup_id)
            .field("file_name", &self.file_name)
            .field("expected_size", &self.expected_size)
            .field("partial_dir", &self.partial_dir)
            .finish_non_exhaustive()
    }
}

/// Tuning of the transfer engine. `Default` gives the production values.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Connections for one large file.
    pub segments: usize,
    /// Files of at least this many bytes are fetched over `segments`
    /// connections.
    pub segment_threshold: u64,
    /// A large file is cut into pieces of about this size (at least
    /// `segments` of them), fetched in file order by the connections.
    pub piece_size: u64,
    /// Files in flight at once.
    pub max_files: usize,
    /// HTTP connections in flight at once, over all files.
    pub max_connections: usize,
    /// Free space that must remain after a file is complete.
    pub free_space_margin: u64,
    /// A stream that receives nothing for this long is retried.
    pub idle_timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Retries and backoff.
    pub retry: RetryPolicy,
    /// Renew a URL this long before it expires (at most half its lifetime).
    pub expiry_margin: Duration,
    /// Accept `http://` download URLs (emulators only).
    pub allow_http: bool,
    /// Process-wide bandwidth cap in bytes per second.
    pub bandwidth_limit: Option<NonZeroU64>,
    /// Record written offsets in the sidecar every this many bytes: what a
    /// killed process fetches again at most, per stream.
    pub checkpoint_bytes: u64,
    /// fsync (in the background) every this many bytes...
    pub sync_bytes: u64,
    /// ...or this often while bytes arrive. Only fsynced bytes are trusted
    /// after a power loss or kernel crash.
    pub sync_interval: Duration,
    /// Bytes per receive buffer (one `pwrite` each).
    pub buffer_size: usize,
    /// Memory for received bytes not yet written, over all streams of the
    /// process, in `buffer_size` buffers. A stream that finds it spent stops
    /// reading (TCP pushes back) until a writer gives a buffer back.
    pub buffer_budget: usize,
    /// Restarts from byte 0 (object replaced, range ignored) before giving up.
    pub max_restarts: u32,
    /// Consecutive "URL expired" answers (fresh URLs each time) before giving up.
    pub max_url_refreshes: u32,
    /// The modes of the partial directory, part files and sidecars (a part
    /// file keeps its mode when the store publishes it).
    pub modes: FileModes,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            segments: 4,
            segment_threshold: 64 * 1024 * 1024,
            piece_size: 32 * 1024 * 1024,
            max_files: 4,
            max_connections: 16,
            free_space_margin: 256 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            expiry_margin: Duration::from_secs(600),
            allow_http: false,
            bandwidth_limit: None,
            checkpoint_bytes: 8 * 1024 * 1024,
            sync_bytes: 128 * 1024 * 1024,
            sync_interval: Duration::from_secs(1),
            buffer_size: 512 * 1024,
            buffer_budget: 16 * 1024 * 1024,
            max_restarts: 3,
            max_url_refreshes: 3,
            modes: FileModes::PRIVATE,
        }
    }
}

/// A completely downloaded, fsynced partial file, ready for verification
/// and publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFile {
    /// `<partial_dir>/<file_name>.part`.
    pub path: PathBuf,
    /// Its sidecar; remove it (see [`FetchedFile::remove_sidecar`]) once the
    /// file is published.
    pub sidecar: PathBuf,
    /// Size in bytes (equal to the announced size).
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// CRC-64/XZ of the content, computed locally.
    pub crc64: u64,
    /// CRC-64/XZ COS announced (`x-cos-hash-crc64ecma`), if it did.
    pub server_crc64: Option<u64>,
    /// The object's ETag.
    pub etag: Option<String>,
    /// Bytes that were already present from an earlier run.
    pub resumed_from: u64,
    /// Times the file started over from byte 0.
    pub restarts: u32,
}

impl FetchedFile {
    /// The digests, for [`crate::verify::verify_with_digests`].
    pub fn digests(&self) -> Digests {
        Digests {
            size: self.size,
            sha256: self.sha256,
            crc64: self.crc64,
        }
    }

    /// Delete the sidecar (after the part file was published or discarded).
    pub fn remove_sidecar(&self) -> std::io::Result<()> {
        sidecar::remove_if_exists(&self.sidecar)
    }
}

/// Delete a partial file and its sidecar (after a verification failure, so
/// the next run starts over). Blocking.
pub fn discard_partial(partial_dir: &Path, file_name: &str) -> std::io::Result<()> {
    let paths = PartialPaths::new(partial_dir, file_name);
    sidecar::remove(&paths)?;
    sidecar::remove_if_exists(&paths.part)
}

/// The transfer engine. One per process: its limits are process-wide.
pub struct Downloader {
    client: reqwest::Client,
    config: Arc<TransferConfig>,
    files: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    buffers: Arc<BufferPool>,
    limiter: Option<Arc<BandwidthLimiter>>,
    clock: Arc<dyn Clock>,
    backoff: Arc<Backoff>,
    space: Arc<SpaceLedger>,
}

impl std::fmt::Debug for Downloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloader")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one `fetch` call shares between its passes and streams.
pub(crate) struct FileCtx {
    file: Arc<FileRef>,
    size: u64,
    paths: PartialPaths,
    lease: UrlLease,
    client: reqwest::Client,
    config: Arc<TransferConfig>,
    backoff: Arc<Backoff>,
    limiter: Option<Arc<BandwidthLimiter>>,
    connections: Arc<Semaphore>,
    /// The receive buffers (the memory budget).
    buffers: Arc<BufferPool>,
    reservation: Reservation,
    progress: mpsc::Sender<ProgressEvent>,
    cancel: CancellationToken,
}

impl FileCtx {
    fn size_mismatch(&self, actual: u64) -> TransferError {
        TransferError::SizeMismatch {
            file: (*self.file).clone(),
            expected: self.size,
            actual,
        }
    }

    /// A worker task (stream, writer, hasher, syncer) that died: `why` is
    /// its join error or what was seen of it.
    fn join_error(&self, why: impl std::fmt::Display) -> TransferError {
        TransferError::Io {
            path: self.paths.part.clone(),
            action: "run worker task",
            source: std::io::Error::other(why.to_string()),
        }
    }

    fn io(&self, path: &Path, action: &'static str, source: std::io::Error) -> TransferError {
        TransferError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

/// What one pass over a file shares between its streams.
pub(crate) struct PassCtx {
    file: Arc<FileCtx>,
    part: Arc<std::fs::File>,
    ledger: Arc<Ledger>,
    cancel: CancellationToken,
    /// Set once the object's identity is known, so segments may start.
    object_ready: watch::Sender<bool>,
    segmented: bool,
}

/// The most pieces a segmented file is cut into. Larger files get larger
/// pieces: the sidecar (one entry per piece, stored every
/// `checkpoint_bytes`) stays under about 100 KB, and a planned size can
/// never make the plan itself exhaust memory.
const MAX_PIECES: u64 = 1024;

/// Redirects followed in a row for one request.
pub const MAX_REDIRECTS: usize = 5;

/// How a pass starts.
#[derive(Debug, Clone)]
struct Plan {
    segments: Vec<SegmentState>,
    object: ObjectId,
    /// Truncate (and preallocate) the part file first.
    fresh: bool,
    /// Bytes come from an earlier run.
    from_disk: bool,
}

impl Plan {
    /// Start over: one segment, or pieces for a segmented download. The
    /// number of pieces is bounded by [`MAX_PIECES`] whatever the announced
    /// size (pieces grow instead), so the plan and its sidecar stay small
    /// even for an absurd size, which the free-space check then refuses.
    fn fresh(size: u64, segmented: bool, config: &TransferConfig) -> Self {
        let pieces = if segmented {
            let by_size = size.div_ceil(config.piece_size.max(1)).min(MAX_PIECES);
            usize::try_from(by_size)
                .unwrap_or(usize::MAX)
                .max(config.segments)
                .min(MAX_PIECES as usize)
        } else {
            1
        };
        Self {
            segments: sidecar::split(size, pieces),
            object: ObjectId::default(),
            fresh: true,
            from_disk: false,
        }
    }

    fn present(&self) -> u64 {
        sidecar::Sidecar::present(&self.segments)
    }
}

impl Downloader {
    /// A downloader with `config`, reading time from `clock` (for URL expiry).
    ///
    /// Redirects are followed at most [`MAX_REDIRECTS`] times, only to
    /// `https://` locations (`http://` too when `allow_http`), and carry no
    /// credential: the requests hold no `Authorization` or cookie, and no
    /// `Referer` (it would repeat the presigned URL). A redirect that is
    /// not followed fails the file with [`TransferError::RefusedRedirect`].
    pub fn new(config: TransferConfig, clock: Arc<dyn Clock>) -> Result<Self, TransferError> {
        let allow_http = config.allow_http;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            let scheme_ok = match attempt.url().scheme() {
                "https" => true,
                "http" => allow_http,
                _ => false,
            };
            if attempt.previous().len() > MAX_REDIRECTS || !scheme_ok {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http1_only()
            .redirect(redirects)
            // A Referer would hand the presigned URL, a bearer credential
            // for the object, to wherever a redirect points.
            .referer(false)
            .pool_max_idle_per_host(config.max_connections.max(1))
            .user_agent(concat!("tcbackup/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransferError::Client(error::describe(&e)))?;
        let limiter = config
            .bandwidth_limit
            .map(|rate| Arc::new(BandwidthLimiter::new(rate)));
        Ok(Self {
            client,
            files: Arc::new(Semaphore::new(config.max_files.max(1))),
            connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
            buffers: BufferPool::new(config.buffer_budget, config.buffer_size),
            limiter,
            clock,
            backoff: Arc::new(Backoff::new(config.retry.clone())),
            space: SpaceLedger::new(),
            config: Arc::new(config),
        })
    }

    /// Use `limiter` (shared with other downloaders) instead of the one
    /// built from `bandwidth_limit`.
    pub fn with_limiter(mut self, limiter: Arc<BandwidthLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// The bandwidth limiter in use, if any.
    pub fn limiter(&self) -> Option<&Arc<BandwidthLimiter>> {
        self.limiter.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &TransferConfig {
        &self.config
    }

    /// Fetch one file into its partial area, resuming what an earlier run
    /// left. On cancellation the state is saved and `Cancelled` returned.
    pub async fn fetch(
        &self,
        job: FileJob,
        progress: mpsc::Sender<ProgressEvent>,
        cancel: CancellationToken,
    ) -> Result<FetchedFile, TransferError> {
        let file = Arc::new(FileRef {
            backup_id: job.backup_id.clone(),
            file_name: job.file_name.clone(),
        });
        if crate::model::check_file_name(&job.file_name).is_err() {
            return Err(TransferError::BadFileName {
                file: (*file).clone(),
            });
        }
        let cancelled = || TransferError::Cancelled {
            file: (*file).clone(),
        };
        let Some(_file_permit) = permit(&self.files, &cancel).await else {
            return Err(cancelled());
        };
        let size = job.expected_size;
        let paths =
            PartialPaths::new(&job.partial_dir, &job.file_name).with_modes(self.config.modes);

        let (mut plan, allocated) = {
            let (paths, job2, config) = (paths.clone(), job.clone(), self.config.clone());
            blocking(move || {
                let plan = plan_file(&paths, &job2, &config)?;
                Ok((plan, space::allocated(&paths.part)?))
            })
            .await
            .map_err(|e| TransferError::Io {
                path: job.partial_dir.clone(),
                action: "prepare partial file",
                source: e,
            })?
        };
        let resumed_from = plan.present();
        // A part file preallocated by an earlier run already counts in the
        // free figure: only what is not yet allocated is needed.
        let reservation = self
            .reserve_space(&job.partial_dir, size.saturating_sub(allocated))
            .await?;
        if resumed_from > 0 {
            tracing::info!(file = %file, resumed_from, size, "resuming download");
        }

        let mut emitter = Emitter::new(progress.clone(), file.clone());
        // A consumer that stopped reading must not keep a cancelled fetch.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(cancelled()),
            _ = emitter.send(ProgressEvent::Started {
                file: file.clone(),
                total: size,
                resumed_from,
            }) => {}
        }
        let ctx = Arc::new(FileCtx {
            file: file.clone(),
            size,
            lease: UrlLease::new(
                job.url.clone(),
                self.clock.clone(),
                self.config.expiry_margin,
                self.config.allow_http,
            ),
            paths: paths.clone(),
            client: self.client.clone(),
            config: self.config.clone(),
            backoff: self.backoff.clone(),
            limiter: self.limiter.clone(),
            connections: self.connections.clone(),
            buffers: self.buffers.clone(),
            reservation,
            progress,
            cancel,
        });

        let mut restarts = 0u32;
        let mut carried = None;
        let mut healed = false;
        let mut ranges_ignored = false;
        let (digests, object) = loop {
            let reason = match run_pass(&ctx, &plan, carried.take()).await {
                Ok((digests, object)) => {
                    let crc_bad = object.crc64.is_some_and(|c| c != digests.crc64);
                    if !(crc_bad && plan.from_disk && !healed) {
                        break (digests, object);
                    }
                    healed = true;
                    RestartReason::ChecksumAfterResume
                }
                Err(StreamEnd::Restart(reason, resp)) => {
                    carried = resp;
                    reason
                }
                Err(StreamEnd::Fatal(e)) => {
                    if matches!(e, TransferError::Oversized { .. }) {
                        // The bytes kept are a prefix of a larger object,
                        // and the sidecar may call them complete: the next
                        // run must start over, not publish them.
                        let paths = paths.clone();
                        if let Err(why) = blocking(move || sidecar::discard(&paths)).await {
                            tracing::error!(file = %file, error = %why, "cannot remove the sidecar of an oversized download");
                        }
                    }
                    return Err(e);
                }
                Err(StreamEnd::Cancelled) => return Err(cancelled()),
            };
            restarts += 1;
            if restarts > self.config.max_restarts {
                return Err(TransferError::TooManyRestarts {
                    file: (*file).clone(),
                    restarts,
                });
            }
            tracing::warn!(file = %file, %reason, "starting the file over");
            emitter.notify(ProgressEvent::Restarted {
                file: file.clone(),
                reason,
            });
            ranges_ignored |= reason == RestartReason::RangeIgnored;
            let segmented = carried.is_none() && !ranges_ignored && segmentable(size, &self.config);
            plan = Plan::fresh(size, segmented, &self.config);
        };
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => {}
            _ = emitter.finish() => {}
        }
        Ok(FetchedFile {
            path: paths.part,
            sidecar: paths.sidecar,
            size: digests.size,
            sha256: digests.sha256,
            crc64: digests.crc64,
            server_crc64: object.crc64,
            etag: object.etag,
            resumed_from,
            restarts,
        })
    }

    /// Check free space in `dir` for `needed` more bytes and reserve them.
    async fn reserve_space(&self, dir: &Path, needed: u64) -> Result<Reservation, TransferError> {
        let path = dir.to_path_buf();
        let available = {
            let path = path.clone();
            blocking(move || space::available(&path)).await
        }
        .map_err(|e| TransferError::Io {
            path: path.clone(),
            action: "read free space",
            source: e,
        })?;
        let margin = self.config.free_space_margin;
        self.space
            .reserve(needed, available, margin)
            .map_err(|s| TransferError::NoSpace {
                path,
                needed: s.needed,
                available: s.available,
                reserved: s.reserved,
                margin,
            })
    }
}

/// A permit of `sem`, or `None` when `cancel` fires first (or `sem` closed).
async fn permit(sem: &Arc<Semaphore>, cancel: &CancellationToken) -> Option<OwnedSemaphorePermit> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        p = sem.clone().acquire_owned() => p.ok(),
    }
}

/// Run blocking `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// Whether a file of `size` bytes is fetched over several connections
/// (when the server honours ranges).
fn segmentable(size: u64, config: &TransferConfig) -> bool {
    size >= config.segment_threshold && config.segments > 1
}

/// Decide how to start: resume from a matching sidecar or start over.
fn plan_file(
    paths: &PartialPaths,
    job: &FileJob,
    config: &TransferConfig,
) -> std::io::Result<Plan> {
    paths.modes.create_dir_all(&job.partial_dir)?;
    let size = job.expected_size;
    let segmented = segmentable(size, config);
    let Some(state) = sidecar::load(&paths.sidecar)? else {
        return Ok(Plan::fresh(size, segmented, config));
    };
    if let Err(why) = state.check(&job.backup_id, &job.file_name, size) {
        tracing::info!(path = %paths.sidecar.display(), %why, "not resuming");
        return Ok(Plan::fresh(size, segmented, config));
    }
    let part_len = match std::fs::metadata(&paths.part) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Plan::fresh(size, segmented, config))
        }
        Err(e) => return Err(e),
    };
    let mut segments = state.trusted_segments(sidecar::boot_id());
    if let [only] = segments.as_mut_slice() {
        // A single stream's file length bounds what can be there.
        only.written = only.written.min(part_len);
        only.synced = only.synced.min(only.written);
    } else if part_len != size {
        return Ok(Plan::fresh(size, segmented, config));
    }
    let present = sidecar::Sidecar::present(&segments);
    Ok(Plan {
        segments,
        object: ObjectId {
            etag: state.etag,
            crc64: state.server_crc64,
        },
        fresh: false,
        from_disk: present > 0,
    })
}

/// Open the part file for a pass (with `modes`, never through a symbolic
/// link): truncate a fresh one, and give it its full size with the blocks
/// allocated up front. For a fresh plan the
/// caller has discarded the sidecar already.
fn open_part(
    part: &Path,
    modes: FileModes,
    plan: &Plan,
    size: u64,
) -> std::io::Result<std::fs::File> {
    let f = modes.open(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
        part,
    )?;
    if plan.fresh {
        f.set_len(0)?;
    }
    // Allocating now means no ENOSPC half-way, no fragmentation, and much
    // cheaper writes than delayed allocation page by page. Bytes past the
    // trusted offsets of a resumed file are simply overwritten. Where
    // fallocate is unsupported a sparse file does.
    if size > 0 {
        match fs4::fs_std::FileExt::allocate(&f, size) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return Err(e),
            Err(_) => f.set_len(size)?,
        }
    }
    Ok(f)
}

/// Wakes a pass's trailing hasher for good when dropped. The hasher is a
/// blocking thread waiting for bytes; a pass dropped without reaching its
/// own `abort` (a stop abandoned after its grace period drops every task)
/// would leave it waiting forever, and a runtime does not finish shutting
/// down, nor the process exit, while a blocking thread runs.
struct ReleaseHasher(Arc<Ledger>);

impl Drop for ReleaseHasher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One pass over the file: prepare it, run the streams with the syncer and
/// (unless hashing inline) the trailing hasher, then make it durable.
async fn run_pass(
    ctx: &Arc<FileCtx>,
    plan: &Plan,
    carried: Option<Box<reqwest::Response>>,
) -> Result<(Digests, ObjectId), StreamEnd> {
    let size = ctx.size;
    if plan.fresh {
        // The sidecar of an earlier pass or run vouches for bytes that
        // truncating the part file is about to zero: it goes first.
        let paths = ctx.paths.clone();
        blocking(move || sidecar::discard(&paths))
            .await
            .map_err(|e| StreamEnd::Fatal(ctx.io(&ctx.paths.sidecar, "remove sidecar", e)))?;
    }
    let (part, allocated) = {
        let (path, modes, plan) = (ctx.paths.part.clone(), ctx.paths.modes, plan.clone());
        blocking(move || {
            let part = open_part(&path, modes, &plan, size)?;
            let allocated = space::allocated_blocks(&part.metadata()?);
            Ok((Arc::new(part), allocated))
        })
        .await
        .map_err(|e| StreamEnd::Fatal(ctx.io(&ctx.paths.part, "open", e)))?
    };
    // The preallocated blocks now count in the file system's free figure.
    ctx.reservation.limit(size.saturating_sub(allocated));
    let ledger = Ledger::new(
        ctx.paths.clone(),
        ctx.file.backup_id.clone(),
        ctx.file.file_name.clone(),
        size,
        plan.segments.clone(),
        plan.object.clone(),
        &ctx.config,
    );
    {
        let ledger = ledger.clone();
        blocking(move || ledger.save())
            .await
            .map_err(|e| StreamEnd::Fatal(ctx.io(&ctx.paths.sidecar, "write sidecar", e)))?;
    }
    let known = plan.object.etag.is_some() || plan.object.crc64.is_some();
    let segmented = plan.segments.len() > 1;
    let pass = Arc::new(PassCtx {
        file: ctx.clone(),
        part: part.clone(),
        ledger: ledger.clone(),
        cancel: ctx.cancel.child_token(),
        object_ready: watch::Sender::new(known),
        segmented,
    });

    let inline = !segmented && plan.segments.first().is_some_and(|s| s.written == s.start);
    let hasher = (!inline).then(|| {
        let (ledger, part) = (ledger.clone(), part.clone());
        tokio::task::spawn_blocking(move || ledger::trailing_hash(&ledger, &part))
    });
    // However the pass ends, even dropped half-way, the hasher is let go.
    let _release_hasher = ReleaseHasher(ledger.clone());
    let syncer_stop = CancellationToken::new();
    let syncer = tokio::spawn(ledger::run_syncer(
        ledger.clone(),
        part.clone(),
        ctx.config.sync_interval,
        syncer_stop.clone(),
    ));

    let result = if segmented {
        segmented::run(pass.clone(), ctx.config.segments)
            .await
            .map(|()| None)
    } else {
        match permit(&ctx.connections, &pass.cancel).await {
            Some(_permit) => Stream::new(pass.clone(), 0, inline).run(carried).await,
            None => Err(StreamEnd::Cancelled),
        }
    };

    syncer_stop.cancel();
    let synced = match syncer.await {
        Ok(r) => r.map_err(|e| ctx.io(&ctx.paths.part, "fsync", e)),
        Err(e) => Err(ctx.join_error(e)),
    };
    // Make what was written durable and resumable, unless it is about to
    // be thrown away.
    let keep = !matches!(result, Err(StreamEnd::Restart(..)));
    let finished = if keep {
        let (ledger, part) = (ledger.clone(), part.clone());
        blocking(move || ledger.sync_all(&part))
            .await
            .map_err(|e| ctx.io(&ctx.paths.part, "fsync", e))
    } else {
        Ok(())
    };
    let inline_digest = match result {
        Ok(d) => d,
        Err(end) => {
            ledger.abort();
            if let Some(h) = hasher {
                let _ = h.await;
            }
            return Err(end);
        }
    };
    synced.map_err(StreamEnd::Fatal)?;
    finished.map_err(StreamEnd::Fatal)?;
    let digests = match (inline_digest, hasher) {
        (Some(d), _) => d.finish(),
        (None, Some(h)) => match h.await {
            Ok(Ok(Some(d))) => d,
            Ok(Ok(None)) => {
                return Err(StreamEnd::Fatal(ctx.io(
                    &ctx.paths.part,
                    "hash",
                    std::io::Error::other("hashing stopped before the end"),
                )))
            }
            Ok(Err(e)) => return Err(StreamEnd::Fatal(ctx.io(&ctx.paths.part, "read back", e))),
            Err(e) => return Err(StreamEnd::Fatal(ctx.join_error(e))),
        },
        (None, None) => {
            return Err(StreamEnd::Fatal(ctx.io(
                &ctx.paths.part,
                "hash",
                std::io::Error::other("no digest was kept"),
            )))
        }
    };
    if digests.size != size {
        return Err(StreamEnd::Fatal(ctx.size_mismatch(digests.size)));
    }
    Ok((digests, ledger.object()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers every request with `head` and an empty body;
    /// it counts requests. Returns its base URL.
    async fn answering(head: String) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let reply = format!("{head}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        (base, count)
    }

    /// The download client follows a redirect to `http://` only when plain
    /// HTTP downloads are allowed (the origin here is http only because a
    /// test cannot present a certificate the client trusts; the policy
    /// looks at the location alone).
    #[tokio::test]
    async fn redirects_to_http_are_followed_only_when_http_is_allowed() {
        let (target, reached) = answering("HTTP/1.1 200 OK".into()).await;
        let (origin, _) = answering(format!("HTTP/1.1 302 Found\r\nLocation: {target}/x")).await;
        let clock: Arc<dyn Clock> = Arc::new(tcbackup_signing::clock::ManualClock::new());
        for allow_http in [false, true] {
            let config = TransferConfig {
                allow_http,
                ..TransferConfig::default()
            };
            let dl = Downloader::new(config, clock.clone()).unwrap();
            let resp = dl.client.get(format!("{origin}/x")).send().await.unwrap();
            let want = if allow_http { 200 } else { 302 };
            assert_eq!(resp.status().as_u16(), want, "allow_http = {allow_http}");
        }
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn a_segmented_plan_stays_small_whatever_the_size() {
        let config = TransferConfig::default();
        for size in [1u64 << 60, u64::MAX, 150 << 30] {
            let plan = Plan::fresh(size, true, &config);
            assert!(plan.segments.len() as u64 <= MAX_PIECES, "{size}");
            assert!(sidecar::segments_tile(&plan.segments, size), "{size}");
        }
        // Below the cap, pieces keep their configured size.
        let plan = Plan::fresh(10 * config.piece_size, true, &config);
        assert_eq!(plan.segments.len(), 10);
        let plan = Plan::fresh(config.piece_size, true, &config);
        assert_eq!(plan.segments.len(), config.segments);
    }
}
