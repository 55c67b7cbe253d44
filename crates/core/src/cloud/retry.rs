//! Retry policy for API calls: which failures are tried again, and how long
//! to wait (the bases and cap of `crate::backoff`'s jittered exponential
//! backoff; the client holds the [`crate::backoff::Backoff`]).
//!
//! The client re-signs every attempt (fresh timestamp), so a long wait can
//! never push a request past the server's 300 s freshness window.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn service(code: &str) -> ApiError {
        ApiError::Service {
            action: "A".into(),
            code: code.into(),
            message: String::new(),
            request_id: String::new(),
        }
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
