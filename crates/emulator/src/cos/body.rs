//! The streamed response body of the fake COS server: reads a byte range of
//! an object version in bounded chunks (never the whole object in memory)
//! and applies the body faults (cut, stall, rate cap, replacement).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::faults::BodyPlan;
use super::generate::fill_generated;
use super::stats::{LiveRecord, OpenBody};
use super::{CosStore, ObjectBody, ObjectOptions, Version};

/// Chunk size when the response is not rate-capped.
const CHUNK: usize = 256 * 1024;
/// How long a cut response stays open after its last byte, so it gets flushed.
const CUT_LINGER: Duration = Duration::from_millis(50);
/// Smallest chunk of a rate-capped response.
const MIN_THROTTLED_CHUNK: u64 = 16 * 1024;

enum Source {
    Bytes(Bytes),
    File(Option<tokio::fs::File>, std::path::PathBuf),
    Generated(u64),
}

/// The state of one response body.
pub(crate) struct BodyStream {
    source: Source,
    pos: u64,
    end: u64,
    sent: u64,
    chunk: usize,
    buf: BytesMut,
    plan: BodyPlan,
    started: Instant,
    store: Arc<CosStore>,
    key: String,
    opts: ObjectOptions,
    record: Arc<LiveRecord>,
    /// Counts this body as streaming in the key's statistics while it lives.
    _open: OpenBody,
    stall_release: watch::Receiver<u64>,
    done: bool,
}

impl BodyStream {
    /// A body for bytes `start..end` (exclusive) of `version`.
    pub(crate) fn new(
        version: &Version,
        start: u64,
        end: u64,
        plan: BodyPlan,
        store: Arc<CosStore>,
        key: String,
        record: Arc<LiveRecord>,
    ) -> Self {
        let source = match &version.body {
            ObjectBody::Bytes(b) => Source::Bytes(b.clone()),
            ObjectBody::File(p) => Source::File(None, p.clone()),
            ObjectBody::Generated { seed, .. } => Source::Generated(*seed),
        };
        let chunk = match plan.rate {
            // About eight chunks a second keeps a capped stream smooth.
            Some(rate) => (rate / 8).clamp(MIN_THROTTLED_CHUNK, CHUNK as u64) as usize,
            None => CHUNK,
        };
        let stall_release = store.stall_release.subscribe();
        Self {
            source,
            pos: start,
            end,
            sent: 0,
            chunk,
            buf: BytesMut::new(),
            plan,
            started: Instant::now(),
            store,
            key,
            opts: version.opts.clone(),
            _open: record.open_body(),
            record,
            stall_release,
            done: false,
        }
    }

    /// Turn into a stream for `axum::body::Body::from_stream`.
    pub(crate) fn into_stream(self) -> impl futures::Stream<Item = io::Result<Bytes>> + Send {
        futures::stream::unfold(self, |mut body| async move {
            let item = body.next_chunk().await?;
            Some((item, body))
        })
    }

    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        if self.done || self.pos >= self.end {
            return None;
        }
        if let Some((after, _)) = &self.plan.replace {
            if self.sent >= *after {
                if let Some((_, body)) = self.plan.replace.take() {
                    if let Err(err) = self.store.put(&self.key, body, self.opts.clone()) {
                        tracing::warn!(key = %self.key, error = %err, "emulated replacement failed");
                    }
                }
            }
        }
        if self.plan.cut_after.is_some_and(|n| self.sent >= n) {
            self.done = true;
            // hyper drops its write buffer when a body fails; staying pending a
            // moment lets it flush what was already produced, so the client
            // really receives the bytes before the cut.
            tokio::time::sleep(CUT_LINGER).await;
            return Some(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "emulated connection cut",
            )));
        }
        if self.plan.stall_after.is_some_and(|n| self.sent >= n) {
            self.plan.stall_after = None;
            self.store.note_stall_reached();
            // Wait for a release; a closed channel (store gone) never happens
            // while we hold the store, so treat it as a release too.
            let _ = self.stall_release.changed().await;
        }
        let mut want = (self.end - self.pos).min(self.chunk as u64);
        for limit in [
            self.plan.cut_after,
            self.plan.stall_after,
            self.plan.replace.as_ref().map(|(n, _)| *n),
        ]
        .into_iter()
        .flatten()
        {
            if limit > self.sent {
                want = want.min(limit - self.sent);
            }
        }
        if let Some(rate) = self.plan.rate.filter(|r| *r > 0) {
            let due = self.started + Duration::from_secs_f64(self.sent as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
        let chunk = match self.read(want as usize).await {
            Ok(chunk) => chunk,
            Err(err) => {
                self.done = true;
                return Some(Err(err));
            }
        };
        let n = chunk.len() as u64;
        self.pos += n;
        self.sent += n;
        self.record.add_bytes(n);
        Some(Ok(chunk))
    }

    async fn read(&mut self, want: usize) -> io::Result<Bytes> {
        match &mut self.source {
            Source::Bytes(b) => {
                // `pos..pos+want` lies inside the object: `end` was clamped to its length.
                let start = usize::try_from(self.pos).map_err(io::Error::other)?;
                Ok(b.slice(start..start + want))
            }
            Source::Generated(seed) => {
                // Reuses the allocation once the previous chunk has been written and dropped.
                self.buf.clear();
                self.buf.resize(want, 0);
                fill_generated(*seed, self.pos, &mut self.buf);
                Ok(self.buf.split().freeze())
            }
            Source::File(file, path) => {
                let file = match file {
                    Some(f) => f,
                    None => {
                        let mut f = tokio::fs::File::open(&*path).await?;
                        f.seek(io::SeekFrom::Start(self.pos)).await?;
                        file.insert(f)
                    }
                };
                self.buf.clear();
                self.buf.reserve(want);
                while self.buf.len() < want {
                    let n = (&mut *file)
                        .take((want - self.buf.len()) as u64)
                        .read_buf(&mut self.buf)
                        .await?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("object file {} is shorter than stored", path.display()),
                        ));
                    }
                }
                Ok(self.buf.split().freeze())
            }
        }
    }
}
