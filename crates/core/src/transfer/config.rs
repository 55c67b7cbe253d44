//! The transfer engine's tuning: connections, pieces, checkpoints, buffers,
//! timeouts, retries. Plain data; `Default` gives the production values.

use std::num::NonZeroU64;
use std::time::Duration;

use super::retry::RetryPolicy;
use crate::private_files::FileModes;

/// Tuning of the transfer engine. `Default` gives the production values.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// The most connections for one large file. How many it really uses
    /// is found while it downloads (see `transfer::adaptive`): a few at
    /// first, more while the total rate keeps rising.
    pub segments: usize,
    /// How often the adaptive connection count measures the rate of a
    /// segmented file and adjusts.
    pub adapt_interval: Duration,
    /// Files of at least this many bytes are fetched over up to `segments`
    /// connections.
    pub segment_threshold: u64,
    /// A large file is cut into pieces of about this size (at least
    /// `segments` of them, so every allowed connection has one), fetched
    /// in file order by the connections.
    pub piece_size: u64,
    /// Files in flight at once.
    pub max_files: usize,
    /// HTTP connections in flight at once, over all files.
    pub max_connections: usize,
    /// Free space that must remain after a file is complete.
    pub free_space_margin: u64,
    /// A stream that receives nothing for this long is retried.
    pub idle_timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Retries and backoff.
    pub retry: RetryPolicy,
    /// Renew a URL this long before it expires (at most half its lifetime).
    pub expiry_margin: Duration,
    /// Accept `http://` download URLs (emulators only).
    pub allow_http: bool,
    /// Process-wide bandwidth cap in bytes per second.
    pub bandwidth_limit: Option<NonZeroU64>,
    /// Record written offsets in the sidecar every this many bytes: what a
    /// killed process fetches again at most, per stream.
    pub checkpoint_bytes: u64,
    /// fsync (in the background) every this many bytes...
    pub sync_bytes: u64,
    /// ...or this often while bytes arrive. Only fsynced bytes are trusted
    /// after a power loss or kernel crash.
    pub sync_interval: Duration,
    /// Bytes per receive buffer (one `pwrite` each).
    pub buffer_size: usize,
    /// Memory for received bytes not yet written, over all streams of the
    /// process, in `buffer_size` buffers. A stream that finds it spent stops
    /// reading (TCP pushes back) until a writer gives a buffer back.
    pub buffer_budget: usize,
    /// Restarts from byte 0 (object replaced, range ignored) before giving up.
    pub max_restarts: u32,
    /// Consecutive "URL expired" answers (fresh URLs each time) before giving up.
    pub max_url_refreshes: u32,
    /// The modes of the partial directory, part files and sidecars (a part
    /// file keeps its mode when the store publishes it).
    pub modes: FileModes,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            segments: 16,
            adapt_interval: Duration::from_millis(500),
            segment_threshold: 64 * 1024 * 1024,
            piece_size: 32 * 1024 * 1024,
            max_files: 4,
            max_connections: 16,
            free_space_margin: 256 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            expiry_margin: Duration::from_secs(600),
            allow_http: false,
            bandwidth_limit: None,
            checkpoint_bytes: 8 * 1024 * 1024,
            sync_bytes: 128 * 1024 * 1024,
            sync_interval: Duration::from_secs(1),
            buffer_size: 512 * 1024,
            buffer_budget: 16 * 1024 * 1024,
            max_restarts: 3,
            max_url_refreshes: 3,
            modes: FileModes::PRIVATE,
        }
    }
}
