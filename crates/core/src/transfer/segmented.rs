//! Segmented mode: the preallocated file is cut into pieces (segments in
//! the sidecar) that a varying number of connections fetch in parallel,
//! each worker taking the next unfinished piece in file order when it is
//! done with one, and writing at the piece's own offsets.
//!
//! Pieces are handed out in order, so the finished prefix of the file grows
//! at the speed of all connections together and the hasher that trails it
//! has little left when the last byte lands (with one long range per
//! connection, everything after the first range would wait for the end).
//! A faster connection simply takes more pieces.
//!
//! How many workers run is the [`Controller`]'s call, at most `segments`:
//! every `adapt_interval` the bytes the ledger recorded are measured and the
//! target adjusted. A new worker just takes the next piece from the shared
//! queue; a worker above the target finishes its piece and leaves. Pieces
//! are not tied to workers, so the sidecar and a resume do not care how
//! many there were. Near the end, when fewer pieces wait than there are
//! workers, a piece is halved as it is taken (down to 4 MiB), so the last
//! connections finish together instead of one finishing a large piece
//! alone.
//!
//! The first unfinished piece goes first: its response tells the ETag and
//! CRC (a presigned URL signs the method, so there is no HEAD). The other
//! workers wait for that and then send `If-Match`, so every byte comes from
//! the same object version. When one stream ends the pass (restart, failure,
//! cancel), the others are stopped at once and their bytes are kept.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::adaptive::{Controller, Sample};
use super::fetch::{Stream, StreamEnd};
use super::ledger::Ledger;
use super::pass::PassCtx;
use super::plan::MAX_PIECES;
use super::sidecar::Sidecar;

/// Share of the bandwidth limit at which the process counts as limited.
const BANDWIDTH_SPENT: f64 = 0.9;
/// Pieces are split no smaller than this: below it, the round trip of one
/// more request costs about what the shorter tail saves.
const MIN_SPLIT: u64 = 4 * 1024 * 1024;

/// The workers of one pass and the pieces they share.
#[derive(Debug)]
struct Crew {
    state: Mutex<CrewState>,
    /// Workers waiting for a connection from the process-wide pool.
    waiting: AtomicUsize,
}

#[derive(Debug)]
struct CrewState {
    /// Unfinished pieces not yet taken, in file order.
    queue: VecDeque<usize>,
    /// Workers started and not yet left.
    workers: usize,
    /// Workers wanted.
    target: usize,
}

impl Crew {
    fn lock(&self) -> MutexGuard<'_, CrewState> {
        // A poisoned lock only means a worker panicked while holding plain
        // counters and indices; they are intact.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next piece for a worker, or `None` when it should leave (no
    /// pieces left, or more workers than wanted); a leaving worker is
    /// counted out here, under the same lock. When fewer pieces wait than
    /// there are other workers, the piece taken is split first and its
    /// second half goes to the front of the queue: near the end of the
    /// file pieces shrink, so no connection is left alone with a large one.
    fn next(&self, ledger: &Ledger) -> Option<usize> {
        let mut st = self.lock();
        let piece = if st.workers > st.target {
            None
        } else {
            st.queue.pop_front()
        };
        let Some(piece) = piece else {
            st.workers = st.workers.saturating_sub(1);
            return None;
        };
        if st.queue.len() + 1 < st.workers {
            if let Some(tail) = ledger.split(piece, MIN_SPLIT, MAX_PIECES as usize) {
                st.queue.push_front(tail);
            }
        }
        Some(piece)
    }
}

/// Fetch every unfinished piece of the pass with up to `max_connections`
/// workers.
pub(crate) async fn run(pass: Arc<PassCtx>, max_connections: usize) -> Result<(), StreamEnd> {
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
    let mut controller = Controller::new(max_connections);
    let crew = Arc::new(Crew {
        state: Mutex::new(CrewState {
            queue: unfinished,
            workers: 1,
            target: controller.target(),
        }),
        waiting: AtomicUsize::new(0),
    });
    let mut streams = JoinSet::new();
    {
        let (pass, crew) = (pass.clone(), crew.clone());
        streams.spawn(async move { work(pass, crew, Some(probe)).await });
    }
    hire(&pass, &crew, &mut streams);

    let period = pass
        .file
        .config
        .adapt_interval
        .max(std::time::Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut meter = Meter::new(&pass);

    let mut outcome: Result<(), StreamEnd> = Ok(());
    loop {
        let adapting = outcome.is_ok() && !crew.lock().queue.is_empty();
        tokio::select! {
            joined = streams.join_next() => {
                let Some(joined) = joined else { break };
                let result =
                    joined.unwrap_or_else(|e| Err(StreamEnd::Fatal(pass.file.join_error(e))));
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
            _ = tick.tick(), if adapting => {
                let sample = meter.sample(&pass, &crew);
                let before = controller.target();
                let target = controller.observe(sample);
                if target != before {
                    tracing::debug!(
                        file = %pass.file.file,
                        rate = sample.bytes as f64 / sample.elapsed.as_secs_f64().max(1e-9),
                        from = before,
                        to = target,
                        "adjusting connections"
                    );
                }
                crew.lock().target = target;
                hire(&pass, &crew, &mut streams);
            }
        }
    }
    outcome
}

/// Start workers up to the target (no more than there are pieces for).
fn hire(pass: &Arc<PassCtx>, crew: &Arc<Crew>, streams: &mut JoinSet<Result<(), StreamEnd>>) {
    let mut st = crew.lock();
    let wanted = st.target.min(st.workers + st.queue.len());
    while st.workers < wanted {
        st.workers += 1;
        let (pass, crew) = (pass.clone(), crew.clone());
        streams.spawn(async move { work(pass, crew, None).await });
    }
}

/// What the pass measures between two ticks.
struct Meter {
    at: Instant,
    bytes: u64,
    throttled: u64,
    limiter_taken: u64,
}

impl Meter {
    fn new(pass: &PassCtx) -> Self {
        Self {
            at: Instant::now(),
            bytes: Sidecar::present(&pass.ledger.segments()),
            throttled: pass.throttled.load(Ordering::Relaxed),
            limiter_taken: pass.file.limiter.as_ref().map_or(0, |l| l.taken()),
        }
    }

    /// The interval since the last sample.
    fn sample(&mut self, pass: &PassCtx, crew: &Crew) -> Sample {
        let now = Self::new(pass);
        let elapsed = now.at.saturating_duration_since(self.at);
        let bandwidth_spent = pass.file.limiter.as_ref().is_some_and(|l| {
            let spent = now.limiter_taken.saturating_sub(self.limiter_taken) as f64;
            spent >= l.rate() as f64 * elapsed.as_secs_f64() * BANDWIDTH_SPENT
        });
        let pool_spent = crew.waiting.load(Ordering::Relaxed) > 0
            || pass.file.connections.available_permits() == 0;
        let sample = Sample {
            bytes: now.bytes.saturating_sub(self.bytes),
            elapsed,
            throttled: now.throttled > self.throttled,
            limited: bandwidth_spent || pool_spent,
        };
        *self = now;
        sample
    }
}

/// One connection's worth of work: the probe piece if given, then pieces
/// from the queue until there are none or the crew has too many workers.
async fn work(pass: Arc<PassCtx>, crew: Arc<Crew>, first: Option<usize>) -> Result<(), StreamEnd> {
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
    crew.waiting.fetch_add(1, Ordering::Relaxed);
    let permit = super::downloader::permit(&pass.file.connections, &pass.cancel).await;
    crew.waiting.fetch_sub(1, Ordering::Relaxed);
    let Some(_permit) = permit else {
        return Err(StreamEnd::Cancelled);
    };
    let mut next = first;
    loop {
        let piece = match next.take() {
            Some(p) => p,
            None => match crew.next(&pass.ledger) {
                Some(p) => p,
                None => return Ok(()),
            },
        };
        Stream::new(pass.clone(), piece, false).run(None).await?;
    }
}
