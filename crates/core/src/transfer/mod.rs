//! The transfer engine: moves the bytes of one remote file into
//! `<partial_dir>/<file_name>.part`, resumably and verifiably, and knows
//! nothing about Redis or PostgreSQL.
//!
//! A [`Downloader`] holds one HTTP client, the limits (files in flight,
//! connections in flight, an optional process-wide [`BandwidthLimiter`]) and
//! the clock. [`Downloader::fetch`] takes a [`FileJob`] whose URLs come from
//! a [`UrlSource`] (asked again before a URL expires and after COS says it
//! has) and returns a [`FetchedFile`]: complete, fsynced, with its SHA-256,
//! CRC-64/XZ and archive content check. Publishing the file is the store's job.
//!
//! How a file is fetched:
//! - **Plan**: a valid sidecar for the same backup, name and size means
//!   resume from its trusted offsets (see [`sidecar`]); anything else means
//!   start over. The part file is allocated at full size up front. Files of
//!   at least `segment_threshold` bytes are cut into pieces that several
//!   connections take in file order; smaller ones are one stream. How many
//!   connections is measured while the file downloads (see `adaptive.rs`),
//!   at most `segments`.
//! - **Free space** is checked before the first byte: the bytes not yet
//!   allocated to the part file (none for a part file an earlier run
//!   preallocated) against the free figure less what other files in
//!   flight have yet to allocate (see [`space`]).
//! - **Each response is checked** before its body is kept (strict 206 and
//!   `Content-Range`, ETag/CRC identity, `If-Match` on every ranged request
//!   once the ETag is known). A 200 to a ranged request, a 412 or a 416
//!   start the file over (the 200's body is used as the new start). A body
//!   that runs past the announced size fails the file, never truncated
//!   into a "complete" one. Redirects are followed only to https (or
//!   allowed http) and carry no credential (see [`Downloader::new`]).
//! - **Failures** (transport errors, cut bodies, 5xx, stalls) are retried
//!   from the current offset with jittered backoff; an expired URL is
//!   renewed and the transfer continues from the same offset.
//! - **Durability**: the sidecar records written offsets every
//!   `checkpoint_bytes` (what a killed process fetches again at most) and
//!   fsynced offsets after each background fsync (`sync_bytes` or
//!   `sync_interval`; what survives a power loss). A pass that starts
//!   over removes the sidecar (and fsyncs the directory) before it
//!   truncates the part file, so no sidecar ever vouches for zeroed bytes.
//! - **Memory**: received bytes wait in a process-wide pool of
//!   `buffer_size` buffers (`buffer_budget` in all); a stream that finds it
//!   empty stops reading until a writer gives a buffer back.
//! - **Hashing**: a fresh single stream hashes each buffer just before it
//!   is written; resumed and segmented files are hashed by a reader that
//!   trails the writers through the page cache, so almost nothing is left
//!   to hash when the last byte lands. The same bytes, in file order, feed
//!   the archive content check a file's name calls for
//!   ([`crate::verify::archive`]): its verdict travels in the digests, and
//!   the file is never read again for it.
//! - **A bad resume heals itself**: when bytes kept from an earlier run do
//!   not add up to the CRC COS announced, the file is fetched once more
//!   from byte 0.

mod adaptive;
mod config;
mod downloader;
mod error;
pub mod events;
mod fetch;
mod job;
mod ledger;
pub mod limiter;
mod pass;
mod plan;
mod pool;
pub mod range;
pub mod retry;
mod segmented;
pub mod sidecar;
pub mod space;
mod url;

pub use config::TransferConfig;
pub use downloader::{Downloader, MAX_REDIRECTS};
pub use error::{TransferError, UrlSourceError};
pub use events::{FileRef, ProgressEvent, RestartReason};
pub use job::{discard_partial, FetchedFile, FileJob, FixedUrl, UrlSource};
pub use limiter::BandwidthLimiter;
pub use retry::RetryPolicy;
pub use sidecar::PartialPaths;
