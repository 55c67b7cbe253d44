//! A token bucket on tokio's clock: the one pacing rule behind the API
//! client's per-action rate limits (`cloud::ratelimit`, a token per request)
//! and the process-wide bandwidth limit (`transfer::limiter`, a token per
//! byte). A caller takes what it needs at once and is told how long to wait
//! to pay back any debt, so waiters queue in the order they came without a
//! lock held across the wait. (The emulator keeps its own server-side
//! limiter on purpose: it checks the client independently.)

use std::time::Duration;

use tokio::time::Instant;

/// Tokens that refill at `rate` per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    /// Tokens available now; negative is debt already handed out.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilling at `rate` per second.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Take `n` tokens now (possibly ones not yet refilled) and return how
    /// long the caller must wait before using them.
    pub fn take(&mut self, n: f64) -> Duration {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= n;
        if self.tokens >= 0.0 || self.rate <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_the_rate_and_idle_time_refills_only_to_the_burst() {
        let mut bucket = TokenBucket::new(10.0, 5.0);
        for _ in 0..5 {
            assert_eq!(bucket.take(1.0), Duration::ZERO);
        }
        assert_eq!(bucket.take(1.0), Duration::from_millis(100));
        assert_eq!(bucket.take(1.0), Duration::from_millis(200));
        tokio::time::advance(Duration::from_secs(3600)).await;
        // An hour idle saves up 5 tokens, not 36,000.
        assert_eq!(bucket.take(5.0), Duration::ZERO);
        assert_eq!(bucket.take(1.0), Duration::from_millis(100));
    }
}
