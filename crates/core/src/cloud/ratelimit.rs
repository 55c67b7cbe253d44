//! Client-side rate limits per (service, action): a [`TokenBucket`] that makes a
//! caller wait (asynchronously) for its turn instead of failing, so that the
//! server's `RequestLimitExceeded` is the exception, not the pacing mechanism.
//!
//! Limits are the documented defaults (reference §5). Uses `tokio::time`, so
//! tests can pause time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::Service;
use crate::token_bucket::TokenBucket;

/// One action's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests that may go out back to back after an idle period.
    pub burst: u32,
}

/// The documented per-action limits (requests per second), reference §5.
pub const DOCUMENTED_LIMITS: &[(Service, &str, u32)] = &[
    (Service::Redis, "DescribeBackupUrl", 20),
    (Service::Redis, "DescribeInstanceBackups", 50),
    (Service::Redis, "DescribeInstances", 35),
    (Service::Redis, "DescribeBackupDetail", 20),
    (Service::Redis, "DescribeBackupDownloadRestriction", 20),
    (Service::Postgres, "DescribeBackupDownloadURL", 1000),
    (Service::Postgres, "DescribeBaseBackups", 1000),
    (Service::Postgres, "DescribeLogBackups", 1000),
    (Service::Postgres, "DescribeDBInstances", 1000),
    (Service::Postgres, "DescribeBackupDownloadRestriction", 20),
];

/// The limit used for actions missing from the table: the lowest documented one.
pub const FALLBACK_PER_SECOND: u32 = 20;

/// Limits by (service, action). Plain data with a documented `Default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Per-action limits.
    pub actions: HashMap<(Service, String), Rate>,
    /// Limit for actions not listed.
    pub fallback: Rate,
}

impl Default for RateLimits {
    /// The documented limits. The burst is a quarter second's worth, so a
    /// client that sends the burst and then the sustained rate never exceeds
    /// the per-second limit the server counts.
    fn default() -> Self {
        let rate = |per_second: u32| Rate {
            per_second,
            burst: (per_second / 4).max(1),
        };
        Self {
            actions: DOCUMENTED_LIMITS
                .iter()
                .map(|(service, action, per_second)| {
                    ((*service, (*action).to_string()), rate(*per_second))
                })
                .collect(),
            fallback: rate(FALLBACK_PER_SECOND),
        }
    }
}

impl RateLimits {
    /// The limit for one action.
    pub fn rate(&self, service: Service, action: &str) -> Rate {
        self.actions
            .get(&(service, action.to_string()))
            .copied()
            .unwrap_or(self.fallback)
    }
}

/// Token buckets for every (service, action) seen so far.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(Service, String), TokenBucket>>,
}

impl RateLimiter {
    /// A limiter enforcing `limits`.
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Wait until one request of `action` may be sent. Concurrent callers
    /// each reserve their own slot, so they leave spaced by `1/rate`.
    pub async fn acquire(&self, service: Service, action: &str) {
        let wait = self.reserve(service, action);
        if !wait.is_zero() {
            tracing::trace!(%service, action, wait_ms = wait.as_millis() as u64, "client-side rate limit");
            tokio::time::sleep(wait).await;
        }
    }

    /// Take a token (possibly one not yet refilled) and return how long to
    /// wait until it is due.
    fn reserve(&self, service: Service, action: &str) -> Duration {
        let rate = self.limits.rate(service, action);
        let per_second = f64::from(rate.per_second.max(1));
        let burst = f64::from(rate.burst.max(1));
        // A poisoned lock only means a panic between two float updates; the
        // bucket is still a usable estimate.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets
            .entry((service, action.to_string()))
            .or_insert_with(|| TokenBucket::new(per_second, burst))
            .take(1.0)
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(RateLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_at_the_documented_rate_after_the_burst() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        let mut sent_at = Vec::new();
        for _ in 0..25 {
            limiter.acquire(Service::Redis, "DescribeBackupUrl").await;
            sent_at.push(start.elapsed());
        }
        // 20/s with a burst of 5: five at once, then one every 50 ms.
        assert!(sent_at[..5].iter().all(|t| t.is_zero()), "{sent_at:?}");
        for pair in sent_at[5..].windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= Duration::from_millis(49), "{gap:?}");
            assert!(gap <= Duration::from_millis(51), "{gap:?}");
        }
        // In any one-second window no more than 20 + burst requests went out.
        let within_first_second = sent_at
            .iter()
            .filter(|t| **t < Duration::from_secs(1))
            .count();
        assert!(within_first_second <= 25, "{within_first_second}");
        let last = sent_at[24];
        assert!(
            last >= Duration::from_millis(999) && last <= Duration::from_millis(1002),
            "{last:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn actions_have_separate_buckets_and_concurrent_callers_queue() {
        let limiter = Arc::new(RateLimiter::new(RateLimits {
            actions: HashMap::from([(
                (Service::Redis, "DescribeInstances".to_string()),
                Rate {
                    per_second: 10,
                    burst: 1,
                },
            )]),
            fallback: Rate {
                per_second: 1000,
                burst: 1000,
            },
        }));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let limiter = Arc::clone(&limiter);
            tasks.push(tokio::spawn(async move {
                limiter.acquire(Service::Redis, "DescribeInstances").await;
                start.elapsed()
            }));
        }
        // Another action is not held up by the first one's queue.
        limiter
            .acquire(Service::Postgres, "DescribeBaseBackups")
            .await;
        assert!(start.elapsed().is_zero());
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.expect("task"));
        }
        times.sort();
        for (i, t) in times.iter().enumerate() {
            let expected = Duration::from_millis(100 * i as u64);
            let off = t.abs_diff(expected);
            assert!(off <= Duration::from_millis(1), "caller {i} left at {t:?}");
        }
    }

    #[test]
    fn documented_limits_are_the_defaults() {
        let limits = RateLimits::default();
        assert_eq!(
            limits.rate(Service::Redis, "DescribeBackupUrl").per_second,
            20
        );
        assert_eq!(
            limits
                .rate(Service::Redis, "DescribeInstanceBackups")
                .per_second,
            50
        );
        assert_eq!(
            limits.rate(Service::Redis, "DescribeInstances").per_second,
            35
        );
        assert_eq!(
            limits
                .rate(Service::Postgres, "DescribeBaseBackups")
                .per_second,
            1000
        );
        assert_eq!(limits.rate(Service::Postgres, "Unknown").per_second, 20);
    }
}
