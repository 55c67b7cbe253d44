//! Download URLs shared by the files of one set: when one shard's URL nears
//! expiry, the set is resolved once and its other shards reuse the fresh
//! URLs instead of calling the API once each.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::cloud::catalog::Catalog;
use crate::model::{Network, RemoteBackup, ResolvedFile};
use crate::transfer::{UrlSource, UrlSourceError};
use tcbackup_signing::secret::SignedUrl;

/// The latest download URLs of one set, shared by its files so that shards
/// renewing at the same time make one API call, not one each.
pub(super) struct SetUrls {
    catalog: Catalog,
    backup: RemoteBackup,
    lifetime_hours: u32,
    network: Network,
    state: tokio::sync::Mutex<UrlState>,
}

struct UrlState {
    /// The newest resolution, by file name.
    latest: Vec<ResolvedFile>,
    /// URLs already handed out (a file asking again needs a newer one).
    handed_out: HashSet<String>,
}

impl SetUrls {
    pub(super) fn new(
        catalog: Catalog,
        backup: RemoteBackup,
        lifetime_hours: u32,
        network: Network,
        first: &[ResolvedFile],
    ) -> Self {
        Self {
            catalog,
            backup,
            lifetime_hours,
            network,
            state: tokio::sync::Mutex::new(UrlState {
                latest: first.to_vec(),
                handed_out: HashSet::new(),
            }),
        }
    }

    async fn url_for(&self, file_name: &str) -> Result<SignedUrl, UrlSourceError> {
        let mut state = self.state.lock().await;
        let cached = state
            .latest
            .iter()
            .find(|f| f.name == file_name)
            .map(|f| f.url.clone());
        if let Some(url) = cached {
            if state.handed_out.insert(url.expose().to_string()) {
                return Ok(url);
            }
        }
        let fresh = self
            .catalog
            .resolve(&self.backup, self.lifetime_hours, self.network)
            .await
            .map_err(|e| {
                if e.is_retryable() {
                    UrlSourceError::retryable(e)
                } else {
                    UrlSourceError::fatal(e)
                }
            })?;
        let url = fresh
            .iter()
            .find(|f| f.name == file_name)
            .map(|f| f.url.clone())
            .ok_or_else(|| {
                UrlSourceError::fatal(format!(
                    "the API no longer lists file {file_name:?} of backup {}",
                    self.backup.backup_id
                ))
            })?;
        state.handed_out.insert(url.expose().to_string());
        state.latest = fresh;
        Ok(url)
    }
}

/// One file's view of its set's URLs.
pub(super) struct FileUrl {
    pub(super) set: Arc<SetUrls>,
    pub(super) file_name: String,
}

impl UrlSource for FileUrl {
    fn fresh_url(&self) -> BoxFuture<'_, Result<SignedUrl, UrlSourceError>> {
        Box::pin(self.set.url_for(&self.file_name))
    }
}
