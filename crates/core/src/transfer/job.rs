//! What the transfer engine is given and gives back: a [`FileJob`] (one
//! remote file, where its URLs come from, where its part file goes) and a
//! [`FetchedFile`] (complete, fsynced, with its digests).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;

use super::error::UrlSourceError;
use super::sidecar::{self, PartialPaths};
use crate::verify::archive::ContentCheck;
use crate::verify::rdb::{RdbError, RdbSummary};
use crate::verify::Digests;
use tcbackup_signing::secret::SignedUrl;

/// Where a file's download URLs come from. The sync cycle implements it by
/// asking the cloud API again; it is called for the first URL, before the
/// current one expires, and after COS reports it expired.
pub trait UrlSource: Send + Sync {
    /// A freshly signed URL for the file.
    fn fresh_url(&self) -> BoxFuture<'_, Result<SignedUrl, UrlSourceError>>;
}

/// A URL source that always hands out the same URL (benchmarks, one-off
/// downloads of a URL that outlives the transfer).
#[derive(Debug, Clone)]
pub struct FixedUrl(pub SignedUrl);

impl UrlSource for FixedUrl {
    fn fresh_url(&self) -> BoxFuture<'_, Result<SignedUrl, UrlSourceError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// One file to fetch.
#[derive(Clone)]
pub struct FileJob {
    /// The backup the file belongs to (recorded in the sidecar).
    pub backup_id: String,
    /// The file name as the API gave it; must be a plain name.
    pub file_name: String,
    /// The size the API announced; the object must have exactly this size.
    pub expected_size: u64,
    /// The private directory for `<file_name>.part` and its sidecar.
    pub partial_dir: PathBuf,
    /// Where URLs come from.
    pub url: Arc<dyn UrlSource>,
}

impl std::fmt::Debug for FileJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileJob")
            .field("backup_id", &self.backup_id)
            .field("file_name", &self.file_name)
            .field("expected_size", &self.expected_size)
            .field("partial_dir", &self.partial_dir)
            .finish_non_exhaustive()
    }
}

/// A completely downloaded, fsynced partial file, ready for verification
/// and publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFile {
    /// `<partial_dir>/<file_name>.part`.
    pub path: PathBuf,
    /// Its sidecar; remove it (see [`FetchedFile::remove_sidecar`]) once the
    /// file is published.
    pub sidecar: PathBuf,
    /// Size in bytes (equal to the announced size).
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// CRC-64/XZ of the content, computed locally.
    pub crc64: u64,
    /// CRC-64/XZ COS announced (`x-cos-hash-crc64ecma`), if it did.
    pub server_crc64: Option<u64>,
    /// The object's ETag.
    pub etag: Option<String>,
    /// Bytes that were already present from an earlier run.
    pub resumed_from: u64,
    /// Times the file started over from byte 0.
    pub restarts: u32,
    /// What the archive content check, run on the same bytes as the
    /// digests, found.
    pub content: ContentCheck,
    /// What the RDB structure check, run on the same bytes, found (for a
    /// `*.rdb` name; `None` otherwise).
    pub rdb: Option<Result<RdbSummary, RdbError>>,
}

impl FetchedFile {
    /// The digests, for [`crate::verify::verify_with_digests`].
    pub fn digests(&self) -> Digests {
        Digests {
            size: self.size,
            sha256: self.sha256,
            crc64: self.crc64,
            content: self.content,
            rdb: self.rdb,
        }
    }

    /// Delete the sidecar (after the part file was published or discarded).
    pub fn remove_sidecar(&self) -> std::io::Result<()> {
        sidecar::remove_if_exists(&self.sidecar)
    }
}

/// Delete a partial file and its sidecar (after a verification failure, so
/// the next run starts over). Blocking.
pub fn discard_partial(partial_dir: &Path, file_name: &str) -> std::io::Result<()> {
    let paths = PartialPaths::new(partial_dir, file_name);
    sidecar::remove(&paths)?;
    sidecar::remove_if_exists(&paths.part)
}
