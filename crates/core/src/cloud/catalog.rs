//! `Catalog`: the facade the sync cycle uses. It checks that configured
//! instances exist, lists their backups of both services as
//! `model::RemoteBackup`, resolves a backup into files with fresh
//! presigned URLs (`model::ResolvedFile`) for the network they are
//! downloaded over, and reads the account's download policy.

use chrono::{DateTime, Utc};

use crate::cloud::client::ApiClient;
use crate::cloud::error::ApiError;
use crate::cloud::postgres::{self, PgBackup, PgBackupType};
use crate::cloud::redis::{self, RedisBackupSet};
use crate::cloud::restriction::{self, DownloadPolicy};
use crate::encryption::Encryption;
use crate::meta::non_empty;
use crate::model::{
    check_file_name, BackupKind, BackupMeta, BackupMode, InstanceMeta, Network, RemoteBackup,
    RemoteFile, ResolvedFile, Service,
};
use tcbackup_signing::secret::SignedUrl;
use tcbackup_signing::times::{ApiTimeZone, TimeError};

/// Error codes meaning "no such instance" (reference §6.6, §7.8).
const INSTANCE_NOT_FOUND_CODES: &[&str] = &[
    "ResourceNotFound.InstanceNotExists",
    "ResourceNotFound.InstanceNotFoundError",
    "InvalidParameterValue.InstanceNotExist",
];

/// Lists and resolves backups of both services.
#[derive(Debug, Clone)]
pub struct Catalog {
    client: ApiClient,
    tz: ApiTimeZone,
    redis_page: u64,
    pg_page: u64,
}

impl Catalog {
    /// A catalog calling through `client`, reading API times at `tz`.
    pub fn new(client: ApiClient, tz: ApiTimeZone) -> Self {
        Self {
            client,
            tz,
            redis_page: redis::BACKUPS_LIMIT,
            pg_page: postgres::LIMIT,
        }
    }

    /// Ask for backup listings in pages of these sizes (clamped to the
    /// documented 1..=100) instead of the maximum. Only tests and the
    /// emulator demo want smaller pages.
    pub fn with_page_sizes(mut self, redis_page: u64, pg_page: u64) -> Self {
        self.redis_page = redis_page.clamp(1, redis::BACKUPS_LIMIT);
        self.pg_page = pg_page.clamp(1, postgres::LIMIT);
        self
    }

    /// The client in use.
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    /// Check that `instance_id` exists (and the credentials can see it),
    /// and return what the instance listing says about it (name, engine
    /// version), which each of its backups' metadata repeats. An unknown
    /// instance is `ApiError::InstanceNotFound`.
    pub async fn check_instance(
        &self,
        service: Service,
        instance_id: &str,
        region: Option<&str>,
    ) -> Result<InstanceMeta, ApiError> {
        let found = match service {
            Service::Redis => redis::describe_instance(&self.client, region, instance_id)
                .await
                .map(|i| {
                    i.map(|i| InstanceMeta {
                        name: non_empty(&i.instance_name),
                        redis_version: non_empty(&i.current_redis_version),
                        ..InstanceMeta::default()
                    })
                }),
            Service::Postgres => postgres::describe_instance(&self.client, region, instance_id)
                .await
                .map(|i| {
                    i.map(|i| InstanceMeta {
                        name: non_empty(&i.db_instance_name),
                        db_version: non_empty(&i.db_version),
                        db_major_version: non_empty(&i.db_major_version),
                        db_kernel_version: non_empty(&i.db_kernel_version),
                        ..InstanceMeta::default()
                    })
                }),
        }
        .map_err(|e| not_found(e, service, instance_id, region))?;
        found.ok_or_else(|| instance_not_found(service, instance_id, region))
    }

    /// Every backup of the instance in the window, finished or not (see
    /// `RemoteBackup::finished`), oldest first. Redis selects on start time
    /// (`[since, now]`, split into 30-day windows); PostgreSQL selects on
    /// finish time, for each kind in `pg_kinds` (`PgBase`, `PgLog`; others
    /// are ignored). PostgreSQL backups carry their one file; Redis backups
    /// none until `resolve`.
    pub async fn list_backups(
        &self,
        service: Service,
        instance_id: &str,
        region: Option<&str>,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        pg_kinds: &[BackupKind],
    ) -> Result<Vec<RemoteBackup>, ApiError> {
        let mut backups = match service {
            Service::Redis => {
                let sets = redis::list_backups(
                    &self.client,
                    region,
                    instance_id,
                    since,
                    now,
                    self.tz,
                    self.redis_page,
                )
                .await
                .map_err(|e| not_found(e, service, instance_id, region))?;
                sets.iter()
                    .map(|set| self.redis_backup(set, instance_id, region, now))
                    .collect::<Result<Vec<_>, _>>()?
            }
            Service::Postgres => {
                let mut out = Vec::new();
                for (kind, api_kind) in PG_KINDS {
                    if !pg_kinds.contains(&kind) {
                        continue;
                    }
                    let list = postgres::list_backups(
                        &self.client,
                        region,
                        instance_id,
                        api_kind,
                        since,
                        now,
                        self.tz,
                        self.pg_page,
                    )
                    .await
                    .map_err(|e| not_found(e, service, instance_id, region))?;
                    for backup in &list {
                        out.push(self.pg_backup(backup, kind, api_kind, instance_id, region)?);
                    }
                }
                out
            }
        };
        backups.sort_by(|a, b| (a.start, &a.backup_id).cmp(&(b.start, &b.backup_id)));
        Ok(backups)
    }

    /// `list_backups` without the unfinished ones: what may be fetched.
    pub async fn list_finished_backups(
        &self,
        service: Service,
        instance_id: &str,
        region: Option<&str>,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        pg_kinds: &[BackupKind],
    ) -> Result<Vec<RemoteBackup>, ApiError> {
        let mut all = self
            .list_backups(service, instance_id, region, since, now, pg_kinds)
            .await?;
        all.retain(|b| b.finished);
        Ok(all)
    }

    /// The account's download policy of `service` in `region`.
    pub async fn download_policy(
        &self,
        service: Service,
        region: Option<&str>,
    ) -> Result<DownloadPolicy, ApiError> {
        restriction::download_policy(&self.client, service, region).await
    }

    /// Fresh download URLs for every file of `backup` that work over
    /// `network`: one per shard for Redis (a `FileSize` of 0 fails the
    /// backup; over the intranet each file's `InnerDownloadUrl`), the one
    /// file for PostgreSQL with a link valid `url_lifetime_hours` (0..=36).
    /// A public download asks for no restriction, so the account's own
    /// policy applies.
    pub async fn resolve(
        &self,
        backup: &RemoteBackup,
        url_lifetime_hours: u32,
        network: Network,
    ) -> Result<Vec<ResolvedFile>, ApiError> {
        let region = Some(backup.region.as_str()).filter(|r| !r.is_empty());
        match pg_api_kind(backup.kind) {
            None => self.resolve_redis(backup, region, network).await,
            Some(api_kind) => {
                self.resolve_pg(backup, api_kind, region, url_lifetime_hours, network)
                    .await
            }
        }
    }

    /// How `backup` is encrypted, asked fresh from `DescribeBackupDetail`
    /// (at fetch time, like the URLs): `None` when the detail says it is
    /// not encrypted (or for PostgreSQL, which has no such call). An empty
    /// `DecryptKey` is a key tcbackup does not get (one held by KMS).
    pub async fn encryption(&self, backup: &RemoteBackup) -> Result<Option<Encryption>, ApiError> {
        if backup.kind != BackupKind::Redis {
            return Ok(None);
        }
        let region = Some(backup.region.as_str()).filter(|r| !r.is_empty());
        let detail =
            redis::backup_detail(&self.client, region, &backup.instance_id, &backup.backup_id)
                .await
                .map_err(|e| not_found(e, Service::Redis, &backup.instance_id, region))?;
        tracing::debug!(action = "DescribeBackupDetail", backup_id = %backup.backup_id, encrypted = detail.encrypted, key_algorithm = %detail.key_algorithm, "backup detail");
        if !detail.encrypted {
            return Ok(None);
        }
        let key = Some(detail.decrypt_key).filter(|k| !k.is_empty());
        Ok(Some(Encryption {
            algorithm: detail.key_algorithm,
            kms_key_id: detail.kms_key_id,
            key,
        }))
    }

    async fn resolve_pg(
        &self,
        backup: &RemoteBackup,
        api_kind: PgBackupType,
        region: Option<&str>,
        url_lifetime_hours: u32,
        network: Network,
    ) -> Result<Vec<ResolvedFile>, ApiError> {
        let action = "DescribeBackupDownloadURL";
        let [file] = backup.files.as_slice() else {
            return Err(ApiError::BadResponse {
                action: api_kind.list_action().to_string(),
                what: format!(
                    "{} files for postgres backup {} (expected exactly one)",
                    backup.files.len(),
                    backup.backup_id
                ),
            });
        };
        check_file_name(&file.name).map_err(|e| ApiError::BadResponse {
            action: api_kind.list_action().to_string(),
            what: e.to_string(),
        })?;
        let url = postgres::download_url(
            &self.client,
            region,
            &backup.instance_id,
            api_kind,
            &backup.backup_id,
            url_lifetime_hours,
            network,
        )
        .await
        .map_err(|e| not_found(e, Service::Postgres, &backup.instance_id, region))?;
        tracing::debug!(action, backup_id = %backup.backup_id, file = %file.name, %network, "resolved download url");
        Ok(vec![ResolvedFile {
            name: file.name.clone(),
            expected_size: file.expected_size,
            url: SignedUrl::new(url),
        }])
    }

    async fn resolve_redis(
        &self,
        backup: &RemoteBackup,
        region: Option<&str>,
        network: Network,
    ) -> Result<Vec<ResolvedFile>, ApiError> {
        let action = "DescribeBackupUrl";
        let bad = |what: String| ApiError::BadResponse {
            action: action.to_string(),
            what,
        };
        let infos = redis::backup_urls(
            &self.client,
            region,
            &backup.instance_id,
            &backup.backup_id,
            network,
        )
        .await
        .map_err(|e| not_found(e, Service::Redis, &backup.instance_id, region))?;
        if infos.is_empty() {
            return Err(bad(format!(
                "no BackupInfos for backup {}",
                backup.backup_id
            )));
        }
        let mut files: Vec<ResolvedFile> = Vec::with_capacity(infos.len());
        for info in infos {
            check_file_name(&info.file_name).map_err(|e| bad(e.to_string()))?;
            if info.file_size == 0 {
                return Err(bad(format!(
                    "file {} of backup {} with FileSize 0, which the api uses for an invalid file",
                    info.file_name, backup.backup_id
                )));
            }
            let url = info.url_for(network);
            if url.trim().is_empty() {
                return Err(bad(match network {
                    Network::Public => format!(
                        "no DownloadUrl for file {} of backup {}",
                        info.file_name, backup.backup_id
                    ),
                    Network::Intranet => format!(
                        "no InnerDownloadUrl for file {} of backup {}, so it cannot be downloaded over the intranet; set network = \"public\" for instance {} (its [[redis]] table or [transfer]) to download it over the internet",
                        info.file_name, backup.backup_id, backup.instance_id
                    ),
                }));
            }
            if files.iter().any(|f| f.name == info.file_name) {
                return Err(bad(format!(
                    "file name {} twice in backup {}",
                    info.file_name, backup.backup_id
                )));
            }
            let url = SignedUrl::new(url.to_string());
            files.push(ResolvedFile {
                name: info.file_name,
                expected_size: info.file_size,
                url,
            });
        }
        tracing::debug!(action, backup_id = %backup.backup_id, files = files.len(), %network, "resolved download urls");
        Ok(files)
    }

    /// Reads the time fields of item `item` of an `action` listing.
    fn times<'a>(&self, action: &'a str, item: &'a str) -> ItemTimes<'a> {
        ItemTimes {
            tz: self.tz,
            action,
            item,
        }
    }

    fn redis_backup(
        &self,
        set: &RedisBackupSet,
        instance_id: &str,
        region: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<RemoteBackup, ApiError> {
        let times = self.times("DescribeInstanceBackups", &set.backup_id);
        let start = times.required("StartTime", &set.start_time)?;
        let finish = times.optional("EndTime", &set.end_time)?;
        let expire = times.optional("ExpireTime", &set.expire_time)?;
        // An expired backup's files are gone, whatever its status says.
        let finished = set.is_finished() && expire.is_none_or(|at| at > now);
        Ok(RemoteBackup {
            instance_id: instance_id.to_string(),
            region: region
                .map(str::to_string)
                .unwrap_or_else(|| set.region.clone()),
            backup_id: set.backup_id.clone(),
            kind: BackupKind::Redis,
            start,
            finish,
            expire,
            finished,
            status: if set.locked == 1 {
                format!("{} (locked)", set.status)
            } else {
                set.status.to_string()
            },
            files: Vec::new(),
            encrypted: set.encrypted,
            meta: BackupMeta {
                mode: BackupMode::from_redis_backup_type(&set.backup_type),
                remark: non_empty(&set.remark),
                instance_name: non_empty(&set.instance_name),
                file_type: non_empty(&set.file_type),
                ..BackupMeta::default()
            },
        })
    }

    fn pg_backup(
        &self,
        backup: &PgBackup,
        kind: BackupKind,
        api_kind: PgBackupType,
        instance_id: &str,
        region: Option<&str>,
    ) -> Result<RemoteBackup, ApiError> {
        let times = self.times(api_kind.list_action(), &backup.id);
        let start = times.required("StartTime", &backup.start_time)?;
        let finish = times.optional("FinishTime", &backup.finish_time)?;
        let expire = times.optional("ExpireTime", &backup.expire_time)?;
        let files = if backup.name.is_empty() {
            Vec::new()
        } else {
            vec![RemoteFile {
                name: backup.name.clone(),
                expected_size: backup.size,
            }]
        };
        Ok(RemoteBackup {
            instance_id: instance_id.to_string(),
            region: region.unwrap_or_default().to_string(),
            backup_id: backup.id.clone(),
            kind,
            start,
            finish,
            expire,
            finished: backup.is_finished(),
            status: backup.state.clone(),
            files,
            encrypted: false,
            meta: BackupMeta {
                mode: BackupMode::from_pg_backup_mode(&backup.backup_mode),
                backup_method: non_empty(&backup.backup_method),
                ..BackupMeta::default()
            },
        })
    }
}

/// The time fields of one listed item, read at the API's time zone; a
/// malformed one is `ApiError::Time` naming the action, field and item.
struct ItemTimes<'a> {
    tz: ApiTimeZone,
    action: &'a str,
    item: &'a str,
}

impl ItemTimes<'_> {
    fn error(&self, field: &'static str, source: TimeError) -> ApiError {
        ApiError::Time {
            action: self.action.to_string(),
            field,
            item: self.item.to_string(),
            source,
        }
    }

    /// A field that must hold a time.
    fn required(&self, field: &'static str, text: &str) -> Result<DateTime<Utc>, ApiError> {
        self.tz.parse(text).map_err(|e| self.error(field, e))
    }

    /// A field that may be empty (no time yet).
    fn optional(&self, field: &'static str, text: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.tz
            .parse_optional(text)
            .map_err(|e| self.error(field, e))
    }
}

/// The PostgreSQL kinds of the domain model and the API's backup type of each.
const PG_KINDS: [(BackupKind, PgBackupType); 2] = [
    (BackupKind::PgBase, PgBackupType::Base),
    (BackupKind::PgLog, PgBackupType::Log),
];

/// The PostgreSQL backup type that holds backups of `kind`; `None` for Redis.
fn pg_api_kind(kind: BackupKind) -> Option<PgBackupType> {
    PG_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|&(_, api_kind)| api_kind)
}

fn instance_not_found(service: Service, instance_id: &str, region: Option<&str>) -> ApiError {
    ApiError::InstanceNotFound {
        service,
        instance_id: instance_id.to_string(),
        region: region.unwrap_or("(default)").to_string(),
    }
}

/// Map the services' "no such instance" codes to `InstanceNotFound`.
fn not_found(err: ApiError, service: Service, instance_id: &str, region: Option<&str>) -> ApiError {
    match err.code() {
        Some(code) if INSTANCE_NOT_FOUND_CODES.contains(&code) => {
            instance_not_found(service, instance_id, region)
        }
        _ => err,
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
