//! Retry policy for API calls: which failures are tried again, and how long
//! to wait (exponential backoff with jitter, randomness injected).
//!
//! The client re-signs every attempt (fresh timestamp), so a long wait can
//! never push a request past the server's 300 s freshness window.

use std::time::Duration;

use rand::{Rng, RngCore};

use crate::cloud::error::{is_rate_limit_code, ApiError};

/// How often and how patiently to retry. Plain data; `Default` is tuned for
/// the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Total attempts for retryable failures, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Upper bound of the first wait; doubles with each retry.
    pub base: Duration,
    /// No single wait exceeds this.
    pub cap: Duration,
    /// First wait for `ResourceUnavailable*` (a backup locked by another
    /// workflow clears in minutes, not milliseconds).
    pub slow_base: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(20),
            slow_base: Duration::from_secs(2),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// Give up and return the error.
    Fail,
    /// Wait a normal backoff, then re-sign and send again.
    Backoff,
    /// Wait a long backoff (`slow_base`), then re-sign and send again.
    SlowBackoff,
    /// Re-sign at once with a fresh timestamp (allowed once per call).
    Resign,
    /// Force-refresh temporary credentials, then send again (once per call).
    RefreshCredentials,
}

/// Decide how to react to `err` (before counting attempts).
pub fn classify(err: &ApiError) -> RetryAction {
    match err {
        ApiError::Service { code, .. } => match code.as_str() {
            "AuthFailure.SignatureExpire" => RetryAction::Resign,
            // With role credentials a rotated SecretId shows up as "not found".
            "AuthFailure.TokenFailure" | "AuthFailure.SecretIdNotFound" => {
                RetryAction::RefreshCredentials
            }
            c if c.starts_with("ResourceUnavailable") => RetryAction::SlowBackoff,
            c if is_rate_limit_code(c) || err.is_retryable() => RetryAction::Backoff,
            _ => RetryAction::Fail,
        },
        ApiError::Http { .. } | ApiError::Transport { .. } => RetryAction::Backoff,
        _ => RetryAction::Fail,
    }
}

/// Jittered exponential backoff. The wait before retry `n` (0-based) is
/// drawn uniformly from `[d/2, d]` with `d = min(cap, base·2ⁿ)`: the lower
/// half keeps a rate-limited client from hammering, the upper half spreads
/// competing clients apart.
pub struct Backoff {
    config: RetryConfig,
    rng: Box<dyn RngCore + Send>,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Backoff {
    /// Backoff with `config`, drawing jitter from `rng`.
    pub fn new(config: RetryConfig, rng: Box<dyn RngCore + Send>) -> Self {
        Self { config, rng }
    }

    /// The ceiling of the wait before retry `retry` (0-based), before jitter.
    pub fn ceiling(&self, retry: u32, slow: bool) -> Duration {
        let base = if slow {
            self.config.slow_base
        } else {
            self.config.base
        };
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        base.checked_mul(factor)
            .unwrap_or(self.config.cap)
            .min(self.config.cap)
    }

    /// The wait before retry `retry` (0-based).
    pub fn delay(&mut self, retry: u32, slow: bool) -> Duration {
        let ceiling = self.ceiling(retry, slow);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        if ceiling_ms == 0 {
            return Duration::ZERO;
        }
        let low = ceiling_ms / 2;
        Duration::from_millis(self.rng.gen_range(low..=ceiling_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn service(code: &str) -> ApiError {
        ApiError::Service {
            action: "A".into(),
            code: code.into(),
            message: String::new(),
            request_id: String::new(),
        }
    }

    #[test]
    fn backoff_stays_within_bounds_and_grows() {
        let config = RetryConfig {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            slow_base: Duration::from_secs(1),
        };
        let mut backoff = Backoff::new(config, Box::new(StdRng::seed_from_u64(7)));
        for _ in 0..200 {
            for retry in 0..8 {
                let d = backoff.delay(retry, false);
                let ceiling = Duration::from_millis(100 * (1 << retry)).min(Duration::from_secs(2));
                assert!(d <= ceiling, "retry {retry}: {d:?} > {ceiling:?}");
                assert!(d >= ceiling / 2, "retry {retry}: {d:?} < {:?}", ceiling / 2);
            }
        }
        assert_eq!(backoff.ceiling(40, false), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(0, true), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(1, true), Duration::from_secs(2));
    }

    #[test]
    fn same_seed_same_waits_different_seed_different_waits() {
        let draw = |seed| {
            let mut b = Backoff::new(
                RetryConfig::default(),
                Box::new(StdRng::seed_from_u64(seed)),
            );
            (0..6).map(|n| b.delay(n, false)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn classification_of_failures() {
        let table = [
            ("AuthFailure.SignatureExpire", RetryAction::Resign),
            ("AuthFailure.TokenFailure", RetryAction::RefreshCredentials),
            ("AuthFailure.SignatureFailure", RetryAction::Fail),
            ("AuthFailure.InvalidAuthorization", RetryAction::Fail),
            ("UnauthorizedOperation.NoCAMAuthed", RetryAction::Fail),
            ("RequestLimitExceeded", RetryAction::Backoff),
            ("RequestLimitExceeded.IPLimitExceeded", RetryAction::Backoff),
            ("InternalError.InternalError", RetryAction::Backoff),
            ("FailedOperation.SystemError", RetryAction::Backoff),
            ("ServiceUnavailable", RetryAction::Backoff),
            (
                "ResourceUnavailable.BackupStatusInvalid",
                RetryAction::SlowBackoff,
            ),
            ("InvalidParameterValue.BackupNotExists", RetryAction::Fail),
        ];
        for (code, expected) in table {
            assert_eq!(classify(&service(code)), expected, "{code}");
        }
        let http = ApiError::Http {
            action: "A".into(),
            status: 503,
            endpoint: "e".into(),
        };
        assert_eq!(classify(&http), RetryAction::Backoff);
        let decode = ApiError::Decode {
            action: "A".into(),
            message: "m".into(),
        };
        assert_eq!(classify(&decode), RetryAction::Fail);
    }
}
