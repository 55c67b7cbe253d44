//! Segmented mode: the file is preallocated and its segments are fetched in
//! parallel, each by its own [`Stream`] on its own connection, writing at
//! its own offsets.
//!
//! The first unfinished segment goes first: its response tells the ETag and
//! CRC (a presigned URL signs the method, so there is no HEAD). The other
//! segments wait for that and then send `If-Match`, so every byte comes from
//! the same object version. When one stream ends the pass (restart, failure,
//! cancel), the others are stopped at once and their bytes are kept.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::fetch::{Stream, StreamEnd};
use super::PassCtx;

/// Fetch every unfinished segment of the pass.
pub(crate) async fn run(pass: Arc<PassCtx>) -> Result<(), StreamEnd> {
    let unfinished: Vec<usize> = pass
        .ledger
        .segments()
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_complete())
        .map(|(i, _)| i)
        .collect();
    let Some(&probe) = unfinished.first() else {
        return Ok(());
    };
    let mut streams = JoinSet::new();
    for seg in unfinished {
        let pass = pass.clone();
        streams.spawn(async move {
            // Wait for the object's identity before taking a connection, so
            // waiting segments never hold the connections a probe needs.
            if seg != probe {
                let mut ready = pass.object_ready.subscribe();
                tokio::select! {
                    biased;
                    _ = pass.cancel.cancelled() => return Err(StreamEnd::Cancelled),
                    r = ready.wait_for(|known| *known) => {
                        r.map_err(|_| StreamEnd::Cancelled)?;
                    }
                }
            }
            let connections = pass.file.connections.clone();
            let permit = tokio::select! {
                biased;
                _ = pass.cancel.cancelled() => return Err(StreamEnd::Cancelled),
                p = connections.acquire_owned() => p.map_err(|_| StreamEnd::Cancelled)?,
            };
            let result = Stream::new(pass, seg, false).run(None).await.map(|_| ());
            drop(permit);
            result
        });
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
