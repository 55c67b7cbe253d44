//! The [`Downloader`]: one HTTP client and the process-wide limits (files
//! and connections in flight, bandwidth, free space), and
//! [`Downloader::fetch`], which takes one file from its plan through its
//! passes to a complete, fsynced part file.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::error::{self, TransferError};
use super::events::{Emitter, FileRef, ProgressEvent, RestartReason};
use super::fetch::StreamEnd;
use super::limiter::BandwidthLimiter;
use super::pass::{run_pass, FileCtx};
use super::plan::{plan_file, segmentable, Plan};
use super::pool::BufferPool;
use super::retry::Backoff;
use super::sidecar::{self, PartialPaths};
use super::space::{self, Reservation, SpaceLedger};
use super::url::UrlLease;
use super::{FetchedFile, FileJob, TransferConfig};
use tcbackup_signing::clock::Clock;

/// Redirects followed in a row for one request.
pub const MAX_REDIRECTS: usize = 5;

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
            content: digests.content,
            rdb: digests.rdb,
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
pub(super) async fn permit(
    sem: &Arc<Semaphore>,
    cancel: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        p = sem.clone().acquire_owned() => p.ok(),
    }
}

/// Run blocking `f` on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
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
}
