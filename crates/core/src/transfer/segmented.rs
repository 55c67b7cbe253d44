//! Segmented mode: the preallocated file is cut into pieces (segments in
//! the sidecar) that `segments` connections fetch in parallel, each worker
//! taking the next unfinished piece in file order when it is done with one,
//! and writing at the piece's own offsets.
//!
//! Pieces are handed out in order, so the finished prefix of the file grows
//! at the speed of all connections together and the hasher that trails it
//! has little left when the last byte lands (with one long range per
//! connection, everything after the first range would wait for the end).
//! A faster connection simply takes more pieces.
//!
//! The first unfinished piece goes first: its response tells the ETag and
//! CRC (a presigned URL signs the method, so there is no HEAD). The other
//! workers wait for that and then send `If-Match`, so every byte comes from
//! the same object version. When one stream ends the pass (restart, failure,
//! cancel), the others are stopped at once and their bytes are kept.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;

use super::fetch::{Stream, StreamEnd};
use super::pass::PassCtx;

/// Fetch every unfinished piece of the pass with `connections` workers.
pub(crate) async fn run(pass: Arc<PassCtx>, connections: usize) -> Result<(), StreamEnd> {
    let mut unfinished: VecDeque<usize> = pass
        .ledger
        .segments()
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_complete())
        .map(|(i, _)| i)
        .collect();
    let Some(probe) = unfinished.pop_front() else {
        return Ok(());
    };
    let workers = connections.clamp(1, unfinished.len() + 1);
    let queue = Arc::new(Mutex::new(unfinished));
    let mut streams = JoinSet::new();
    for worker in 0..workers {
        let (pass, queue) = (pass.clone(), queue.clone());
        let first = (worker == 0).then_some(probe);
        streams.spawn(async move { work(pass, queue, first).await });
    }
    let mut outcome: Result<(), StreamEnd> = Ok(());
    while let Some(joined) = streams.join_next().await {
        let result = joined.unwrap_or_else(|e| Err(StreamEnd::Fatal(pass.file.join_error(e))));
        if let Err(end) = result {
            // The first real reason wins over the cancellations it causes.
            let replace = match &outcome {
                Ok(()) => true,
                Err(StreamEnd::Cancelled) => !matches!(end, StreamEnd::Cancelled),
                Err(_) => false,
            };
            if replace {
                outcome = Err(end);
            }
            pass.cancel.cancel();
        }
    }
    outcome
}

/// One connection's worth of work: the probe piece if given, then pieces
/// from the queue until it is empty.
async fn work(
    pass: Arc<PassCtx>,
    queue: Arc<Mutex<VecDeque<usize>>>,
    first: Option<usize>,
) -> Result<(), StreamEnd> {
    // Wait for the object's identity before taking a connection, so
    // waiting workers never hold the connections a probe needs.
    if first.is_none() {
        let mut ready = pass.object_ready.subscribe();
        tokio::select! {
            biased;
            _ = pass.cancel.cancelled() => return Err(StreamEnd::Cancelled),
            r = ready.wait_for(|known| *known) => {
                r.map_err(|_| StreamEnd::Cancelled)?;
            }
        }
    }
    let Some(_permit) = super::downloader::permit(&pass.file.connections, &pass.cancel).await
    else {
        return Err(StreamEnd::Cancelled);
    };
    let mut next = first;
    loop {
        let piece = match next.take() {
            Some(p) => p,
            // A poisoned queue only means another worker panicked while
            // popping an index; the queue itself is intact.
            None => match queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front() {
                Some(p) => p,
                None => return Ok(()),
            },
        };
        Stream::new(pass.clone(), piece, false).run(None).await?;
    }
}
