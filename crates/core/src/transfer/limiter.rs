//! The process-wide bandwidth limiter: one [`TokenBucket`] in bytes per second
//! shared by every stream of every file. A stream asks for the bytes it just
//! received and sleeps off any debt, so the sum of all streams follows the
//! configured rate while each still reads at full speed within its share.
//!
//! It runs on tokio's clock, so tests drive it with a paused runtime.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::token_bucket::TokenBucket;

/// A token bucket in bytes per second.
#[derive(Debug)]
pub struct BandwidthLimiter {
    rate: u64,
    bucket: Mutex<TokenBucket>,
    /// Bytes accounted for since the start, so a caller can tell how much
    /// of the rate the whole process is spending.
    taken: AtomicU64,
}

impl BandwidthLimiter {
    /// A limiter of `bytes_per_sec`, allowing bursts of a quarter second
    /// (at least 64 KiB, at most 16 MiB).
    pub fn new(bytes_per_sec: NonZeroU64) -> Self {
        let rate = bytes_per_sec.get();
        let burst = (rate / 4).clamp(64 * 1024, 16 * 1024 * 1024);
        Self {
            rate,
            bucket: Mutex::new(TokenBucket::new(rate as f64, burst as f64)),
            taken: AtomicU64::new(0),
        }
    }

    /// The configured rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Bytes accounted for so far, by every stream of the process.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Account for `n` bytes, waiting as long as the bucket is in debt.
    pub async fn acquire(&self, n: u64) {
        let wait = self.take(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Take `n` tokens now and return how long the caller must wait to pay
    /// back any debt.
    fn take(&self, n: u64) -> Duration {
        self.taken.fetch_add(n, Ordering::Relaxed);
        // A poisoned lock only means a panic elsewhere between two float
        // updates; the bucket is still usable.
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        bucket.take(n as f64)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::time::Instant;

    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[tokio::test(start_paused = true)]
    async fn one_stream_follows_the_rate() {
        let limiter = BandwidthLimiter::new(NonZeroU64::new(4 * MIB).unwrap());
        let start = Instant::now();
        for _ in 0..(40 * MIB / (64 * 1024)) {
            limiter.acquire(64 * 1024).await;
        }
        let secs = start.elapsed().as_secs_f64();
        // 40 MiB at 4 MiB/s, minus the initial 1 MiB burst.
        assert!((9.6..=9.9).contains(&secs), "took {secs}s");
        assert_eq!(limiter.taken(), 40 * MIB);
    }

    #[tokio::test(start_paused = true)]
    async fn streams_share_the_rate() {
        let limiter = Arc::new(BandwidthLimiter::new(NonZeroU64::new(8 * MIB).unwrap()));
        let start = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let l = limiter.clone();
                tokio::spawn(async move {
                    for _ in 0..(20 * MIB / (128 * 1024)) {
                        l.acquire(128 * 1024).await;
                    }
                    Instant::now()
                })
            })
            .collect();
        let mut ends = Vec::new();
        for t in tasks {
            ends.push(t.await.unwrap().duration_since(start).as_secs_f64());
        }
        // 80 MiB at 8 MiB/s in total, less the 2 MiB burst: 9.75 s for the
        // last byte, and no stream got far ahead of the others.
        let last = ends.iter().cloned().fold(0.0, f64::max);
        let first = ends.iter().cloned().fold(f64::MAX, f64::min);
        assert!((9.7..=9.8).contains(&last), "last stream took {last}s");
        assert!(
            first >= 8.5,
            "a stream finished early at {first}s: {ends:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_only_up_to_the_burst() {
        let limiter = BandwidthLimiter::new(NonZeroU64::new(MIB).unwrap());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let start = Instant::now();
        limiter.acquire(MIB).await;
        let secs = start.elapsed().as_secs_f64();
        // Only a quarter second of burst was saved up, not an hour.
        assert!((0.74..=0.76).contains(&secs), "took {secs}s");
    }
}
