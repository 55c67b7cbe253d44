//! The only code that speaks to the Tencent Cloud API.
//!
//! - `sign`: pure TC3-HMAC-SHA256 signing.
//! - `credentials`: the credential chain and the provider read at signing time.
//! - `client`: one signed call with envelope parsing, retries, rate limits.
//! - `error`, `retry`, `ratelimit`: the client's error type and policies.
//! - `times`: the APIs' zone-less time strings.
//! - `redis`, `postgres`: typed requests and answers, paging, windows.
//! - `catalog`: the facade the sync cycle uses, mapping both into `crate::model`.

pub mod catalog;
pub mod client;
pub mod credentials;
pub mod error;
pub mod paging;
pub mod postgres;
pub mod ratelimit;
pub mod redis;
pub mod retry;
pub mod sign;
pub mod times;

#[cfg(test)]
pub(crate) mod testutil;

pub use catalog::Catalog;
pub use client::{ApiClient, ClientConfig};
pub use credentials::{CredentialProvider, Credentials, CredentialsError};
pub use error::ApiError;
pub use times::ApiTimeZone;
