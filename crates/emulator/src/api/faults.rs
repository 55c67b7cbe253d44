//! Switchable faults: the next N calls of an action fail the way the real
//! service or its gateway sometimes does, so that retry and backoff run.

use super::ApiError;

/// One injected failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFault {
    /// `InternalError` (HTTP 200 with an error body).
    InternalError,
    /// `RequestLimitExceeded`, as if the rate limit had been hit.
    RateLimit,
    /// `FailedOperation.SystemError` (Redis' retryable system error).
    SystemError,
    /// `FailedOperation.DatabaseAccessError` (PostgreSQL's control-plane DB error).
    DatabaseAccessError,
    /// `ServiceUnavailable`.
    ServiceUnavailable,
    /// Any other error code and message, answered with HTTP 200.
    Code {
        /// Error code, e.g. `AuthFailure.UnauthorizedOperation`.
        code: String,
        /// Error message.
        message: String,
    },
    /// A gateway answer with this HTTP status (e.g. 502) and an HTML body,
    /// before any signature check.
    Gateway(u16),
}

impl ApiFault {
    /// The API error this fault answers with; `None` for a gateway fault.
    pub(crate) fn api_error(&self) -> Option<ApiError> {
        Some(match self {
            ApiFault::InternalError => ApiError::new(
                "InternalError",
                "An internal error has occurred. Retry your request, but if the problem persists, contact us.",
            ),
            ApiFault::RateLimit => ApiError::rate_limited(21, 20),
            ApiFault::SystemError => {
                ApiError::new("FailedOperation.SystemError", "internal system error")
            }
            ApiFault::DatabaseAccessError => ApiError::new(
                "FailedOperation.DatabaseAccessError",
                "failed to access the control-plane database, please retry later",
            ),
            ApiFault::ServiceUnavailable => ApiError::new(
                "ServiceUnavailable",
                "The service is temporarily unavailable. Please retry later.",
            ),
            ApiFault::Code { code, message } => ApiError::new(code.clone(), message.clone()),
            ApiFault::Gateway(_) => return None,
        })
    }
}
