//! Per-(service, action, region, SecretId) token buckets at the documented
//! per-second limits (reference §5). Time is tokio's monotonic clock, passed
//! in by the caller, so refills follow real elapsed time (or tokio's paused
//! clock) and not the injected wall clock, which tests may freeze.
//!
//! Written apart from the client's `tcbackup_core::token_bucket` on purpose
//! (the emulator depends on the product's signing code only): the server's
//! limits are an independent check that the client paces itself, so a bug
//! in the client's bucket cannot hide behind the same bug here.

use std::collections::HashMap;

use tokio::time::{Duration, Instant};

use super::ApiError;
use tcbackup_signing::service::Service;

/// The documented default limit of an action, in requests per second.
pub(crate) fn documented_limit(service: Service, action: &str) -> Option<u32> {
    Some(match (service, action) {
        (Service::Redis, "DescribeBackupUrl") => 20,
        (Service::Redis, "DescribeInstanceBackups") => 50,
        (Service::Redis, "DescribeInstances") => 35,
        (Service::Redis, "DescribeBackupDetail") => 20,
        (Service::Redis, "DescribeBackupDownloadRestriction") => 20,
        (Service::Postgres, "DescribeBackupDownloadURL") => 1000,
        (Service::Postgres, "DescribeBaseBackups") => 1000,
        (Service::Postgres, "DescribeLogBackups") => 1000,
        (Service::Postgres, "DescribeDBInstances") => 1000,
        (Service::Postgres, "DescribeBackupDownloadRestriction") => 20,
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    service: Service,
    action: String,
    region: String,
    secret_id: String,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Start of the current one-second window and the requests seen in it,
    /// for the `N` of the error message.
    window_start: Instant,
    window_count: u32,
}

/// Buckets beyond this many are pruned of idle ones, so a stream of fresh
/// temporary SecretIds cannot grow the table without bound.
const MAX_BUCKETS: usize = 4096;

/// The rate limiter's state.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    enabled: bool,
    overrides: HashMap<(Service, String), u32>,
    buckets: HashMap<Key, Bucket>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            enabled: true,
            overrides: HashMap::new(),
            buckets: HashMap::new(),
        }
    }
}

impl RateLimiter {
    pub(crate) fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    pub(crate) fn set_limit(&mut self, service: Service, action: &str, per_second: Option<u32>) {
        let key = (service, action.to_string());
        match per_second {
            Some(limit) => {
                self.overrides.insert(key, limit);
            }
            None => {
                self.overrides.remove(&key);
            }
        }
        // Start the changed action's buckets afresh at the new capacity.
        self.buckets
            .retain(|k, _| !(k.service == service && k.action == action));
    }

    fn limit(&self, service: Service, action: &str) -> Option<u32> {
        self.overrides
            .get(&(service, action.to_string()))
            .copied()
            .or_else(|| documented_limit(service, action))
    }

    /// Take one token for this call, or answer `RequestLimitExceeded`.
    pub(crate) fn check(
        &mut self,
        service: Service,
        action: &str,
        region: &str,
        secret_id: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        let Some(limit) = self.limit(service, action) else {
            return Ok(());
        };
        if self.buckets.len() >= MAX_BUCKETS {
            let second = Duration::from_secs(1);
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.refilled) < second);
        }
        let key = Key {
            service,
            action: action.to_string(),
            region: region.to_string(),
            secret_id: secret_id.to_string(),
        };
        let capacity = f64::from(limit);
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            refilled: now,
            window_start: now,
            window_count: 0,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * capacity).min(capacity);
        bucket.refilled = now;
        if now.saturating_duration_since(bucket.window_start) >= Duration::from_secs(1) {
            bucket.window_start = now;
            bucket.window_count = 0;
        }
        bucket.window_count = bucket.window_count.saturating_add(1);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(ApiError::rate_limited(
                bucket.window_count.max(limit + 1),
                limit,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_limit_then_refuses_then_refills() {
        let mut rl = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..20 {
            rl.check(
                Service::Redis,
                "DescribeBackupUrl",
                "ap-guangzhou",
                "AKID",
                t0,
            )
            .expect("within the limit");
        }
        let err = rl
            .check(
                Service::Redis,
                "DescribeBackupUrl",
                "ap-guangzhou",
                "AKID",
                t0,
            )
            .expect_err("21st call in the same instant");
        assert_eq!(err.code, "RequestLimitExceeded");
        assert!(
            err.message.contains("equals to `21` in a second"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("frequency limit `20`"),
            "{}",
            err.message
        );
        // Another region or key has its own bucket.
        rl.check(
            Service::Redis,
            "DescribeBackupUrl",
            "ap-shanghai",
            "AKID",
            t0,
        )
        .expect("other region");
        rl.check(
            Service::Redis,
            "DescribeBackupUrl",
            "ap-guangzhou",
            "AKID2",
            t0,
        )
        .expect("other key");
        // 50 ms refill one token at 20/s.
        let t1 = t0 + Duration::from_millis(50);
        rl.check(
            Service::Redis,
            "DescribeBackupUrl",
            "ap-guangzhou",
            "AKID",
            t1,
        )
        .expect("refilled");
    }

    #[test]
    fn overrides_and_switch() {
        let mut rl = RateLimiter::default();
        let now = Instant::now();
        rl.set_limit(Service::Postgres, "DescribeBaseBackups", Some(1));
        rl.check(Service::Postgres, "DescribeBaseBackups", "", "A", now)
            .expect("first");
        assert!(rl
            .check(Service::Postgres, "DescribeBaseBackups", "", "A", now)
            .is_err());
        rl.set_enabled(false);
        rl.check(Service::Postgres, "DescribeBaseBackups", "", "A", now)
            .expect("disabled");
    }
}
