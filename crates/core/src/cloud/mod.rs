//! The only code that speaks to the Tencent Cloud API (signing and the
//! API's time strings are `tcbackup_signing::{tc3, times}`).
//!
//! - `credentials`: the credential chain and the provider read at signing time.
//! - `endpoint`: which host serves a call (site, regional hosts).
//! - `client`: one signed call with envelope parsing, retries, rate limits.
//! - `error`, `retry`, `ratelimit`: the client's error type and policies.
//! - `redis`, `postgres`: typed requests and answers, paging, windows.
//! - `restriction`: the account's download policy of either service.
//! - `catalog`: the facade the sync cycle uses, mapping both into `crate::model`.

pub mod catalog;
pub mod client;
pub mod credentials;
pub mod endpoint;
pub mod error;
pub mod paging;
pub mod postgres;
pub mod ratelimit;
pub mod redis;
pub mod restriction;
pub mod retry;

#[cfg(test)]
pub(crate) mod testutil;

pub use catalog::Catalog;
pub use client::{ApiClient, ClientConfig};
pub use credentials::{CredentialProvider, Credentials, CredentialsError};
pub use endpoint::Site;
pub use error::ApiError;
pub use restriction::{DownloadPolicy, PolicyKind};
pub use tcbackup_signing::times::ApiTimeZone;
