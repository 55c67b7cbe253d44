//! `ApiError`: every way a cloud API call can fail, and the classification the
//! client's retry loop and the CLI's exit code depend on (`is_retryable`,
//! `is_auth`, `code`).
//!
//! No variant holds a secret: server messages never echo the key, transport
//! messages pass through `redact_url`, and credential errors name sources only.

use crate::cloud::credentials::CredentialsError;
use crate::model::Service;
use tcbackup_signing::times::TimeError;

/// A failed cloud API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with `Response.Error`.
    #[error("{action} failed with {code}: {message} (request id {request_id}){hint}", hint = hint(code))]
    Service {
        /// The action called, e.g. `DescribeBackupUrl`.
        action: String,
        /// `Error.Code`, e.g. `AuthFailure.SignatureFailure`.
        code: String,
        /// `Error.Message` as the server wrote it.
        message: String,
        /// `RequestId`, for Tencent support.
        request_id: String,
    },
    /// `RequestLimitExceeded*` kept coming back after every retry.
    #[error("{action} stayed rate limited ({code}) after {attempts} attempts: {message} (request id {request_id})")]
    RateLimited {
        /// The action called.
        action: String,
        /// The exact `RequestLimitExceeded*` code.
        code: String,
        /// The server's message (it names the limit).
        message: String,
        /// How many requests were sent.
        attempts: u32,
        /// `RequestId` of the last answer.
        request_id: String,
    },
    /// A gateway or proxy answered with a status other than 200 (the API
    /// itself answers 200 even for errors).
    #[error("{action} got http status {status} from {endpoint}")]
    Http {
        /// The action called.
        action: String,
        /// The HTTP status.
        status: u16,
        /// The endpoint (no secrets: API endpoints carry no query).
        endpoint: String,
    },
    /// The endpoint answered with a redirect. API calls never follow one:
    /// following would send the signed body, and the `X-TC-Token` header
    /// of temporary credentials, to another host, possibly over plain
    /// http. Not retried: the same endpoint would redirect again.
    #[error("{action}: the api endpoint {endpoint} answered with a redirect (http status {status}) to {location}; api calls never follow redirects, so set [api] endpoint to the address that answers")]
    Redirect {
        /// The action called.
        action: String,
        /// The HTTP status (301, 302, 303, 307, 308).
        status: u16,
        /// The endpoint that redirected (API endpoints carry no query).
        endpoint: String,
        /// Where it pointed, redacted (`Location`, or "nowhere" when absent).
        location: String,
    },
    /// The request did not complete: DNS, connect, TLS, timeout, reset.
    #[error("{action} could not reach the api: {source}")]
    Transport {
        /// The action called.
        action: String,
        /// What went wrong, with any URL signature redacted.
        #[source]
        source: TransportError,
    },
    /// The answer was not the JSON the action documents.
    #[error("{action} returned an unreadable answer: {message}")]
    Decode {
        /// The action called.
        action: String,
        /// What did not parse (redacted; no values of secret fields).
        message: String,
    },
    /// The answer parsed but carried a value this program cannot use.
    #[error("{action} returned {what}")]
    BadResponse {
        /// The action called.
        action: String,
        /// What is wrong, e.g. `file x.rdb of backup b with size 0 (invalid)`.
        what: String,
    },
    /// A time string in the answer is unusable.
    #[error("{action} returned an unusable time for {field} of {item}: {source}")]
    Time {
        /// The action called.
        action: String,
        /// The field, e.g. `StartTime`.
        field: &'static str,
        /// The backup or instance id the field belongs to.
        item: String,
        /// The parse error.
        #[source]
        source: TimeError,
    },
    /// No usable credentials, or the credential source failed.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The request was refused before sending because a value is out of the
    /// documented range.
    #[error("invalid {action} request: {reason}")]
    InvalidRequest {
        /// The action that would have been called.
        action: String,
        /// Which value and the allowed range.
        reason: String,
    },
    /// The configured instance does not exist in that region (or the
    /// credentials cannot see it).
    #[error("{service} instance {instance_id} not found in region {region}: check instance_id and region in the config, and that the key belongs to the account that owns it")]
    InstanceNotFound {
        /// Redis or PostgreSQL.
        service: Service,
        /// The configured id.
        instance_id: String,
        /// The region asked (`default` when none was given).
        region: String,
    },
    /// The HTTP client could not be built (TLS backend, bad settings).
    #[error("cannot build the http client: {message}")]
    Setup {
        /// Redacted description.
        message: String,
    },
}

/// A transport failure, already redacted. Kept as its own type so that it can
/// sit in the error chain without exposing the original `reqwest::Error`
/// (whose text may contain a presigned URL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct TransportError {
    /// Which stage failed.
    pub kind: TransportKind,
    /// The client library's message with URL signatures redacted.
    pub message: String,
}

/// The stage at which a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Could not connect (DNS, refused, TLS).
    Connect,
    /// The connect or read timeout elapsed.
    Timeout,
    /// The connection broke while reading the body.
    Body,
    /// The answer exceeded the size limit.
    TooLarge,
    /// Anything else.
    Other,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "connect failed",
            TransportKind::Timeout => "timed out",
            TransportKind::Body => "connection broke while reading the answer",
            TransportKind::TooLarge => "answer too large",
            TransportKind::Other => "request failed",
        })
    }
}

impl TransportError {
    /// Classify and redact a `reqwest` error.
    pub fn from_reqwest(err: &reqwest::Error) -> Self {
        use std::error::Error as _;
        let kind = if err.is_timeout() {
            TransportKind::Timeout
        } else if err.is_connect() {
            TransportKind::Connect
        } else if err.is_body() || err.is_decode() {
            TransportKind::Body
        } else {
            TransportKind::Other
        };
        // reqwest's Display omits the cause ("error sending request"), which is
        // where the useful part is; walk the chain.
        let mut message = err.to_string();
        let mut cause = err.source();
        while let Some(inner) = cause {
            message.push_str(": ");
            message.push_str(&inner.to_string());
            cause = inner.source();
        }
        Self {
            kind,
            message: tcbackup_signing::secret::redact_url(&message),
        }
    }
}

/// A short fix appended to the messages of codes a user can act on.
fn hint(code: &str) -> &'static str {
    match code {
        "AuthFailure.SignatureExpire" => {
            "; the local clock differs from the server's by more than 5 minutes: sync it (NTP)"
        }
        "AuthFailure.SignatureFailure" => {
            "; check that secret_key belongs to secret_id (and has no stray spaces)"
        }
        "AuthFailure.SecretIdNotFound" | "AuthFailure.InvalidSecretId" => {
            "; check secret_id: it does not exist or is disabled"
        }
        "AuthFailure.TokenFailure" => "; the temporary credentials' token is invalid or expired",
        c if is_permission_code(c) => {
            "; grant the key's CAM user read access to this product's backups"
        }
        _ => "",
    }
}

/// Codes that mean "authentication failed" or "not permitted" (CLI exit 3).
pub fn is_auth_code(code: &str) -> bool {
    code.starts_with("AuthFailure") || is_permission_code(code)
}

fn is_permission_code(code: &str) -> bool {
    code.starts_with("UnauthorizedOperation")
        || code.ends_with("PermissionDenied")
        || code == "OperationDenied.CamDeniedError"
        || code.starts_with("FailedOperation.CamSigAndAuthError")
}

/// Codes worth retrying with backoff (reference §4.1, §6.6, §7.8).
pub fn is_retryable_code(code: &str) -> bool {
    code.starts_with("RequestLimitExceeded")
        || code.starts_with("InternalError")
        || code.starts_with("ResourceUnavailable")
        || matches!(
            code,
            "FailedOperation.SystemError"
                | "FailedOperation.DatabaseAccessError"
                | "FailedOperation.FailedOperationError"
                | "ServiceUnavailable"
        )
}

/// Codes that mean "over the rate limit".
pub fn is_rate_limit_code(code: &str) -> bool {
    code.starts_with("RequestLimitExceeded")
}

impl ApiError {
    /// Whether trying again later may succeed (rate limits, server-side
    /// transient errors, transport errors, non-200 answers).
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Service { code, .. } => is_retryable_code(code),
            ApiError::RateLimited { .. } | ApiError::Http { .. } | ApiError::Transport { .. } => {
                true
            }
            ApiError::Credentials(e) => e.is_transient(),
            ApiError::Decode { .. }
            | ApiError::Redirect { .. }
            | ApiError::BadResponse { .. }
            | ApiError::Time { .. }
            | ApiError::InvalidRequest { .. }
            | ApiError::InstanceNotFound { .. }
            | ApiError::Setup { .. } => false,
        }
    }

    /// Whether the API refused the caller's identity or permissions
    /// (`AuthFailure.*`, CAM denials). The CLI exits with code 3 on these.
    pub fn is_auth(&self) -> bool {
        match self {
            ApiError::Service { code, .. } => is_auth_code(code),
            _ => false,
        }
    }

    /// The API's error code, when the API answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Service { code, .. } | ApiError::RateLimited { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The API's request id, when the API answered.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ApiError::Service { request_id, .. } | ApiError::RateLimited { request_id, .. } => {
                Some(request_id)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(code: &str) -> ApiError {
        ApiError::Service {
            action: "DescribeBackupUrl".into(),
            code: code.into(),
            message: "m".into(),
            request_id: "r-1".into(),
        }
    }

    #[test]
    fn classification_table() {
        // (code, retryable, auth)
        let table = [
            ("RequestLimitExceeded", true, false),
            ("RequestLimitExceeded.UinLimitExceeded", true, false),
            (
                "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
                true,
                false,
            ),
            ("RequestLimitExceeded.IPLimitExceeded", true, false),
            ("InternalError", true, false),
            ("InternalError.DbOperationFailed", true, false),
            ("FailedOperation.SystemError", true, false),
            ("FailedOperation.DatabaseAccessError", true, false),
            ("FailedOperation.FailedOperationError", true, false),
            ("ServiceUnavailable", true, false),
            ("ResourceUnavailable.BackupStatusInvalid", true, false),
            ("AuthFailure.SignatureFailure", false, true),
            ("AuthFailure.SignatureExpire", false, true),
            ("AuthFailure.TokenFailure", false, true),
            ("AuthFailure.SecretIdNotFound", false, true),
            ("AuthFailure.UnauthorizedOperation", false, true),
            ("UnauthorizedOperation.NoCAMAuthed", false, true),
            ("InvalidParameter.PermissionDenied", false, true),
            ("OperationDenied.CamDeniedError", false, true),
            ("OperationDenied.InstanceStatusLimitError", false, false),
            ("FailedOperation", false, false),
            ("InvalidParameter.InvalidParameter", false, false),
            ("InvalidParameterValue.BackupNotExists", false, false),
            ("ResourceNotFound.InstanceNotExists", false, false),
            ("UnknownParameter", false, false),
            ("InvalidAction", false, false),
        ];
        for (code, retryable, auth) in table {
            let e = service(code);
            assert_eq!(e.is_retryable(), retryable, "{code} retryable");
            assert_eq!(e.is_auth(), auth, "{code} auth");
            assert_eq!(e.code(), Some(code));
        }
    }

    #[test]
    fn messages_carry_code_request_id_and_a_fix() {
        let text = service("AuthFailure.SignatureExpire").to_string();
        assert!(text.contains("DescribeBackupUrl failed with AuthFailure.SignatureExpire"));
        assert!(text.contains("request id r-1"), "{text}");
        assert!(text.contains("clock"), "{text}");
        let text = service("AuthFailure.SignatureFailure").to_string();
        assert!(text.contains("secret_key"), "{text}");
    }

    #[test]
    fn transport_and_http_errors_are_retryable_not_auth() {
        let t = ApiError::Transport {
            action: "DescribeInstances".into(),
            source: TransportError {
                kind: TransportKind::Timeout,
                message: "x".into(),
            },
        };
        assert!(t.is_retryable());
        assert!(!t.is_auth());
        assert_eq!(t.code(), None);
        let h = ApiError::Http {
            action: "DescribeInstances".into(),
            status: 502,
            endpoint: "https://redis.tencentcloudapi.com/".into(),
        };
        assert!(h.is_retryable());
        let d = ApiError::Decode {
            action: "DescribeInstances".into(),
            message: "x".into(),
        };
        assert!(!d.is_retryable());
    }
}
