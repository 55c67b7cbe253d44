//! Errors of the transfer layer. Every variant names the file; none carries
//! a URL (messages from the HTTP client are passed through
//! [`tcbackup_signing::secret::redact_url`] before they are stored).

use std::path::PathBuf;

use super::events::{FileRef, RestartReason};

/// Why the URL source could not give a URL.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct UrlSourceError {
    /// What went wrong (a cloud API error, typically).
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
    /// Whether asking again later may succeed (throttling, network).
    pub retryable: bool,
}

impl UrlSourceError {
    /// An error worth retrying with backoff.
    pub fn retryable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
            retryable: true,
        }
    }

    /// An error that fails the file (authentication, backup gone).
    pub fn fatal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
            retryable: false,
        }
    }
}

/// Why a file could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Cancelled; the partial file and its sidecar are saved for resume.
    #[error("{file}: download cancelled (partial state kept for resume)")]
    Cancelled {
        /// The file.
        file: FileRef,
    },
    /// The file name is not a plain name.
    #[error("{file}: refusing file name that is not a plain name")]
    BadFileName {
        /// The file.
        file: FileRef,
    },
    /// The URL source failed.
    #[error("{file}: cannot obtain a download url: {source}")]
    UrlSource {
        /// The file.
        file: FileRef,
        /// The source's error.
        #[source]
        source: UrlSourceError,
    },
    /// The URL is not `https://` and plain HTTP is not allowed.
    #[error(
        "{file}: refusing {scheme}:// download url (set api.allow_http_downloads for emulators)"
    )]
    InsecureUrl {
        /// The file.
        file: FileRef,
        /// The URL's scheme.
        scheme: String,
    },
    /// COS kept answering "Request has expired" even with fresh URLs (a
    /// clock far off, or a resolver handing out stale links).
    #[error(
        "{file}: download url still expired after {refreshes} refreshes (check the system clock)"
    )]
    UrlExpired {
        /// The file.
        file: FileRef,
        /// URLs tried.
        refreshes: u32,
    },
    /// The server refused access (403 other than expiry, or 404).
    #[error("{file}: server answered {status} {code}: {message}")]
    Denied {
        /// The file.
        file: FileRef,
        /// HTTP status.
        status: u16,
        /// COS error code (`AccessDenied`, `NoSuchKey`, ...), or empty.
        code: String,
        /// COS error message, or empty.
        message: String,
    },
    /// The server redirected to a location that is not followed: not
    /// `https://` (nor `http://` with `allow_http`), or one redirect too
    /// many.
    #[error("{file}: not following the server's redirect ({status}): only https locations are followed (http too with api.allow_http_downloads), at most {max} in a row", max = super::MAX_REDIRECTS)]
    RefusedRedirect {
        /// The file.
        file: FileRef,
        /// The redirect's HTTP status.
        status: u16,
    },
    /// A status that no retry can fix.
    #[error("{file}: unexpected http status {status} {code}")]
    Status {
        /// The file.
        file: FileRef,
        /// HTTP status.
        status: u16,
        /// COS error code, or empty.
        code: String,
    },
    /// The object on the server is not the announced size.
    #[error("{file}: object is {actual} bytes on the server, the api announced {expected}")]
    SizeMismatch {
        /// The file.
        file: FileRef,
        /// The announced size.
        expected: u64,
        /// What the server says or sent.
        actual: u64,
    },
    /// The server sent more bytes than the announced size (a response
    /// without `Content-Length` that ran on): the object is not what the
    /// API listed, and no truncated copy is kept.
    #[error("{file}: the server sent more than the {expected} bytes the api announced ({received} so far); not keeping a truncated copy")]
    Oversized {
        /// The file.
        file: FileRef,
        /// The announced size.
        expected: u64,
        /// Bytes received when it was noticed.
        received: u64,
    },
    /// Retries exhausted.
    #[error("{file}: giving up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// The file.
        file: FileRef,
        /// Attempts made without progress.
        attempts: u32,
        /// The last error (redacted).
        last: String,
    },
    /// The download had to start over from byte 0 too often (the object
    /// was replaced, the server ignored or refused ranges, or resumed bytes
    /// did not match the CRC).
    #[error("{file}: had to start over from byte 0 {restarts} times (object replaced, range ignored or refused, or resumed bytes not matching the CRC-64), giving up; the log names each reason")]
    TooManyRestarts {
        /// The file.
        file: FileRef,
        /// Restarts from byte 0.
        restarts: u32,
    },
    /// Not enough free disk space.
    #[error(
        "not enough free space on the file system of {}: the download needs {needed} more bytes plus a margin of {margin}, {available} bytes are free ({reserved} of them promised to other downloads)",
        path.display()
    )]
    NoSpace {
        /// The partial directory.
        path: PathBuf,
        /// Bytes this file still has to allocate.
        needed: u64,
        /// Free bytes reported by the file system.
        available: u64,
        /// Bytes reserved by other files in flight.
        reserved: u64,
        /// The configured margin.
        margin: u64,
    },
    /// Local I/O failed.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What was being done ("write", "fsync", ...).
        action: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot build http client: {0}")]
    Client(String),
}

impl TransferError {
    /// Whether this is a cancellation.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TransferError::Cancelled { .. })
    }
}

/// How one request or response ended, when it did not simply deliver its
/// bytes; decides between retry, renewal, restart and failure.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Retry after backoff (transport error, 5xx, cut body, stall, bent 206).
    Retry {
        /// Redacted description.
        error: String,
        /// A `Retry-After` hint.
        retry_after: Option<std::time::Duration>,
    },
    /// COS said the URL expired: it was dropped; retry at once with a new one.
    Expired,
    /// The object is not what the bytes so far belong to: start the file
    /// over, with this response's body when it is the whole object.
    Restart(RestartReason, Option<Box<reqwest::Response>>),
    /// Fail the file.
    Fatal(TransferError),
    /// The pass was cancelled.
    Cancelled,
}

impl Attempt {
    /// A retryable failure described by `error` (URLs in it are redacted).
    pub(crate) fn retry(error: impl AsRef<str>) -> Self {
        Attempt::Retry {
            error: tcbackup_signing::secret::redact_url(error.as_ref()),
            retry_after: None,
        }
    }
}

/// Render an error with its sources, without the URL reqwest would add.
pub(crate) fn describe(err: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut current: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = current {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&e.to_string());
        current = e.source();
    }
    tcbackup_signing::secret::redact_url(&text)
}
