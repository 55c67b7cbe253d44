//! One stream: the request loop for one byte range of a file (the whole file
//! in single-stream mode, one segment in segmented mode).
//!
//! Each request is checked strictly before a byte of its body is kept: a
//! ranged request must get 206 with a `Content-Range` that starts where we
//! asked and names the announced size; ETag and COS CRC must match what the
//! earlier responses (or the sidecar) said. The body is copied into pool
//! buffers of `buffer_size` bytes (see [`super::pool`]), and the chunk is
//! let go at once so the HTTP client reuses its read buffer. Full buffers
//! are queued, a few deep, to the stream's writer, a blocking worker that
//! hashes them (for a fresh single stream) and writes each with one
//! `pwrite`: receiving overlaps hashing and writing, and memory stays
//! within the budget.

use std::os::unix::fs::FileExt as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT_ENCODING, CONTENT_RANGE, ETAG, IF_MATCH, RANGE, RETRY_AFTER};
use reqwest::Response;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error::{describe, Attempt, TransferError};
use super::events::{Emitter, ProgressEvent, RestartReason};
use super::ledger::ObjectId;
use super::pass::PassCtx;
use super::pool::PoolBuf;
use super::range::{check_partial, parse_content_range, range_header, ContentRange, RangeMismatch};
use super::url::LeaseError;
use crate::verify::crc64;
use crate::verify::FileDigest;

/// The COS header with the whole object's CRC-64/XZ.
pub(crate) const CRC64_HEADER: &str = "x-cos-hash-crc64ecma";
/// Error bodies are read up to this size (COS sends a few hundred bytes).
const MAX_ERROR_BODY: usize = 16 * 1024;

/// How a stream ended, when it did not complete its range.
#[derive(Debug)]
pub(crate) enum StreamEnd {
    /// Start the file over (with this whole-object response, if any).
    Restart(RestartReason, Option<Box<Response>>),
    /// The file fails.
    Fatal(TransferError),
    /// Cancelled.
    Cancelled,
}

/// Batches queued for a stream's writer beyond the one it is writing.
const WRITER_QUEUE: usize = 2;

/// Received bytes for `start..end` in a pool buffer (back to the pool once
/// written).
struct Batch {
    start: u64,
    end: u64,
    buf: PoolBuf,
}

/// The writer of one stream: a blocking worker fed through a bounded queue.
/// It hashes each batch (when the stream hashes inline), `pwrite`s it and
/// records the progress, then gives the buffer back to the pool; it returns
/// the digest when the queue closes.
struct Writer {
    queue: mpsc::Sender<Batch>,
    worker: JoinHandle<Result<Option<FileDigest>, TransferError>>,
}

impl Writer {
    fn spawn(pass: &PassCtx, seg: usize, mut digest: Option<FileDigest>) -> Self {
        let (queue, mut batches) = mpsc::channel::<Batch>(WRITER_QUEUE);
        let (part, ledger, file) = (pass.part.clone(), pass.ledger.clone(), pass.file.clone());
        let worker = tokio::task::spawn_blocking(move || {
            while let Some(batch) = batches.blocking_recv() {
                // Hash first: the write then copies from a warm cache.
                if let Some(d) = digest.as_mut() {
                    d.update(batch.buf.filled());
                }
                part.write_all_at(batch.buf.filled(), batch.start)
                    .map_err(|e| ledger.io_error(false, "write", e))?;
                if ledger.advance(seg, batch.end) {
                    ledger
                        .save()
                        .map_err(|e| ledger.io_error(true, "write sidecar", e))?;
                }
                file.reservation.consume(batch.end - batch.start);
            }
            Ok(digest)
        });
        Self { queue, worker }
    }
}

/// One stream over `pos..end` of segment `seg`.
pub(crate) struct Stream {
    pass: Arc<PassCtx>,
    seg: usize,
    pos: u64,
    end: u64,
    segmented: bool,
    /// An empty file still needs one request to prove the URL and object.
    needs_request: bool,
    emitter: Emitter,
    /// The pool buffer being filled, and where its bytes start.
    batch: Option<PoolBuf>,
    batch_start: u64,
    writer: Option<Writer>,
    /// The digest of a stream hashed inline, while no writer holds it.
    digest: Option<FileDigest>,
    attempts: u32,
    expired_streak: u32,
}

impl Stream {
    /// A stream for segment `seg` of the pass, starting at its written
    /// offset. With `inline_hash` the bytes are hashed as they are written
    /// (only valid when the stream covers the file from byte 0).
    pub(crate) fn new(pass: Arc<PassCtx>, seg: usize, inline_hash: bool) -> Self {
        let s = pass.ledger.segments()[seg];
        let segmented = pass.segmented;
        let emitter = Emitter::new(pass.file.progress.clone(), pass.file.file.clone());
        Self {
            seg,
            pos: s.written,
            end: s.end,
            segmented,
            needs_request: s.end == 0,
            emitter,
            batch: None,
            batch_start: s.written,
            writer: None,
            digest: inline_hash.then(|| {
                FileDigest::for_file(&pass.file.file.file_name, pass.ledger.expected_size())
            }),
            attempts: 0,
            expired_streak: 0,
            pass,
        }
    }

    /// Fetch the range to its end. `first` is a response already obtained
    /// for byte 0 without a `Range` (a whole-object answer carried over from
    /// a restart). Returns the inline digest when one was kept.
    pub(crate) async fn run(
        mut self,
        first: Option<Box<Response>>,
    ) -> Result<Option<FileDigest>, StreamEnd> {
        let result = self.run_inner(first).await;
        self.emitter.flush_bytes();
        let drained = self.drain().await;
        match (result, drained) {
            (Ok(()), Ok(digest)) => Ok(digest),
            (Ok(()), Err(e)) => Err(StreamEnd::Fatal(e)),
            (Err(StreamEnd::Cancelled), Err(e)) => Err(StreamEnd::Fatal(e)),
            (Err(end), _) => Err(end),
        }
    }

    async fn run_inner(&mut self, mut first: Option<Box<Response>>) -> Result<(), StreamEnd> {
        let file = self.pass.file.clone();
        let policy = file.backoff.policy().clone();
        loop {
            if self.pos >= self.end && !self.needs_request {
                return Ok(());
            }
            let started_at = self.pos;
            let outcome = match first.take() {
                Some(resp) => self.handle(*resp, None, false).await,
                None => self.attempt().await,
            };
            if self.pos > started_at {
                self.attempts = 0;
                self.expired_streak = 0;
            }
            match outcome {
                Ok(()) => {}
                Err(Attempt::Retry { error, retry_after }) => {
                    self.attempts += 1;
                    if self.attempts >= policy.max_attempts {
                        return Err(StreamEnd::Fatal(TransferError::RetriesExhausted {
                            file: (*file.file).clone(),
                            attempts: self.attempts,
                            last: error,
                        }));
                    }
                    tracing::warn!(file = %file.file, attempt = self.attempts, %error, "retrying");
                    // Report what arrived before saying why it stopped.
                    self.emitter.flush_bytes();
                    self.emitter.notify(ProgressEvent::Retrying {
                        file: file.file.clone(),
                        attempt: self.attempts,
                        error,
                    });
                    let delay = file.backoff.delay(self.attempts, retry_after);
                    tokio::select! {
                        biased;
                        _ = self.pass.cancel.cancelled() => return Err(StreamEnd::Cancelled),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(Attempt::Expired) => {
                    self.expired_streak += 1;
                    if self.expired_streak > file.config.max_url_refreshes {
                        return Err(StreamEnd::Fatal(TransferError::UrlExpired {
                            file: (*file.file).clone(),
                            refreshes: self.expired_streak,
                        }));
                    }
                    tracing::info!(file = %file.file, "download url expired, renewing");
                }
                Err(Attempt::Restart(reason, resp)) => {
                    return Err(StreamEnd::Restart(reason, resp))
                }
                Err(Attempt::Fatal(e)) => return Err(StreamEnd::Fatal(e)),
                Err(Attempt::Cancelled) => return Err(StreamEnd::Cancelled),
            }
        }
    }

    /// One request from the current offset.
    async fn attempt(&mut self) -> Result<(), Attempt> {
        let file = self.pass.file.clone();
        let leased = tokio::select! {
            biased;
            _ = self.pass.cancel.cancelled() => return Err(Attempt::Cancelled),
            leased = file.lease.get() => leased,
        };
        let leased = match leased {
            Ok(l) => l,
            Err(LeaseError::Insecure(scheme)) => {
                return Err(Attempt::Fatal(TransferError::InsecureUrl {
                    file: (*file.file).clone(),
                    scheme,
                }))
            }
            Err(LeaseError::Source(e)) if e.retryable => {
                return Err(Attempt::retry(format!("cannot obtain a download url: {e}")))
            }
            Err(LeaseError::Source(source)) => {
                return Err(Attempt::Fatal(TransferError::UrlSource {
                    file: (*file.file).clone(),
                    source,
                }))
            }
        };
        if leased.refreshed {
            self.emitter.notify(ProgressEvent::UrlRefreshed {
                file: file.file.clone(),
            });
        }
        let ranged = self.segmented || self.pos > 0;
        let mut req = file
            .client
            .get(leased.url.expose())
            .header(ACCEPT_ENCODING, "identity");
        if ranged {
            let end = self.segmented.then_some(self.end);
            req = req.header(RANGE, range_header(self.pos, end));
            if let Some(etag) = self.pass.ledger.object().etag {
                req = req.header(IF_MATCH, etag);
            }
        }
        let idle = file.config.idle_timeout;
        let resp = tokio::select! {
            biased;
            _ = self.pass.cancel.cancelled() => return Err(Attempt::Cancelled),
            r = tokio::time::timeout(idle, req.send()) => r,
        };
        let resp = match resp {
            Err(_) => return Err(Attempt::retry(format!("no response within {idle:?}"))),
            Ok(Err(e)) => return Err(Attempt::retry(describe(&e))),
            Ok(Ok(resp)) => resp,
        };
        self.handle(resp, Some(leased.generation), ranged).await
    }

    /// Decide what a response means, and stream its body when it is good.
    async fn handle(
        &mut self,
        resp: Response,
        generation: Option<u64>,
        ranged: bool,
    ) -> Result<(), Attempt> {
        let file = self.pass.file.clone();
        let size = file.size;
        let status = resp.status().as_u16();
        match status {
            200 => {
                if ranged {
                    return Err(Attempt::Restart(
                        RestartReason::RangeIgnored,
                        Some(Box::new(resp)),
                    ));
                }
                if let Some(actual) = resp.content_length().filter(|l| *l != size) {
                    return Err(Attempt::Fatal(file.size_mismatch(actual)));
                }
                self.check_identity(&resp)?;
                self.needs_request = false;
                self.consume(resp, self.end).await
            }
            206 => {
                let content_range = header(&resp, CONTENT_RANGE.as_str());
                let body_end = match check_partial(
                    self.pos,
                    self.end,
                    size,
                    content_range.as_deref(),
                    resp.content_length(),
                ) {
                    Ok(end) => end,
                    // The object itself differs: fatal for the file.
                    Err(RangeMismatch::Total { actual, .. }) => {
                        return Err(Attempt::Fatal(file.size_mismatch(actual.unwrap_or(0))));
                    }
                    Err(m) => return Err(Attempt::retry(format!("rejected 206: {m}"))),
                };
                self.check_identity(&resp)?;
                self.needs_request = false;
                self.consume(resp, body_end).await
            }
            412 => Err(Attempt::Restart(RestartReason::ObjectReplaced, None)),
            416 => {
                if self.pos >= size {
                    return Ok(());
                }
                let total = header(&resp, CONTENT_RANGE.as_str())
                    .and_then(|v| parse_content_range(&v).ok());
                match total {
                    Some(ContentRange::Unsatisfied { complete }) if complete != size => {
                        Err(Attempt::Fatal(file.size_mismatch(complete)))
                    }
                    _ => Err(Attempt::Restart(RestartReason::RangeNotSatisfiable, None)),
                }
            }
            400 | 401 | 403 | 404 => {
                let (code, message) = self.error_body(resp).await;
                let expired = (status == 403
                    && code == "AccessDenied"
                    && message.to_ascii_lowercase().contains("expired"))
                    || code == "ExpiredToken";
                if expired {
                    if let Some(g) = generation {
                        file.lease.invalidate(g).await;
                    }
                    return Err(Attempt::Expired);
                }
                let fatal = if status == 400 {
                    TransferError::Status {
                        file: (*file.file).clone(),
                        status,
                        code,
                    }
                } else {
                    TransferError::Denied {
                        file: (*file.file).clone(),
                        status,
                        code,
                        message,
                    }
                };
                Err(Attempt::Fatal(fatal))
            }
            408 | 429 | 500..=599 => {
                let retry_after = header(&resp, RETRY_AFTER.as_str())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let (code, _) = self.error_body(resp).await;
                if status == 503 || status == 429 || code == "SlowDown" {
                    // Fewer connections, says the adaptive count.
                    self.pass.throttled.fetch_add(1, Ordering::Relaxed);
                }
                Err(Attempt::Retry {
                    error: format!("server answered {status} {code}"),
                    retry_after,
                })
            }
            // The client's redirect policy stopped short of following it.
            300..=399 => Err(Attempt::Fatal(TransferError::RefusedRedirect {
                file: (*file.file).clone(),
                status,
            })),
            _ => {
                let (code, _) = self.error_body(resp).await;
                Err(Attempt::Fatal(TransferError::Status {
                    file: (*file.file).clone(),
                    status,
                    code,
                }))
            }
        }
    }

    /// Compare the response's ETag and CRC with what is known; learn them
    /// when unknown and let waiting segments go.
    fn check_identity(&self, resp: &Response) -> Result<(), Attempt> {
        let etag = header(resp, ETAG.as_str());
        let crc = header(resp, CRC64_HEADER).and_then(|v| crc64::parse_header(&v));
        let known = self.pass.ledger.object();
        if differs(&known.etag, &etag) || differs(&known.crc64, &crc) {
            return Err(Attempt::Restart(RestartReason::ObjectReplaced, None));
        }
        if (known.etag.is_none() && etag.is_some()) || (known.crc64.is_none() && crc.is_some()) {
            self.pass.ledger.learn_object(ObjectId {
                etag: known.etag.or(etag),
                crc64: known.crc64.or(crc),
            });
        }
        self.pass.object_ready.send_replace(true);
        Ok(())
    }

    /// Stream the body into the file up to `body_end`.
    async fn consume(&mut self, mut resp: Response, body_end: u64) -> Result<(), Attempt> {
        let pass = self.pass.clone();
        let idle = pass.file.config.idle_timeout;
        let limiter = pass.file.limiter.clone();
        let cancelled = pass.cancel.cancelled();
        tokio::pin!(cancelled);
        let stall = tokio::time::sleep(idle);
        tokio::pin!(stall);
        let mut last_data = Instant::now();
        loop {
            let chunk = tokio::select! {
                biased;
                _ = &mut cancelled => {
                    self.flush().await?;
                    return Err(Attempt::Cancelled);
                }
                chunk = resp.chunk() => chunk,
                _ = &mut stall => {
                    let deadline = last_data + idle;
                    if Instant::now() >= deadline {
                        self.flush().await?;
                        return Err(Attempt::retry(format!(
                            "no data for {idle:?} at byte {}", self.pos
                        )));
                    }
                    stall.as_mut().reset(deadline);
                    continue;
                }
            };
            match chunk {
                Ok(Some(bytes)) => {
                    if bytes.len() as u64 > body_end - self.pos {
                        // More than announced (possible only without a
                        // Content-Length): nothing of this chunk is kept.
                        self.flush().await?;
                        let received = self.pos + bytes.len() as u64;
                        if body_end == pass.file.size {
                            return Err(Attempt::Fatal(TransferError::Oversized {
                                file: (*pass.file.file).clone(),
                                expected: body_end,
                                received,
                            }));
                        }
                        return Err(Attempt::retry(format!(
                            "server sent more than the {body_end} bytes announced"
                        )));
                    }
                    let mut data = &bytes[..];
                    let n = data.len() as u64;
                    while !data.is_empty() {
                        let mut buf = match self.batch.take() {
                            Some(buf) => buf,
                            None => {
                                // The memory budget: wait (not reading this
                                // socket) until a writer hands a buffer back.
                                let buf = tokio::select! {
                                    biased;
                                    _ = &mut cancelled => return Err(Attempt::Cancelled),
                                    b = pass.file.buffers.take() => {
                                        b.map_err(|_| Attempt::Cancelled)?
                                    }
                                };
                                self.batch_start = self.pos;
                                buf
                            }
                        };
                        let taken = buf.fill(data);
                        data = &data[taken..];
                        self.pos += taken as u64;
                        let full = buf.is_full();
                        self.batch = Some(buf);
                        if full {
                            self.flush().await?;
                        }
                    }
                    // Waiting on our own writers is not a stall...
                    last_data = Instant::now();
                    if let Some(limiter) = &limiter {
                        tokio::select! {
                            biased;
                            _ = &mut cancelled => {
                                self.flush().await?;
                                return Err(Attempt::Cancelled);
                            }
                            _ = limiter.acquire(n) => {}
                        }
                        // ...nor is waiting on the bandwidth limiter, which
                        // other streams may have driven deep into debt.
                        last_data = Instant::now();
                    }
                    self.emitter.bytes(n);
                }
                Ok(None) => {
                    self.flush().await?;
                    if self.pos == body_end {
                        return Ok(());
                    }
                    return Err(Attempt::retry(format!(
                        "connection closed at byte {} of {body_end}",
                        self.pos
                    )));
                }
                Err(e) => {
                    self.flush().await?;
                    return Err(Attempt::retry(format!(
                        "body cut at byte {}: {}",
                        self.pos,
                        describe(&e)
                    )));
                }
            }
        }
    }

    /// Queue the filled buffer for the writer (started on first use);
    /// waits only when the writer is `WRITER_QUEUE` batches behind.
    async fn flush(&mut self) -> Result<(), Attempt> {
        let Some(buf) = self.batch.take() else {
            return Ok(());
        };
        if buf.is_empty() {
            return Ok(());
        }
        let batch = Batch {
            start: self.batch_start,
            end: self.pos,
            buf,
        };
        if self.writer.is_none() {
            self.writer = Some(Writer::spawn(&self.pass, self.seg, self.digest.take()));
        }
        let sent = match &self.writer {
            Some(w) => w.queue.send(batch).await.is_ok(),
            None => false,
        };
        if !sent {
            // The worker stopped early: it failed; report why.
            return Err(Attempt::Fatal(match self.finish_writer().await {
                Err(e) => e,
                Ok(()) => self.pass.file.join_error("writer stopped"),
            }));
        }
        Ok(())
    }

    /// Close the writer's queue and wait until everything queued is written.
    async fn finish_writer(&mut self) -> Result<(), TransferError> {
        if let Some(Writer { queue, worker }) = self.writer.take() {
            drop(queue);
            let digest = worker.await.map_err(|e| self.pass.file.join_error(e))??;
            if digest.is_some() {
                self.digest = digest;
            }
        }
        Ok(())
    }

    /// Write what is left; returns the inline digest.
    async fn drain(&mut self) -> Result<Option<FileDigest>, TransferError> {
        let flushed = match self.flush().await {
            Ok(()) => Ok(()),
            Err(Attempt::Fatal(e)) => Err(e),
            Err(_) => Ok(()),
        };
        let written = self.finish_writer().await;
        flushed?;
        written?;
        Ok(self.digest.take())
    }

    /// Read a COS XML error body (bounded) and pick `Code` and `Message`.
    async fn error_body(&self, mut resp: Response) -> (String, String) {
        let idle = self.pass.file.config.idle_timeout;
        let mut body = Vec::new();
        let read = async {
            while let Ok(Some(chunk)) = resp.chunk().await {
                let room = MAX_ERROR_BODY.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if room <= chunk.len() {
                    break;
                }
            }
        };
        // A slow or endless error body is not worth waiting for.
        let _ = tokio::time::timeout(idle, read).await;
        let text = String::from_utf8_lossy(&body);
        (xml_field(&text, "Code"), xml_field(&text, "Message"))
    }
}

/// Whether both values are known and disagree.
fn differs<T: PartialEq>(known: &Option<T>, seen: &Option<T>) -> bool {
    matches!((known, seen), (Some(a), Some(b)) if a != b)
}

/// A header value as text.
fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The text of the first `<name>…</name>` element, unescaped for the five
/// XML entities, at most 200 characters (it ends up in an error message).
fn xml_field(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let Some(start) = xml.find(&open).map(|i| i + open.len()) else {
        return String::new();
    };
    let Some(len) = xml[start..].find(&close) else {
        return String::new();
    };
    let raw = xml[start..start + len]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    tcbackup_signing::secret::redact_url(raw.trim())
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_fields_of_a_cos_error() {
        let body = "<?xml version='1.0' encoding='utf-8' ?>\n<Error>\n\t<Code>AccessDenied</Code>\n\t<Message>Request has expired</Message>\n\t<Resource>h/k</Resource>\n</Error>";
        assert_eq!(xml_field(body, "Code"), "AccessDenied");
        assert_eq!(xml_field(body, "Message"), "Request has expired");
        assert_eq!(xml_field(body, "Missing"), "");
        assert_eq!(xml_field("<Code>a&amp;b", "Code"), "");
        assert_eq!(xml_field("<Message>x &lt; y</Message>", "Message"), "x < y");
        assert_eq!(
            xml_field(
                "<Message>see http://h/k?q-signature=abc</Message>",
                "Message"
            ),
            "see http://h/k?q-signature=REDACTED"
        );
    }
}
