//! One sync cycle (`report` holds what it reports, `urls` the URLs its sets
//! share): for every configured instance, list the backups, work out
//! which are due, download them, verify them, publish them, and then apply
//! retention, following the failure rules of the contract (design.md §2):
//! a failed set does not stop the others; an instance with a failure is not
//! pruned in that cycle; an authentication failure is reported as such.
//!
//! "Due" is decided in rounds ([`retention::DueRounds`]): when a set fails,
//! the sets retention keeps in its place (an older Redis set or base backup,
//! the logs after the base actually published) are fetched in the same
//! cycle.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cloud::catalog::Catalog;
use crate::cloud::error::ApiError;
use crate::config::{Config, InstanceConfig};
use crate::model::{BackupKind, InstanceMeta, RemoteBackup};
use crate::progress::Progress;
use crate::retention::{self, SetInfo};
use crate::store::{
    ContentChecks, FileRecord, LocalSet, SetToPublish, Store, StoreError, StoreLock,
};
use crate::transfer::{discard_partial, Downloader, FetchedFile, FileJob, ProgressEvent};
use crate::verify::{self, Expectations};
use tcbackup_signing::clock::Clock;

mod report;
mod urls;

pub use report::{CycleReport, Failure, InstanceReport, Published, SetError, Skipped};
use urls::{FileUrl, SetUrls};

/// Everything a cycle needs; built once per process (or per reload).
#[derive(Clone)]
pub struct SyncContext {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Lists and resolves remote backups.
    pub catalog: Catalog,
    /// The download directory.
    pub store: Arc<Store>,
    /// The transfer engine (process-wide limits).
    pub downloader: Arc<Downloader>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where progress goes.
    pub progress: Progress,
}

impl SyncContext {
    /// Run one cycle over every configured instance. `lock` is the download
    /// directory's lock, held by the caller for the whole cycle.
    pub async fn run_cycle(&self, lock: &StoreLock, cancel: &CancellationToken) -> CycleReport {
        let started = self.clock.now();
        let timer = std::time::Instant::now();
        // Leftovers of interrupted publishes and deletes (hidden, and as
        // big as a backup set) go first, before this cycle needs the space.
        if !cancel.is_cancelled() {
            self.clean_leftovers(lock).await;
        }
        let mut instances = Vec::with_capacity(self.config.instances.len());
        // Instances run one after another: the transfer engine already runs
        // files in parallel, and a serial walk keeps the API rate low.
        let mut active: Option<HashSet<(String, BackupKind, String)>> = Some(HashSet::new());
        for instance in &self.config.instances {
            if cancel.is_cancelled() {
                break;
            }
            let (report, listed) = self.sync_instance(instance, cancel).await;
            match (listed, active.as_mut()) {
                (Some(listed), Some(all)) => all.extend(listed),
                _ => active = None,
            }
            instances.push(report);
        }
        // Partial downloads of backups the API no longer lists are removed
        // after the grace period, but only when every instance was listed:
        // otherwise an unlisted instance's partials would look abandoned.
        if let Some(active) = active.filter(|_| !cancel.is_cancelled()) {
            self.clean_partials(active).await;
        }
        self.progress.finish();
        let interrupted = cancel.is_cancelled();
        CycleReport {
            started,
            elapsed: timer.elapsed(),
            instances,
            interrupted,
        }
    }

    /// Every backup of `instance` whose start lies in the lookback window
    /// before `now`, finished or not, oldest first, each with what the
    /// instance listing says about the instance (one call per instance).
    /// An unknown instance is an error (a PostgreSQL listing of an instance
    /// that does not exist is simply empty).
    pub async fn list_remote(
        &self,
        instance: &InstanceConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<RemoteBackup>, ApiError> {
        let described = self.check_instance(instance).await?;
        self.list_described(instance, &described, now).await
    }

    async fn check_instance(&self, instance: &InstanceConfig) -> Result<InstanceMeta, ApiError> {
        self.catalog
            .check_instance(
                instance.service,
                &instance.instance_id,
                Some(&instance.region),
            )
            .await
    }

    /// [`SyncContext::list_remote`] for an instance already checked.
    async fn list_described(
        &self,
        instance: &InstanceConfig,
        described: &InstanceMeta,
        now: DateTime<Utc>,
    ) -> Result<Vec<RemoteBackup>, ApiError> {
        let lookback =
            chrono::Duration::from_std(self.config.lookback).unwrap_or(chrono::Duration::days(7));
        let mut listed = self
            .catalog
            .list_backups(
                instance.service,
                &instance.instance_id,
                Some(&instance.region),
                now - lookback,
                now,
                &instance.kinds,
            )
            .await?;
        for backup in &mut listed {
            backup.meta.add_instance(described);
        }
        Ok(listed)
    }

    /// Sync one instance: list, fetch what is due, publish, prune. Also
    /// returns every backup the API listed (finished or not), or `None`
    /// when the listing failed.
    pub async fn sync_instance(
        &self,
        instance: &InstanceConfig,
        cancel: &CancellationToken,
    ) -> (
        InstanceReport,
        Option<HashSet<(String, BackupKind, String)>>,
    ) {
        let mut report = InstanceReport::new(&instance.instance_id, instance.service);
        // An unknown instance must fail loudly: a PostgreSQL listing of an
        // instance that does not exist is simply empty.
        let described = match self.check_instance(instance).await {
            Ok(described) => described,
            Err(e) => {
                report.fail(None, e.into());
                report.retention_skipped = Some("the instance could not be checked".into());
                return (report, None);
            }
        };
        let now = self.clock.now();
        let listed = match self.list_described(instance, &described, now).await {
            Ok(listed) => listed,
            Err(e) => {
                report.fail(None, e.into());
                report.retention_skipped = Some("the listing failed".into());
                return (report, None);
            }
        };
        let mut finished: Vec<&RemoteBackup> = listed
            .iter()
            .filter(|b| b.finished && instance.kinds.contains(&b.kind))
            .collect();
        report.listed = finished.len();
        // Backups tcbackup cannot fetch are listed, not fetched, and do not
        // fail the cycle; retention never sees them.
        finished.retain(|b| match b.meta.unfetchable() {
            Some(reason) => {
                report.skip(b, reason);
                false
            }
            None => true,
        });

        let local = match self
            .blocking({
                let store = self.store.clone();
                let id = instance.instance_id.clone();
                move || store.list_sets(&id)
            })
            .await
        {
            Ok(local) => local,
            Err(e) => {
                report.fail(None, e);
                report.retention_skipped = Some("the local sets could not be listed".into());
                return (report, None);
            }
        };

        let candidates: Vec<&RemoteBackup> = finished
            .iter()
            .copied()
            .filter(|b| local.find(b.kind, &b.backup_id).is_none())
            .collect();
        let infos: Vec<SetInfo> = candidates
            .iter()
            .map(|b| SetInfo {
                id: b.backup_id.clone(),
                kind: b.kind,
                start: b.start,
                finish: b.finish,
                manual: b.meta.is_manual(),
            })
            .collect();
        // Due in rounds: the first judges every candidate as if all would
        // be fetched; when one fails, the next round judges the rest against
        // what was really published, so a failed newer backup never costs
        // the older ones (or the logs after the older base) that retention
        // keeps in its place.
        let mut rounds =
            retention::DueRounds::new(infos, local.set_infos(), instance.retention.clone(), now);
        let mut due = rounds.next_round();
        tracing::info!(instance = %instance.instance_id, listed = report.listed, published_before = local.sets.len(), due = due.len(), "instance listed");
        let width = self.config.transfer.concurrency.get();
        // Whether the rounds ran until nothing more was due.
        let mut settled = true;
        while !due.is_empty() {
            report.due += due.len();
            // Sets run concurrently; the downloader bounds files and connections.
            let results: Vec<(usize, Result<Published, SetError>)> = stream::iter(due)
                .map(|index| {
                    let backup = candidates[index];
                    async move { (index, self.fetch_set(instance, backup, cancel).await) }
                })
                .buffer_unordered(width)
                .collect()
                .await;
            let mut refused = false;
            for (index, result) in results {
                match result {
                    Ok(published) => {
                        rounds.published(index);
                        report.published.push(published);
                    }
                    Err(SetError::Cancelled) => {}
                    Err(e) => {
                        // Another candidate would be refused the same way.
                        refused |= e.is_auth();
                        report.fail(Some(candidates[index]), e);
                    }
                }
            }
            if refused || cancel.is_cancelled() {
                settled = false;
                break;
            }
            due = rounds.next_round();
            for &index in &due {
                let b = candidates[index];
                tracing::info!(instance = %instance.instance_id, backup_id = %b.backup_id, kind = %b.kind, "now due: a backup of this instance failed in this cycle, and retention keeps this one in its place");
            }
        }
        if settled {
            for index in rounds.untried() {
                let b = candidates[index];
                tracing::info!(instance = %instance.instance_id, backup_id = %b.backup_id, kind = %b.kind, "not fetched: retention would not keep it");
            }
        }

        if cancel.is_cancelled() {
            report.retention_skipped = Some("the run was interrupted".into());
            self.count_on_disk(instance, &mut report).await;
        } else if !report.ok() {
            report.retention_skipped =
                Some("a backup of this instance failed in this cycle".into());
            self.count_on_disk(instance, &mut report).await;
        } else {
            self.apply_retention(instance, &mut report).await;
        }
        let active = listed
            .iter()
            .map(|b| (instance.instance_id.clone(), b.kind, b.backup_id.clone()))
            .collect();
        (report, Some(active))
    }

    /// Plan retention over the published sets, apply it, and count what is
    /// left on disk, from one listing.
    async fn apply_retention(&self, instance: &InstanceConfig, report: &mut InstanceReport) {
        let store = self.store.clone();
        let id = instance.instance_id.clone();
        let policy = instance.retention.clone();
        let now = self.clock.now();
        let result = self
            .blocking(move || {
                let listing = store.list_sets(&id)?;
                let plan = retention::plan(&listing.set_infos(), &policy, now);
                Ok::<_, StoreError>((listing, store.apply_plan(&id, &plan)))
            })
            .await;
        let (listing, applied) = match result {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(instance = %instance.instance_id, "retention not applied: {e}");
                report.retention_skipped = Some(e.to_string());
                return;
            }
        };
        match applied {
            Ok(applied) => {
                for id in &applied.deleted {
                    tracing::info!(instance = %instance.instance_id, set = %id, "pruned by retention");
                }
                for (id, error) in &applied.failed {
                    tracing::warn!(instance = %instance.instance_id, set = %id, "could not delete: {error}");
                }
                report.pruned = applied.deleted;
            }
            Err(refused) => {
                tracing::warn!(instance = %instance.instance_id, "retention not applied: {refused}");
                report.retention_skipped = Some(refused.to_string());
            }
        }
        let left = listing
            .sets
            .iter()
            .filter(|set| !report.pruned.contains(&set.dir_name));
        report.sets_on_disk = left.clone().count();
        report.newest_set_start = left.clone().map(|set| set.manifest.start).max();
        report.bytes_on_disk = left.map(|set| set.manifest.total_size()).sum();
    }

    /// Remove `.tmp-*` and `.deleting-*` leftovers. Safe only because the
    /// caller holds the store lock: while we hold it, no other tcbackup
    /// process is live in this directory, so no such name there is another
    /// process's work in progress (and the store skips this process's own).
    async fn clean_leftovers(&self, lock: &StoreLock) {
        let store = self.store.clone();
        let held = lock.clone();
        match self.blocking(move || store.clean_leftovers(&held)).await {
            Ok(removed) => {
                for path in &removed {
                    tracing::info!(leftover = %path.display(), "removed the leftover of an interrupted publish or delete");
                }
            }
            Err(e) => {
                tracing::warn!("leftovers of interrupted publishes and deletes not cleaned: {e}")
            }
        }
    }

    async fn clean_partials(&self, active: HashSet<(String, BackupKind, String)>) {
        let store = self.store.clone();
        let grace = self.config.partial_grace;
        let now = self.clock.now();
        match self
            .blocking(move || store.clean_partials(&active, grace, now))
            .await
        {
            Ok(removed) => {
                for r in &removed {
                    tracing::info!(partial = %r.path.display(), bytes = r.bytes, "removed partial download: {}", r.reason);
                }
            }
            Err(e) => tracing::warn!("partial downloads not cleaned: {e}"),
        }
    }

    async fn count_on_disk(&self, instance: &InstanceConfig, report: &mut InstanceReport) {
        let store = self.store.clone();
        let id = instance.instance_id.clone();
        if let Ok(listing) = self.blocking(move || store.list_sets(&id)).await {
            report.sets_on_disk = listing.sets.len();
            report.bytes_on_disk = listing.sets.iter().map(|s| s.manifest.total_size()).sum();
            report.newest_set_start = listing.sets.iter().map(|s| s.manifest.start).max();
        }
    }

    /// Download, verify and publish one set.
    async fn fetch_set(
        &self,
        instance: &InstanceConfig,
        backup: &RemoteBackup,
        cancel: &CancellationToken,
    ) -> Result<Published, SetError> {
        if cancel.is_cancelled() {
            return Err(SetError::Cancelled);
        }
        let lifetime = u32::from(self.config.transfer.url_lifetime_hours);
        // Fresh URLs, resolved just before the transfer; the catalog has
        // already refused any file name that is not a plain name.
        let files = self
            .catalog
            .resolve(backup, lifetime, instance.network)
            .await?;
        if files.is_empty() {
            return Err(SetError::Refused(format!(
                "the API listed no file for backup {}",
                backup.backup_id
            )));
        }
        // An encrypted backup's files are ciphertext: its detail (and key)
        // is asked for now, fresh, like the URLs.
        let encryption = if backup.encrypted {
            self.catalog.encryption(backup).await?
        } else {
            None
        };
        if let Some(e) = &encryption {
            tracing::info!(instance = %instance.instance_id, backup_id = %backup.backup_id, algorithm = %e.algorithm, kms_key_id = %e.kms_key_id, key_held = e.key_held(), "encrypted backup: its files are ciphertext, so the RDB structure check is skipped (size, CRC-64 and SHA-256 still apply)");
            if !e.key_held() {
                tracing::warn!(instance = %instance.instance_id, backup_id = %backup.backup_id, kms_key_id = %e.kms_key_id, "encrypted backup without a DecryptKey from the API (a key held by KMS?): it is published without its key, and this copy cannot be decrypted unless the key is kept elsewhere");
            }
        }
        let partial_dir = self
            .blocking({
                let store = self.store.clone();
                let (id, kind, bid) = (
                    instance.instance_id.clone(),
                    backup.kind,
                    backup.backup_id.clone(),
                );
                move || store.partial_dir(&id, kind, &bid)
            })
            .await?;
        let urls = Arc::new(SetUrls::new(
            self.catalog.clone(),
            backup.clone(),
            lifetime,
            instance.network,
            &files,
        ));

        let fetches = files.iter().map(|file| {
            let job = FileJob {
                backup_id: backup.backup_id.clone(),
                file_name: file.name.clone(),
                expected_size: file.expected_size,
                partial_dir: partial_dir.clone(),
                url: Arc::new(FileUrl {
                    set: urls.clone(),
                    file_name: file.name.clone(),
                }),
            };
            self.fetch_file(job, cancel)
        });
        let fetched: Vec<Result<FetchedFile, SetError>> = futures::future::join_all(fetches).await;
        if cancel.is_cancelled() {
            return Err(SetError::Cancelled);
        }
        let mut ok = Vec::with_capacity(fetched.len());
        for result in fetched {
            ok.push(result.map_err(|e| e.over_network(instance.network))?);
        }

        // Verify every file before anything is published.
        let mut records = Vec::with_capacity(ok.len());
        for (file, got) in files.iter().zip(&ok) {
            let expect = Expectations {
                size: file.expected_size,
                server_crc64: got.server_crc64,
                // Ciphertext has no RDB structure to check.
                rdb: backup.kind == BackupKind::Redis && encryption.is_none(),
            };
            let path = got.path.clone();
            let digests = got.digests();
            let verified = tokio::task::spawn_blocking(move || {
                verify::verify_with_digests(&path, &digests, &expect)
            })
            .await
            .map_err(|e| SetError::Task(e.to_string()))?;
            match verified {
                Ok(v) => {
                    let is_pg = backup.kind != BackupKind::Redis;
                    let content_checks = ContentChecks::from_check(&v.content, is_pg);
                    if let Some(checks) = content_checks.as_ref().filter(|c| !c.skipped.is_empty())
                    {
                        let skipped = checks.skipped.join(", ");
                        match &checks.format {
                            None => tracing::warn!(
                                file = %file.name, %skipped,
                                "no archive format known for this file name: its content checks were skipped"
                            ),
                            Some(format) => tracing::warn!(
                                file = %file.name, %format, %skipped,
                                "the archive carries no data for some content checks: they were skipped"
                            ),
                        }
                    }
                    records.push((
                        got.path.clone(),
                        FileRecord {
                            name: file.name.clone(),
                            size: v.size,
                            sha256: v.sha256_hex(),
                            crc64: v.crc64,
                            crc64_checked_against_cos: got.server_crc64.is_some(),
                            content_checks,
                        },
                    ));
                }
                Err(source) => {
                    // A file that fails verification must not be resumed:
                    // discard it so the next run fetches it afresh.
                    let dir = partial_dir.clone();
                    let name = file.name.clone();
                    let discarded =
                        tokio::task::spawn_blocking(move || discard_partial(&dir, &name)).await;
                    if let Ok(Err(e)) = discarded {
                        tracing::warn!(file = %file.name, "could not discard the failed download: {e}");
                    }
                    return Err(SetError::Verify {
                        file: file.name.clone(),
                        source,
                    });
                }
            }
        }

        let set = SetToPublish {
            instance_id: instance.instance_id.clone(),
            region: backup.region.clone(),
            kind: backup.kind,
            backup_id: backup.backup_id.clone(),
            start: backup.start,
            finish: backup.finish,
            files: records,
            encryption: encryption.clone(),
            meta: backup.meta.clone(),
        };
        let local: LocalSet = self
            .blocking({
                let store = self.store.clone();
                move || store.publish(&set)
            })
            .await?;
        // Publishing moved the files and removed the partial directory with
        // their sidecars.
        let published = Published {
            kind: backup.kind,
            backup_id: backup.backup_id.clone(),
            dir: local.dir.clone(),
            bytes: local.manifest.total_size(),
            files: local.manifest.files.len(),
        };
        let encrypted = match &encryption {
            None => "",
            Some(e) if e.key_held() => ", encrypted, key kept",
            Some(_) => ", encrypted, NO key held",
        };
        self.progress.println(&format!(
            "published {} {} ({} file(s), {}{encrypted}) -> {}",
            backup.kind,
            backup.backup_id,
            published.files,
            crate::progress::human_bytes(published.bytes),
            published.dir.display()
        ));
        Ok(published)
    }

    async fn fetch_file(
        &self,
        job: FileJob,
        cancel: &CancellationToken,
    ) -> Result<FetchedFile, SetError> {
        let name = job.file_name.clone();
        let (tx, rx) = mpsc::channel(64);
        let shown = tokio::spawn(show_progress(rx, self.progress.clone()));
        let result = self.downloader.fetch(job, tx, cancel.clone()).await;
        let _ = shown.await;
        result.map_err(|source| {
            if source.is_cancelled() {
                SetError::Cancelled
            } else {
                SetError::Transfer { file: name, source }
            }
        })
    }

    async fn blocking<T, E, F>(&self, f: F) -> Result<T, SetError>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<SetError> + Send + 'static,
    {
        match tokio::task::spawn_blocking(f).await {
            Ok(result) => result.map_err(Into::into),
            Err(e) => Err(SetError::Task(e.to_string())),
        }
    }
}

/// Feed transfer events into the progress display until the sender is gone.
async fn show_progress(mut rx: mpsc::Receiver<ProgressEvent>, progress: Progress) {
    while let Some(event) = rx.recv().await {
        match event {
            ProgressEvent::Started {
                file,
                total,
                resumed_from,
            } => progress.file_started(&file.file_name, total, resumed_from),
            ProgressEvent::Bytes { file, n } => progress.advance(&file.file_name, n),
            ProgressEvent::Restarted { file, reason } => {
                progress.restart(&file.file_name, &format!("starting over: {reason}"))
            }
            ProgressEvent::UrlRefreshed { file } => {
                progress.note(&file.file_name, "download URL renewed")
            }
            ProgressEvent::Retrying {
                file,
                attempt,
                error,
            } => progress.note(&file.file_name, &format!("retry {attempt}: {error}")),
            ProgressEvent::Finished { file } => progress.file_finished(&file.file_name),
        }
    }
}
