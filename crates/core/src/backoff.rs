//! Jittered exponential backoff: the one wait rule of every retry loop in
//! tcbackup (API calls in `cloud::client`, download streams in `transfer`,
//! health-check pings in `service::healthcheck`).
//!
//! The wait before retry `n` (0-based) has the ceiling `min(cap, base·2ⁿ)`;
//! with jitter it is drawn uniformly from the upper half of that,
//! `[ceiling/2, ceiling]`: the lower bound keeps a rate-limited client from
//! hammering, the spread keeps streams or clients cut at the same moment
//! from coming back at the same moment. Each caller passes its own `base`
//! (the API client has a slower one for a backup locked by another
//! workflow). The random source is injected, so tests see exact waits.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Waits that grow exponentially up to a cap, with optional jitter.
pub struct Backoff {
    cap: Duration,
    rng: Option<Mutex<Box<dyn RngCore + Send>>>,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff")
            .field("cap", &self.cap)
            .field("jitter", &self.rng.is_some())
            .finish()
    }
}

impl Backoff {
    /// Jittered waits up to `cap`, seeded from the OS.
    pub fn new(cap: Duration) -> Self {
        Self::with_rng(cap, Box::new(StdRng::from_entropy()))
    }

    /// Jittered waits up to `cap`, drawn from `rng`.
    pub fn with_rng(cap: Duration, rng: Box<dyn RngCore + Send>) -> Self {
        Self {
            cap,
            rng: Some(Mutex::new(rng)),
        }
    }

    /// Jittered waits seeded with `seed` (reproducible), or from the OS.
    pub fn seeded(cap: Duration, seed: Option<u64>) -> Self {
        match seed {
            Some(seed) => Self::with_rng(cap, Box::new(StdRng::seed_from_u64(seed))),
            None => Self::new(cap),
        }
    }

    /// Waits of exactly the ceiling, no jitter.
    pub fn without_jitter(cap: Duration) -> Self {
        Self { cap, rng: None }
    }

    /// The longest wait.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The ceiling of the wait before retry `retry` (0-based) starting from
    /// `base`: `min(cap, base·2^retry)`.
    pub fn ceiling(&self, base: Duration, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        base.checked_mul(factor).unwrap_or(self.cap).min(self.cap)
    }

    /// The wait before retry `retry` (0-based) starting from `base`.
    pub fn delay(&self, base: Duration, retry: u32) -> Duration {
        let ceiling = self.ceiling(base, retry);
        let Some(rng) = &self.rng else {
            return ceiling;
        };
        if ceiling.is_zero() {
            return ceiling;
        }
        let half = ceiling / 2;
        // A poisoned lock only means a panic elsewhere while drawing a
        // number; the generator is still usable.
        let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
        half + rng.gen_range(Duration::ZERO..=ceiling - half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exponential_and_capped_without_jitter() {
        let b = Backoff::without_jitter(Duration::from_secs(1));
        let ms: Vec<u128> = (0..6).map(|n| b.delay(100 * MS, n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(100 * MS, u32::MAX), Duration::from_secs(1));
        assert_eq!(b.delay(Duration::MAX, 3), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_is_reproducible_by_seed() {
        let draw = |seed| {
            let b = Backoff::seeded(Duration::from_secs(2), Some(seed));
            (0..40)
                .map(|n| b.delay(100 * MS, n % 8))
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        for (n, d) in a.iter().enumerate() {
            let ceiling = (100 * MS * (1 << (n % 8))).min(Duration::from_secs(2));
            assert!(*d >= ceiling / 2 && *d <= ceiling, "retry {n}: {d:?}");
        }
    }
}
