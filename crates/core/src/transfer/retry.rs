//! How download streams retry: the policy, and its delays through the
//! shared jittered exponential backoff (`crate::backoff`), raised by a
//! server's `Retry-After`. The random source is seeded from the policy when
//! a test needs the exact delays.

use std::time::Duration;

/// How often and how patiently a stream retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per stream without progress before the file fails (the
    /// count starts over whenever a response delivered bytes).
    pub max_attempts: u32,
    /// The first delay.
    pub base: Duration,
    /// No delay is longer than this.
    pub cap: Duration,
    /// Randomise each delay within its upper half, so that streams cut at
    /// the same moment do not come back at the same moment.
    pub jitter: bool,
    /// Seed for the jitter; `None` seeds from the OS.
    pub seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            jitter: true,
            seed: None,
        }
    }
}

/// The delays of a [`RetryPolicy`], shared by all streams of a downloader.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    waits: crate::backoff::Backoff,
}

impl Backoff {
    /// Backoff following `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        let waits = if policy.jitter {
            crate::backoff::Backoff::seeded(policy.cap, policy.seed)
        } else {
            crate::backoff::Backoff::without_jitter(policy.cap)
        };
        Self { policy, waits }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The delay before retry number `attempt` (1 for the first retry):
    /// `base * 2^(attempt-1)` capped at `cap`, then with jitter a uniform
    /// value in its upper half. A server's `Retry-After` raises it (still
    /// within the cap).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let delay = self
            .waits
            .delay(self.policy.base, attempt.saturating_sub(1));
        match retry_after {
            Some(hint) => delay.max(hint.min(self.policy.cap)),
            None => delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: bool, seed: Option<u64>) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            jitter,
            seed,
        }
    }

    #[test]
    fn exponential_and_capped_without_jitter() {
        let b = Backoff::new(policy(false, None));
        let ms: Vec<u128> = (1..=6).map(|a| b.delay(a, None).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX, None), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_is_seeded() {
        let a = Backoff::new(policy(true, Some(7)));
        let b = Backoff::new(policy(true, Some(7)));
        let c = Backoff::new(policy(true, Some(8)));
        let da: Vec<Duration> = (1..=20).map(|n| a.delay(n, None)).collect();
        let db: Vec<Duration> = (1..=20).map(|n| b.delay(n, None)).collect();
        let dc: Vec<Duration> = (1..=20).map(|n| c.delay(n, None)).collect();
        assert_eq!(da, db);
        assert_ne!(da, dc);
        for (n, d) in da.iter().enumerate() {
            let ceiling = Duration::from_millis(100 * (1 << n.min(4))).min(Duration::from_secs(1));
            assert!(
                *d >= ceiling / 2 && *d <= ceiling,
                "attempt {}: {d:?}",
                n + 1
            );
        }
    }

    #[test]
    fn retry_after_raises_within_the_cap() {
        let b = Backoff::new(policy(false, None));
        assert_eq!(
            b.delay(1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
        assert_eq!(
            b.delay(4, Some(Duration::from_millis(10))),
            Duration::from_millis(800)
        );
    }
}
