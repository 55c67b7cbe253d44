//! One pass over a file: open (and for a fresh plan, truncate) the part
//! file, start the ledger's writer, hasher and syncer, run one stream or
//! the segmented streams, and collect the digests. What a `fetch` shares
//! between its passes is the [`FileCtx`]; what a pass shares between its
//! streams is the [`PassCtx`].

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::downloader::{blocking, permit};
use super::events::{FileRef, ProgressEvent};
use super::fetch::{Stream, StreamEnd};
use super::ledger;
use super::ledger::{Ledger, ObjectId};
use super::limiter::BandwidthLimiter;
use super::plan::{open_part, Plan};
use super::pool::BufferPool;
use super::retry::Backoff;
use super::segmented;
use super::sidecar::{self, PartialPaths};
use super::space::{self, Reservation};
use super::url::UrlLease;
use super::{TransferConfig, TransferError};
use crate::verify::Digests;

/// What one `fetch` call shares between its passes and streams.
pub(crate) struct FileCtx {
    pub(super) file: Arc<FileRef>,
    pub(super) size: u64,
    pub(super) paths: PartialPaths,
    pub(super) lease: UrlLease,
    pub(super) client: reqwest::Client,
    pub(super) config: Arc<TransferConfig>,
    pub(super) backoff: Arc<Backoff>,
    pub(super) limiter: Option<Arc<BandwidthLimiter>>,
    pub(super) connections: Arc<Semaphore>,
    /// The receive buffers (the memory budget).
    pub(super) buffers: Arc<BufferPool>,
    pub(super) reservation: Reservation,
    pub(super) progress: mpsc::Sender<ProgressEvent>,
    pub(super) cancel: CancellationToken,
}

impl FileCtx {
    pub(super) fn size_mismatch(&self, actual: u64) -> TransferError {
        TransferError::SizeMismatch {
            file: (*self.file).clone(),
            expected: self.size,
            actual,
        }
    }

    /// A worker task (stream, writer, hasher, syncer) that died: `why` is
    /// its join error or what was seen of it.
    pub(super) fn join_error(&self, why: impl std::fmt::Display) -> TransferError {
        TransferError::Io {
            path: self.paths.part.clone(),
            action: "run worker task",
            source: std::io::Error::other(why.to_string()),
        }
    }

    pub(super) fn io(
        &self,
        path: &Path,
        action: &'static str,
        source: std::io::Error,
    ) -> TransferError {
        TransferError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

/// What one pass over a file shares between its streams.
pub(crate) struct PassCtx {
    pub(super) file: Arc<FileCtx>,
    pub(super) part: Arc<std::fs::File>,
    pub(super) ledger: Arc<Ledger>,
    pub(super) cancel: CancellationToken,
    /// Set once the object's identity is known, so segments may start.
    pub(super) object_ready: watch::Sender<bool>,
    pub(super) segmented: bool,
    /// Throttling answers (503, 429, SlowDown) seen by the streams, for
    /// the adaptive connection count.
    pub(super) throttled: AtomicU64,
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
pub(super) async fn run_pass(
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
        throttled: AtomicU64::new(0),
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
