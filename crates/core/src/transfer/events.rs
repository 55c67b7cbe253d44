//! Progress events from the transfer to whoever shows progress. The channel
//! is bounded and the transfer never waits on it for byte counts: counts
//! that do not fit are carried into the next event, so a slow consumer sees
//! fewer, larger updates and memory stays flat.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{error::TrySendError, Sender};
use tokio::time::Instant;

/// Which file an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileRef {
    /// The backup the file belongs to.
    pub backup_id: String,
    /// The file name.
    pub file_name: String,
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.backup_id, self.file_name)
    }
}

/// Why a file started over from byte 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// `If-Match` failed (412) or the ETag/CRC changed: the object was replaced.
    ObjectReplaced,
    /// The server answered a ranged request with the whole object (200).
    RangeIgnored,
    /// The server said the range is not satisfiable (416) before the end.
    RangeNotSatisfiable,
    /// Bytes kept from an earlier run did not add up to the announced CRC.
    ChecksumAfterResume,
}

impl fmt::Display for RestartReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartReason::ObjectReplaced => "object was replaced on the server",
            RestartReason::RangeIgnored => "server ignored the range request",
            RestartReason::RangeNotSatisfiable => "server refused the range as unsatisfiable",
            RestartReason::ChecksumAfterResume => "resumed bytes did not match the crc64",
        })
    }
}

/// One progress event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// The file starts (or resumes).
    Started {
        /// The file.
        file: Arc<FileRef>,
        /// Its size.
        total: u64,
        /// Bytes already present from an earlier run.
        resumed_from: u64,
    },
    /// More bytes arrived.
    Bytes {
        /// The file.
        file: Arc<FileRef>,
        /// How many (since the previous `Bytes` event for this stream).
        n: u64,
    },
    /// The file starts over from byte 0; the consumer should reset its count.
    Restarted {
        /// The file.
        file: Arc<FileRef>,
        /// Why.
        reason: RestartReason,
    },
    /// A fresh URL was obtained (the old one was about to expire or had).
    UrlRefreshed {
        /// The file.
        file: Arc<FileRef>,
    },
    /// A request failed and will be retried.
    Retrying {
        /// The file.
        file: Arc<FileRef>,
        /// The retry number.
        attempt: u32,
        /// What went wrong (no URL or signature in it).
        error: String,
    },
    /// Every byte is on disk and fsynced.
    Finished {
        /// The file.
        file: Arc<FileRef>,
    },
}

/// Bytes are reported at most this often per stream...
const BYTES_INTERVAL: Duration = Duration::from_millis(100);
/// ...unless this many accumulated first.
const BYTES_THRESHOLD: u64 = 4 * 1024 * 1024;

/// The sending side used by one stream: coalesces byte counts and never
/// blocks on a full channel except for `Started` and `Finished`.
#[derive(Debug, Clone)]
pub struct Emitter {
    tx: Sender<ProgressEvent>,
    file: Arc<FileRef>,
    pending: u64,
    /// When bytes were last sent; `None` until the first send, so the first
    /// bytes of a stream show at once.
    last: Option<Instant>,
}

impl Emitter {
    /// An emitter for `file` on `tx`.
    pub fn new(tx: Sender<ProgressEvent>, file: Arc<FileRef>) -> Self {
        Self {
            tx,
            file,
            pending: 0,
            last: None,
        }
    }

    /// The file this emitter reports on.
    pub fn file(&self) -> &Arc<FileRef> {
        &self.file
    }

    /// Count `n` received bytes; sends when enough accumulated or enough
    /// time passed and the channel has room.
    pub fn bytes(&mut self, n: u64) {
        self.pending += n;
        let due = self.last.is_none_or(|t| t.elapsed() >= BYTES_INTERVAL);
        if self.pending >= BYTES_THRESHOLD || due {
            self.flush_bytes();
        }
    }

    /// Try to send the pending count now.
    pub fn flush_bytes(&mut self) {
        if self.pending == 0 {
            return;
        }
        let ev = ProgressEvent::Bytes {
            file: self.file.clone(),
            n: self.pending,
        };
        match self.tx.try_send(ev) {
            Ok(()) | Err(TrySendError::Closed(_)) => {
                self.pending = 0;
                self.last = Some(Instant::now());
            }
            Err(TrySendError::Full(_)) => {}
        }
    }

    /// Send a rare event if there is room; dropped (and logged) otherwise.
    pub fn notify(&self, ev: ProgressEvent) {
        if let Err(TrySendError::Full(ev)) = self.tx.try_send(ev) {
            tracing::debug!(?ev, "progress channel full, event dropped");
        }
    }

    /// Send an event, waiting for room (used for `Started` and `Finished`
    /// only, so a consumer always sees both ends of a file).
    pub async fn send(&self, ev: ProgressEvent) {
        // A closed channel means nobody watches; that is fine.
        let _ = self.tx.send(ev).await;
    }

    /// Flush pending bytes (waiting for room) and send `Finished`.
    pub async fn finish(&mut self) {
        if self.pending > 0 {
            let n = std::mem::take(&mut self.pending);
            self.send(ProgressEvent::Bytes {
                file: self.file.clone(),
                n,
            })
            .await;
        }
        self.send(ProgressEvent::Finished {
            file: self.file.clone(),
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<FileRef> {
        Arc::new(FileRef {
            backup_id: "b".into(),
            file_name: "f".into(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn byte_counts_survive_a_full_channel() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let mut em = Emitter::new(tx, file());
        // Fill the channel with two sends, then keep counting.
        let mut total = 0;
        for _ in 0..10 {
            em.bytes(BYTES_THRESHOLD);
            total += BYTES_THRESHOLD;
        }
        // finish() waits for room, so it runs beside the consumer.
        let finisher = tokio::spawn(async move { em.finish().await });
        let mut seen = 0;
        let mut finished = false;
        while let Some(ev) = rx.recv().await {
            match ev {
                ProgressEvent::Bytes { n, .. } => seen += n,
                ProgressEvent::Finished { .. } => finished = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        finisher.await.unwrap();
        assert!(finished);
        assert_eq!(seen, total);
    }

    #[tokio::test(start_paused = true)]
    async fn small_counts_are_coalesced_by_time() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let mut em = Emitter::new(tx, file());
        em.bytes(7);
        // The first bytes of a stream show at once.
        assert_eq!(
            rx.try_recv().unwrap(),
            ProgressEvent::Bytes { file: file(), n: 7 }
        );
        for _ in 0..1000 {
            em.bytes(10);
        }
        assert!(rx.try_recv().is_err(), "nothing sent before the interval");
        tokio::time::advance(BYTES_INTERVAL).await;
        em.bytes(10);
        assert_eq!(
            rx.try_recv().unwrap(),
            ProgressEvent::Bytes {
                file: file(),
                n: 10_010
            }
        );
    }

    #[test]
    fn file_ref_display() {
        assert_eq!(file().to_string(), "b/f");
    }
}
