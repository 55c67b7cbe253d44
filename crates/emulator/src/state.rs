//! The emulator's mutable world: Redis and PostgreSQL instances with their
//! backups, the credential table, fault switches, rate limits and request
//! counters. Tests change it between calls through [`EmulatorState`]; the API
//! handlers read it under one short lock per request.
//!
//! Backup files are stored as COS objects (see [`super::cos`]); the state keeps
//! for each file its API name, its COS key, its true size and an optional
//! wrong size to report instead.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::api::faults::ApiFault;
use super::api::ratelimit::RateLimiter;
use super::cos::{CosStore, ObjectBody, ObjectOptions};
use tcbackup_signing::clock::Clock;
use tcbackup_signing::service::Service;
use tcbackup_signing::times::ApiTimeZone;

/// Format an instant as the APIs do: `YYYY-MM-DD hh:mm:ss` in UTC+8.
pub fn format_api_time(t: DateTime<Utc>) -> String {
    ApiTimeZone::default().format(t)
}

/// Parse an API time string (`YYYY-MM-DD hh:mm:ss`, UTC+8).
pub fn parse_api_time(text: &str) -> Option<DateTime<Utc>> {
    ApiTimeZone::default().parse(text).ok()
}

/// Why a change to the emulator state was refused.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No instance with this id.
    #[error("no emulated instance {instance_id}")]
    UnknownInstance {
        /// The id asked for.
        instance_id: String,
    },
    /// The instance has no backup with this id.
    #[error("instance {instance_id} has no backup {backup_id}")]
    UnknownBackup {
        /// The instance.
        instance_id: String,
        /// The backup asked for.
        backup_id: String,
    },
    /// The backup has fewer files than the index asked for.
    #[error("backup {backup_id} has no file number {index}")]
    UnknownFile {
        /// The backup.
        backup_id: String,
        /// The index asked for (0-based).
        index: usize,
    },
    /// An instance with this id already exists.
    #[error("instance {instance_id} already exists")]
    DuplicateInstance {
        /// The id.
        instance_id: String,
    },
    /// A backup with this id already exists on the instance.
    #[error("instance {instance_id} already has a backup {backup_id}")]
    DuplicateBackup {
        /// The instance.
        instance_id: String,
        /// The backup id.
        backup_id: String,
    },
    /// The file body could not be stored as a COS object.
    #[error("cannot store object {key}")]
    Object {
        /// The COS key.
        key: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// A file of a backup as the emulator serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    /// The name the API reports (Redis `FileName`, PostgreSQL `Name`). Tests
    /// may set hostile names; the COS key does not depend on it.
    pub name: String,
    /// The key of the COS object that holds the bytes.
    pub cos_key: String,
    /// The true size of the object in bytes.
    pub size: u64,
    /// A size to report instead of the true one (a wrong size, or `0`).
    pub reported_size: Option<u64>,
    /// Report an empty Redis `InnerDownloadUrl` for it (no intranet link).
    pub inner_url_missing: bool,
}

impl BackupFile {
    /// The size the API reports.
    pub fn api_size(&self) -> u64 {
        self.reported_size.unwrap_or(self.size)
    }
}

/// The bytes of a new backup file and how COS should serve them.
#[derive(Debug)]
pub struct FileSpec {
    /// The name the API reports.
    pub name: String,
    /// The content.
    pub body: ObjectBody,
    /// COS serving options (CRC header, …).
    pub options: ObjectOptions,
}

impl FileSpec {
    /// A file with default COS options.
    pub fn new(name: impl Into<String>, body: ObjectBody) -> Self {
        Self {
            name: name.into(),
            body,
            options: ObjectOptions::default(),
        }
    }
}

/// A TencentDB for Redis instance.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisInstance {
    /// `crs-…`.
    pub instance_id: String,
    /// Display name.
    pub name: String,
    /// Region, e.g. `ap-guangzhou`.
    pub region: String,
    /// Numeric zone id.
    pub zone_id: i64,
    /// Number of shards: one RDB file per shard in every backup.
    pub shard_count: u32,
    /// Shard memory in MB.
    pub shard_size_mb: u64,
    /// Replicas per shard.
    pub replicas: u32,
    /// Product type code (16 = Redis 6.2 cluster, 15 = Redis 6.2 standard).
    pub type_code: i64,
    /// Instance status (2 = running).
    pub status: i64,
    /// Engine version shown in `CurrentRedisVersion`.
    pub engine_version: String,
    /// Creation time.
    pub created: DateTime<Utc>,
}

impl RedisInstance {
    /// A running single-shard Redis 6.2 instance created a month before `now`.
    pub fn new(
        instance_id: impl Into<String>,
        region: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        let instance_id = instance_id.into();
        Self {
            name: format!("{instance_id}-name"),
            instance_id,
            region: region.into(),
            zone_id: 100003,
            shard_count: 1,
            shard_size_mb: 1024,
            replicas: 1,
            type_code: 15,
            status: 2,
            engine_version: "6.2".to_string(),
            created: now - Duration::days(30),
        }
    }

    /// Make it a cluster instance with `shards` shards.
    pub fn cluster(mut self, shards: u32) -> Self {
        self.shard_count = shards.max(1);
        self.type_code = 16;
        self
    }

    /// Whether it is a cluster (`ProductType` `cluster`).
    pub fn is_cluster(&self) -> bool {
        matches!(self.type_code, 4 | 7 | 9 | 16 | 18 | 20 | 22 | 200)
    }
}

/// Redis backup `Status` values.
pub mod redis_status {
    /// Backup in progress (locked by a workflow).
    pub const IN_PROGRESS: i64 = 1;
    /// Normal, finished, not locked.
    pub const NORMAL: i64 = 2;
    /// Being exported.
    pub const EXPORTING: i64 = 3;
    /// Export succeeded (usable).
    pub const EXPORTED: i64 = 4;
    /// Expired.
    pub const EXPIRED: i64 = -1;
}

/// A Redis backup as the emulator serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisBackup {
    /// Opaque backup id.
    pub backup_id: String,
    /// Start time.
    pub start: DateTime<Utc>,
    /// End time; `None` while in progress (reported as an empty string).
    pub end: Option<DateTime<Utc>>,
    /// When the cloud copy expires; past it the status reads `-1`.
    pub expire: DateTime<Utc>,
    /// `Status` (see [`redis_status`]).
    pub status: i64,
    /// `Locked`.
    pub locked: bool,
    /// `"0"` manual, `"1"` automatic, `"2"` spec change.
    pub backup_type: String,
    /// Free text.
    pub remark: String,
    /// `FileType`; `None` reads `RDB-Redis <engine version>`.
    pub file_type: Option<String>,
    /// `Encrypted`.
    pub encrypted: bool,
    /// One file per shard.
    pub files: Vec<BackupFile>,
    /// `DecryptKey` of an encrypted backup (empty: the API gives none, as
    /// for a key held by KMS).
    pub decrypt_key: String,
    /// `KmsKeyId` of an encrypted backup (may be empty).
    pub kms_key_id: String,
}

impl RedisBackup {
    /// The status the API shows at `now`: a usable backup past its expiry reads `-1`.
    pub fn effective_status(&self, now: DateTime<Utc>) -> i64 {
        if self.expire <= now
            && matches!(
                self.status,
                redis_status::NORMAL | redis_status::EXPORTED | redis_status::EXPORTING
            )
        {
            redis_status::EXPIRED
        } else {
            self.status
        }
    }
}

/// What a test or the sample data adds as a Redis backup.
#[derive(Debug)]
pub struct RedisBackupSpec {
    /// Opaque backup id.
    pub backup_id: String,
    /// Start time.
    pub start: DateTime<Utc>,
    /// End time (`None` while in progress).
    pub end: Option<DateTime<Utc>>,
    /// Expiry of the cloud copy.
    pub expire: DateTime<Utc>,
    /// `Status`.
    pub status: i64,
    /// `Locked`.
    pub locked: bool,
    /// `BackupType`.
    pub backup_type: String,
    /// `Remark`.
    pub remark: String,
    /// `FileType`; `None` reads `RDB-Redis <engine version>`.
    pub file_type: Option<String>,
    /// One file per shard.
    pub files: Vec<FileSpec>,
    /// `Encrypted`, with `DecryptKey` and `KmsKeyId` (see
    /// [`RedisBackupSpec::encrypted`]).
    pub encryption: Option<RedisEncryptionSpec>,
}

/// How an emulated Redis backup is encrypted (its files should then be
/// ciphertext-like bytes, see `sample::sample_ciphertext`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisEncryptionSpec {
    /// `DecryptKey`; empty for a key the API does not give out (KMS).
    pub decrypt_key: String,
    /// `KmsKeyId`; may be empty.
    pub kms_key_id: String,
}

impl RedisBackupSpec {
    /// A finished automatic backup: ends 2 minutes after `start`, expires 7 days after it.
    pub fn finished(backup_id: impl Into<String>, start: DateTime<Utc>) -> Self {
        Self {
            backup_id: backup_id.into(),
            start,
            end: Some(start + Duration::minutes(2)),
            expire: start + Duration::days(7),
            status: redis_status::NORMAL,
            locked: false,
            backup_type: "1".to_string(),
            remark: String::new(),
            file_type: None,
            files: Vec::new(),
            encryption: None,
        }
    }

    /// Make it a manual backup (`BackupType` `"0"`) with this `Remark`.
    pub fn manual(mut self, remark: impl Into<String>) -> Self {
        self.backup_type = "0".to_string();
        self.remark = remark.into();
        self
    }

    /// Give it this `FileType` (e.g. one that is not an RDB).
    pub fn file_type(mut self, file_type: impl Into<String>) -> Self {
        self.file_type = Some(file_type.into());
        self
    }

    /// Mark it encrypted: `Encrypted` true in the listing and the detail,
    /// which answers `DecryptKey` (when not empty), `KmsKeyId` and
    /// `KeyAlgorithm` `AES-256-CBC`.
    pub fn encrypted(
        mut self,
        decrypt_key: impl Into<String>,
        kms_key_id: impl Into<String>,
    ) -> Self {
        self.encryption = Some(RedisEncryptionSpec {
            decrypt_key: decrypt_key.into(),
            kms_key_id: kms_key_id.into(),
        });
        self
    }

    /// A backup still in progress (`Status` 1, locked, no end time).
    pub fn in_progress(backup_id: impl Into<String>, start: DateTime<Utc>) -> Self {
        let mut spec = Self::finished(backup_id, start);
        spec.end = None;
        spec.status = redis_status::IN_PROGRESS;
        spec.locked = true;
        spec
    }

    /// Add a shard file.
    pub fn file(mut self, name: impl Into<String>, body: ObjectBody) -> Self {
        self.files.push(FileSpec::new(name, body));
        self
    }
}

/// A TencentDB for PostgreSQL instance.
#[derive(Debug, Clone, PartialEq)]
pub struct PgInstance {
    /// `postgres-…`.
    pub instance_id: String,
    /// Display name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Zone, e.g. `ap-guangzhou-3`.
    pub zone: String,
    /// `DBInstanceStatus`, e.g. `running`.
    pub status: String,
    /// `DBMajorVersion`, e.g. `16`.
    pub major_version: String,
    /// `DBVersion`, e.g. `16.2`.
    pub version: String,
    /// Private IP (filter `db-private-ip`, `db-instance-ip`).
    pub private_ip: String,
    /// Project id.
    pub project_id: i64,
    /// `prepaid` / `postpaid`.
    pub pay_mode: String,
    /// Creation time.
    pub created: DateTime<Utc>,
}

impl PgInstance {
    /// A running PostgreSQL 16 instance created a month before `now`.
    pub fn new(
        instance_id: impl Into<String>,
        region: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        let instance_id = instance_id.into();
        let region = region.into();
        Self {
            name: format!("{instance_id}-name"),
            zone: format!("{region}-3"),
            instance_id,
            region,
            status: "running".to_string(),
            major_version: "16".to_string(),
            version: "16.2".to_string(),
            private_ip: "10.0.0.16".to_string(),
            project_id: 0,
            pay_mode: "postpaid".to_string(),
            created: now - Duration::days(30),
        }
    }
}

/// Which PostgreSQL listing a backup belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgBackupKind {
    /// `DescribeBaseBackups`, `BackupType` `BaseBackup`.
    Base,
    /// `DescribeLogBackups`, `BackupType` `LogBackup`.
    Log,
}

/// A PostgreSQL base or log backup as the emulator serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBackup {
    /// `Id` (UUID-like).
    pub id: String,
    /// Base or log.
    pub kind: PgBackupKind,
    /// `BackupMethod`: `physical` / `logical`.
    pub method: String,
    /// `BackupMode`: `automatic` / `manual`.
    pub mode: String,
    /// `State`: `init`, `running`, `finished`, `failed`, `canceled`.
    pub state: String,
    /// Start time.
    pub start: DateTime<Utc>,
    /// Finish time; `None` until finished (reported as an empty string; the
    /// finish-time window then uses the start time).
    pub finish: Option<DateTime<Utc>>,
    /// Expiry.
    pub expire: DateTime<Utc>,
    /// The one file (`Name`, `Size`).
    pub file: BackupFile,
}

/// What a test or the sample data adds as a PostgreSQL backup.
#[derive(Debug)]
pub struct PgBackupSpec {
    /// `Id`.
    pub id: String,
    /// Base or log.
    pub kind: PgBackupKind,
    /// `BackupMethod`.
    pub method: String,
    /// `BackupMode`.
    pub mode: String,
    /// `State`.
    pub state: String,
    /// Start time.
    pub start: DateTime<Utc>,
    /// Finish time.
    pub finish: Option<DateTime<Utc>>,
    /// Expiry.
    pub expire: DateTime<Utc>,
    /// The file.
    pub file: FileSpec,
}

impl PgBackupSpec {
    /// A finished automatic physical backup that took 3 minutes and expires 7 days after it started.
    pub fn finished(
        kind: PgBackupKind,
        id: impl Into<String>,
        start: DateTime<Utc>,
        name: impl Into<String>,
        body: ObjectBody,
    ) -> Self {
        Self {
            id: id.into(),
            kind,
            method: "physical".to_string(),
            mode: "automatic".to_string(),
            state: "finished".to_string(),
            start,
            finish: Some(start + Duration::minutes(3)),
            expire: start + Duration::days(7),
            file: FileSpec::new(name, body),
        }
    }

    /// Make it a manual backup (`BackupMode` `manual`).
    pub fn manual(mut self) -> Self {
        self.mode = "manual".to_string();
        self
    }

    /// Give it this `BackupMethod` (e.g. `snapshot`).
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = method.into();
        self
    }

    /// A backup still running (no finish time).
    pub fn running(
        kind: PgBackupKind,
        id: impl Into<String>,
        start: DateTime<Utc>,
        name: impl Into<String>,
        body: ObjectBody,
    ) -> Self {
        let mut spec = Self::finished(kind, id, start, name, body);
        spec.state = "running".to_string();
        spec.finish = None;
        spec
    }
}

/// Redis `DescribeBackupDownloadRestriction` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisRestriction {
    /// `NoLimit`, `LimitOnlyIntranet` or `Customize`.
    pub limit_type: String,
    /// `In`.
    pub vpc_comparison_symbol: String,
    /// `In` / `NotIn`.
    pub ip_comparison_symbol: String,
    /// `(Region, VpcList)` pairs.
    pub limit_vpc: Vec<(String, Vec<String>)>,
    /// Listed IPs.
    pub limit_ip: Vec<String>,
}

impl Default for RedisRestriction {
    fn default() -> Self {
        Self {
            limit_type: "NoLimit".to_string(),
            vpc_comparison_symbol: "In".to_string(),
            ip_comparison_symbol: "In".to_string(),
            limit_vpc: Vec::new(),
            limit_ip: Vec::new(),
        }
    }
}

/// PostgreSQL `DescribeBackupDownloadRestriction` answer (mixed case as the real one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgRestriction {
    /// `NONE`, `INTRANET`, `CUSTOMIZE` (the real service also answers `Customize`).
    pub restriction_type: String,
    /// `ALLOW` / `DENY` / empty.
    pub vpc_restriction_effect: String,
    /// VPC ids.
    pub vpc_id_set: Vec<String>,
    /// `ALLOW` / `DENY` / empty.
    pub ip_restriction_effect: String,
    /// IPs.
    pub ip_set: Vec<String>,
}

impl Default for PgRestriction {
    fn default() -> Self {
        Self {
            restriction_type: "NONE".to_string(),
            vpc_restriction_effect: String::new(),
            vpc_id_set: Vec::new(),
            ip_restriction_effect: String::new(),
            ip_set: Vec::new(),
        }
    }
}

/// A key pair the API accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialEntry {
    pub(crate) secret_key: String,
    /// Temporary credentials: the `X-TC-Token` that must accompany them.
    pub(crate) token: Option<String>,
    /// Temporary credentials: when they stop working.
    pub(crate) expires: Option<DateTime<Utc>>,
}

/// An instance with its backups. Redis and PostgreSQL keep them the same
/// way, so one set of lookups below serves both.
#[derive(Debug)]
pub(crate) struct Entry<I, B> {
    pub(crate) instance: I,
    /// Newest first is the APIs' order; stored in insertion order.
    pub(crate) backups: Vec<B>,
}

pub(crate) type RedisEntry = Entry<RedisInstance, RedisBackup>;
pub(crate) type PgEntry = Entry<PgInstance, PgBackup>;

/// The id the state looks an instance or a backup up by.
pub(crate) trait Keyed {
    fn key(&self) -> &str;
}

impl Keyed for RedisInstance {
    fn key(&self) -> &str {
        &self.instance_id
    }
}

impl Keyed for PgInstance {
    fn key(&self) -> &str {
        &self.instance_id
    }
}

impl Keyed for RedisBackup {
    fn key(&self) -> &str {
        &self.backup_id
    }
}

impl Keyed for PgBackup {
    fn key(&self) -> &str {
        &self.id
    }
}

fn unknown_instance(instance_id: &str) -> StateError {
    StateError::UnknownInstance {
        instance_id: instance_id.to_string(),
    }
}

fn unknown_backup(instance_id: &str, backup_id: &str) -> StateError {
    StateError::UnknownBackup {
        instance_id: instance_id.to_string(),
        backup_id: backup_id.to_string(),
    }
}

impl<I: Keyed, B: Keyed> Entry<I, B> {
    /// Refuse a backup id the instance already has (`DuplicateBackup`).
    fn check_new_backup(&self, backup_id: &str) -> Result<(), StateError> {
        if self.backups.iter().any(|b| b.key() == backup_id) {
            return Err(StateError::DuplicateBackup {
                instance_id: self.instance.key().to_string(),
                backup_id: backup_id.to_string(),
            });
        }
        Ok(())
    }

    /// One backup to change, or `UnknownBackup`.
    fn backup_mut(&mut self, backup_id: &str) -> Result<&mut B, StateError> {
        let instance_id = self.instance.key();
        self.backups
            .iter_mut()
            .find(|b| b.key() == backup_id)
            .ok_or_else(|| unknown_backup(instance_id, backup_id))
    }

    /// Remove one backup, or `UnknownBackup`.
    fn remove_backup(&mut self, backup_id: &str) -> Result<(), StateError> {
        let before = self.backups.len();
        self.backups.retain(|b| b.key() != backup_id);
        if self.backups.len() == before {
            return Err(unknown_backup(self.instance.key(), backup_id));
        }
        Ok(())
    }
}

fn find_entry<'w, I: Keyed, B>(
    entries: &'w [Entry<I, B>],
    instance_id: &str,
) -> Option<&'w Entry<I, B>> {
    entries.iter().find(|e| e.instance.key() == instance_id)
}

/// The entry of `instance_id`, or `UnknownInstance`.
fn entry<'w, I: Keyed, B>(
    entries: &'w [Entry<I, B>],
    instance_id: &str,
) -> Result<&'w Entry<I, B>, StateError> {
    find_entry(entries, instance_id).ok_or_else(|| unknown_instance(instance_id))
}

/// The entry of `instance_id` to change, or `UnknownInstance`.
fn entry_mut<'w, I: Keyed, B>(
    entries: &'w mut [Entry<I, B>],
    instance_id: &str,
) -> Result<&'w mut Entry<I, B>, StateError> {
    entries
        .iter_mut()
        .find(|e| e.instance.key() == instance_id)
        .ok_or_else(|| unknown_instance(instance_id))
}

/// Add an instance without backups, unless its id is taken (`DuplicateInstance`).
fn add_entry<I: Keyed, B>(entries: &mut Vec<Entry<I, B>>, instance: I) -> Result<(), StateError> {
    if find_entry(entries, instance.key()).is_some() {
        return Err(StateError::DuplicateInstance {
            instance_id: instance.key().to_string(),
        });
    }
    entries.push(Entry {
        instance,
        backups: Vec::new(),
    });
    Ok(())
}

/// Remove an instance with its backups, or `UnknownInstance`.
fn remove_entry<I: Keyed, B>(
    entries: &mut Vec<Entry<I, B>>,
    instance_id: &str,
) -> Result<(), StateError> {
    let before = entries.len();
    entries.retain(|e| e.instance.key() != instance_id);
    if entries.len() == before {
        return Err(unknown_instance(instance_id));
    }
    Ok(())
}

/// Everything behind the lock.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub(crate) redis: Vec<RedisEntry>,
    pub(crate) pg: Vec<PgEntry>,
    pub(crate) credentials: HashMap<String, CredentialEntry>,
    /// Pending faults per action (`*` = any action), consumed one per call.
    pub(crate) faults: HashMap<String, VecDeque<ApiFault>>,
    pub(crate) rate: RateLimiter,
    pub(crate) redis_restriction: RedisRestriction,
    pub(crate) pg_restriction: PgRestriction,
    /// Requests seen per `X-TC-Action` value.
    pub(crate) counters: HashMap<String, u64>,
    /// The parameters of the authenticated requests per action, oldest
    /// first (at most `MAX_RECEIVED` each).
    pub(crate) received: HashMap<String, VecDeque<Value>>,
}

/// How many requests' parameters are kept per action.
const MAX_RECEIVED: usize = 1000;

impl World {
    /// Remember the parameters of one authenticated `action` request,
    /// dropping the oldest past `MAX_RECEIVED`.
    pub(crate) fn record_params(&mut self, action: &str, params: Value) {
        let kept = self.received.entry(action.to_string()).or_default();
        if kept.len() == MAX_RECEIVED {
            kept.pop_front();
        }
        kept.push_back(params);
    }

    pub(crate) fn redis_entry(&self, instance_id: &str) -> Option<&RedisEntry> {
        find_entry(&self.redis, instance_id)
    }

    pub(crate) fn pg_entry(&self, instance_id: &str) -> Option<&PgEntry> {
        find_entry(&self.pg, instance_id)
    }

    /// The next fault for `action`, if one is armed (action-specific first).
    pub(crate) fn take_fault(&mut self, action: &str) -> Option<ApiFault> {
        for key in [action, "*"] {
            if let Some(queue) = self.faults.get_mut(key) {
                if let Some(fault) = queue.pop_front() {
                    if queue.is_empty() {
                        self.faults.remove(key);
                    }
                    return Some(fault);
                }
            }
        }
        None
    }
}

/// A handle on the emulator's state; cheap to clone, shared with the server.
#[derive(Clone)]
pub struct EmulatorState {
    shared: Arc<Shared>,
}

struct Shared {
    world: Mutex<World>,
    cos: Arc<CosStore>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for EmulatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorState").finish_non_exhaustive()
    }
}

/// Characters kept as they are in COS keys; anything else becomes `_`.
fn key_segment(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn body_len(body: &ObjectBody) -> std::io::Result<u64> {
    Ok(match body {
        ObjectBody::Bytes(bytes) => bytes.len() as u64,
        ObjectBody::File(path) => std::fs::metadata(path)?.len(),
        ObjectBody::Generated { len, .. } => *len,
    })
}

impl EmulatorState {
    /// Empty state whose files go to `cos` and whose times come from `clock`.
    pub(crate) fn new(cos: Arc<CosStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            shared: Arc::new(Shared {
                world: Mutex::new(World::default()),
                cos,
                clock,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while the lock was held left plain data behind; keep serving.
        self.shared.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The clock the emulator reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// The COS object store that holds the backup files.
    pub fn cos(&self) -> &Arc<CosStore> {
        &self.shared.cos
    }

    /// Store one file as a COS object under `key` and describe it.
    fn store_file(&self, key: String, spec: FileSpec) -> Result<BackupFile, StateError> {
        let size = body_len(&spec.body).map_err(|source| StateError::Object {
            key: key.clone(),
            source,
        })?;
        self.shared
            .cos
            .put(&key, spec.body, spec.options)
            .map_err(|source| StateError::Object {
                key: key.clone(),
                source,
            })?;
        Ok(BackupFile {
            name: spec.name,
            cos_key: key,
            size,
            reported_size: None,
            inner_url_missing: false,
        })
    }

    // ---- credentials -------------------------------------------------------

    /// Accept a permanent key pair.
    pub fn add_credential(&self, secret_id: &str, secret_key: &str) {
        self.lock().credentials.insert(
            secret_id.to_string(),
            CredentialEntry {
                secret_key: secret_key.to_string(),
                token: None,
                expires: None,
            },
        );
    }

    /// Accept a temporary key pair that needs `token` in `X-TC-Token` and
    /// stops working at `expires` (then `AuthFailure.TokenFailure`).
    pub fn add_temporary_credential(
        &self,
        secret_id: &str,
        secret_key: &str,
        token: &str,
        expires: DateTime<Utc>,
    ) {
        self.lock().credentials.insert(
            secret_id.to_string(),
            CredentialEntry {
                secret_key: secret_key.to_string(),
                token: Some(token.to_string()),
                expires: Some(expires),
            },
        );
    }

    /// Forget a key pair (then `AuthFailure.SecretIdNotFound`). Returns whether it existed.
    pub fn revoke_credential(&self, secret_id: &str) -> bool {
        self.lock().credentials.remove(secret_id).is_some()
    }

    // ---- faults and rate limits ---------------------------------------------

    /// Make the next `times` calls of `action` (`"*"` = any action) fail with `fault`.
    pub fn inject_fault(&self, action: &str, fault: ApiFault, times: u32) {
        let mut world = self.lock();
        let queue = world.faults.entry(action.to_string()).or_default();
        for _ in 0..times {
            queue.push_back(fault.clone());
        }
    }

    /// Disarm every pending fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Override the per-second limit of one action (`None` restores the documented one).
    pub fn set_rate_limit(&self, service: Service, action: &str, per_second: Option<u32>) {
        self.lock().rate.set_limit(service, action, per_second);
    }

    /// Switch rate limiting on or off (on by default).
    pub fn set_rate_limiting(&self, enabled: bool) {
        self.lock().rate.set_enabled(enabled);
    }

    /// How many requests named `action` in `X-TC-Action` reached the API, whatever the outcome.
    pub fn request_count(&self, action: &str) -> u64 {
        self.lock().counters.get(action).copied().unwrap_or(0)
    }

    /// Requests that reached the API in total.
    pub fn total_requests(&self) -> u64 {
        self.lock().counters.values().sum()
    }

    /// The parameters (`Params` as a JSON object, GET queries unflattened
    /// with their values as strings) of every authenticated request of
    /// `action` the API received, oldest first (the last 1000).
    pub fn received_params(&self, action: &str) -> Vec<Value> {
        self.lock()
            .received
            .get(action)
            .map(|kept| kept.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Set the Redis download restriction policy.
    pub fn set_redis_download_restriction(&self, policy: RedisRestriction) {
        self.lock().redis_restriction = policy;
    }

    /// Set the PostgreSQL download restriction policy.
    pub fn set_pg_download_restriction(&self, policy: PgRestriction) {
        self.lock().pg_restriction = policy;
    }

    // ---- Redis ---------------------------------------------------------------

    /// Add a Redis instance.
    pub fn add_redis_instance(&self, instance: RedisInstance) -> Result<(), StateError> {
        add_entry(&mut self.lock().redis, instance)
    }

    /// Remove a Redis instance and its backups from the API (objects stay in COS).
    pub fn remove_redis_instance(&self, instance_id: &str) -> Result<(), StateError> {
        remove_entry(&mut self.lock().redis, instance_id)
    }

    /// Add a Redis backup; its files are stored in COS first.
    pub fn add_redis_backup(
        &self,
        instance_id: &str,
        spec: RedisBackupSpec,
    ) -> Result<(), StateError> {
        entry(&self.lock().redis, instance_id)?.check_new_backup(&spec.backup_id)?;
        // Store the objects without holding the lock (a File body reads metadata).
        let mut files = Vec::with_capacity(spec.files.len());
        for (index, file) in spec.files.into_iter().enumerate() {
            let key = format!(
                "redis/{}/{}/{index}-{}",
                key_segment(instance_id),
                key_segment(&spec.backup_id),
                key_segment(&file.name)
            );
            files.push(self.store_file(key, file)?);
        }
        let backup = RedisBackup {
            backup_id: spec.backup_id,
            start: spec.start,
            end: spec.end,
            expire: spec.expire,
            status: spec.status,
            locked: spec.locked,
            backup_type: spec.backup_type,
            remark: spec.remark,
            file_type: spec.file_type,
            encrypted: spec.encryption.is_some(),
            files,
            decrypt_key: spec
                .encryption
                .as_ref()
                .map(|e| e.decrypt_key.clone())
                .unwrap_or_default(),
            kms_key_id: spec.encryption.map(|e| e.kms_key_id).unwrap_or_default(),
        };
        entry_mut(&mut self.lock().redis, instance_id)?
            .backups
            .push(backup);
        Ok(())
    }

    /// Remove a Redis backup from the API (its objects stay in COS).
    pub fn remove_redis_backup(
        &self,
        instance_id: &str,
        backup_id: &str,
    ) -> Result<(), StateError> {
        entry_mut(&mut self.lock().redis, instance_id)?.remove_backup(backup_id)
    }

    /// Change a Redis backup in place; returns what `change` returns.
    pub fn update_redis_backup<R>(
        &self,
        instance_id: &str,
        backup_id: &str,
        change: impl FnOnce(&mut RedisBackup) -> R,
    ) -> Result<R, StateError> {
        let mut world = self.lock();
        let backup = entry_mut(&mut world.redis, instance_id)?.backup_mut(backup_id)?;
        Ok(change(backup))
    }

    /// Set a Redis backup's `Status` (see [`redis_status`]).
    pub fn set_redis_backup_status(
        &self,
        instance_id: &str,
        backup_id: &str,
        status: i64,
    ) -> Result<(), StateError> {
        self.update_redis_backup(instance_id, backup_id, |b| {
            b.status = status;
            if status != redis_status::IN_PROGRESS && b.end.is_none() {
                b.end = Some(b.start + Duration::minutes(2));
            }
        })
    }

    /// Set a Redis backup's `Locked`.
    pub fn set_redis_backup_locked(
        &self,
        instance_id: &str,
        backup_id: &str,
        locked: bool,
    ) -> Result<(), StateError> {
        self.update_redis_backup(instance_id, backup_id, |b| b.locked = locked)
    }

    /// Report `size` as `FileSize` of shard file `index` instead of its true size.
    pub fn set_redis_file_size(
        &self,
        instance_id: &str,
        backup_id: &str,
        index: usize,
        size: u64,
    ) -> Result<(), StateError> {
        self.update_redis_file(instance_id, backup_id, index, |f| {
            f.reported_size = Some(size)
        })
    }

    /// Report `name` as `FileName` of shard file `index` (e.g. `../../x.rdb`).
    pub fn set_redis_file_name(
        &self,
        instance_id: &str,
        backup_id: &str,
        index: usize,
        name: &str,
    ) -> Result<(), StateError> {
        self.update_redis_file(instance_id, backup_id, index, |f| f.name = name.to_string())
    }

    /// Report an empty `InnerDownloadUrl` for shard file `index` of a Redis
    /// backup (its public `DownloadUrl` stays).
    pub fn set_redis_inner_url_missing(
        &self,
        instance_id: &str,
        backup_id: &str,
        index: usize,
    ) -> Result<(), StateError> {
        self.update_redis_file(instance_id, backup_id, index, |f| {
            f.inner_url_missing = true;
        })
    }

    /// Change shard file `index` of a Redis backup, or `UnknownFile`.
    fn update_redis_file(
        &self,
        instance_id: &str,
        backup_id: &str,
        index: usize,
        change: impl FnOnce(&mut BackupFile),
    ) -> Result<(), StateError> {
        self.update_redis_backup(instance_id, backup_id, |b| {
            b.files.get_mut(index).map(change).ok_or(index)
        })?
        .map_err(|index| StateError::UnknownFile {
            backup_id: backup_id.to_string(),
            index,
        })
    }

    /// A snapshot of the Redis instances.
    pub fn redis_instances(&self) -> Vec<RedisInstance> {
        self.lock()
            .redis
            .iter()
            .map(|e| e.instance.clone())
            .collect()
    }

    /// A snapshot of one Redis instance's backups, in insertion order.
    pub fn redis_backups(&self, instance_id: &str) -> Result<Vec<RedisBackup>, StateError> {
        entry(&self.lock().redis, instance_id).map(|e| e.backups.clone())
    }

    // ---- PostgreSQL ----------------------------------------------------------

    /// Add a PostgreSQL instance.
    pub fn add_pg_instance(&self, instance: PgInstance) -> Result<(), StateError> {
        add_entry(&mut self.lock().pg, instance)
    }

    /// Remove a PostgreSQL instance and its backups from the API.
    pub fn remove_pg_instance(&self, instance_id: &str) -> Result<(), StateError> {
        remove_entry(&mut self.lock().pg, instance_id)
    }

    /// Add a PostgreSQL base or log backup; its file is stored in COS first.
    pub fn add_pg_backup(&self, instance_id: &str, spec: PgBackupSpec) -> Result<(), StateError> {
        entry(&self.lock().pg, instance_id)?.check_new_backup(&spec.id)?;
        let kind = match spec.kind {
            PgBackupKind::Base => "base",
            PgBackupKind::Log => "log",
        };
        let key = format!(
            "pgsql/{}/{kind}/{}/0-{}",
            key_segment(instance_id),
            key_segment(&spec.id),
            key_segment(&spec.file.name)
        );
        let file = self.store_file(key, spec.file)?;
        let backup = PgBackup {
            id: spec.id,
            kind: spec.kind,
            method: spec.method,
            mode: spec.mode,
            state: spec.state,
            start: spec.start,
            finish: spec.finish,
            expire: spec.expire,
            file,
        };
        entry_mut(&mut self.lock().pg, instance_id)?
            .backups
            .push(backup);
        Ok(())
    }

    /// Remove a PostgreSQL backup (base or log) from the API.
    pub fn remove_pg_backup(&self, instance_id: &str, backup_id: &str) -> Result<(), StateError> {
        entry_mut(&mut self.lock().pg, instance_id)?.remove_backup(backup_id)
    }

    /// Change a PostgreSQL backup in place; returns what `change` returns.
    pub fn update_pg_backup<R>(
        &self,
        instance_id: &str,
        backup_id: &str,
        change: impl FnOnce(&mut PgBackup) -> R,
    ) -> Result<R, StateError> {
        let mut world = self.lock();
        let backup = entry_mut(&mut world.pg, instance_id)?.backup_mut(backup_id)?;
        Ok(change(backup))
    }

    /// Set a PostgreSQL backup's `State`; `finished` also sets a missing finish time to now.
    pub fn set_pg_backup_state(
        &self,
        instance_id: &str,
        backup_id: &str,
        state: &str,
    ) -> Result<(), StateError> {
        let now = self.shared.clock.now();
        self.update_pg_backup(instance_id, backup_id, |b| {
            b.state = state.to_string();
            if state == "finished" && b.finish.is_none() {
                b.finish = Some(now);
            }
        })
    }

    /// Report `size` as `Size` of a PostgreSQL backup instead of its true size.
    pub fn set_pg_file_size(
        &self,
        instance_id: &str,
        backup_id: &str,
        size: u64,
    ) -> Result<(), StateError> {
        self.update_pg_backup(instance_id, backup_id, |b| {
            b.file.reported_size = Some(size)
        })
    }

    /// Report `name` as `Name` of a PostgreSQL backup.
    pub fn set_pg_file_name(
        &self,
        instance_id: &str,
        backup_id: &str,
        name: &str,
    ) -> Result<(), StateError> {
        self.update_pg_backup(instance_id, backup_id, |b| b.file.name = name.to_string())
    }

    /// A snapshot of the PostgreSQL instances.
    pub fn pg_instances(&self) -> Vec<PgInstance> {
        self.lock().pg.iter().map(|e| e.instance.clone()).collect()
    }

    /// A snapshot of one PostgreSQL instance's backups of one kind, in insertion order.
    pub fn pg_backups(
        &self,
        instance_id: &str,
        kind: PgBackupKind,
    ) -> Result<Vec<PgBackup>, StateError> {
        entry(&self.lock().pg, instance_id).map(|e| {
            e.backups
                .iter()
                .filter(|b| b.kind == kind)
                .cloned()
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_times_are_utc_plus_8() {
        let t = DateTime::from_timestamp(1551113065, 0).expect("valid");
        assert_eq!(format_api_time(t), "2019-02-26 00:44:25");
        assert_eq!(parse_api_time("2019-02-26 00:44:25"), Some(t));
        assert_eq!(parse_api_time("2019-02-26T00:44:25"), None);
    }

    #[test]
    fn cos_keys_never_hold_path_tricks() {
        assert_eq!(key_segment("../../x.rdb"), ".._.._x.rdb");
        assert_eq!(key_segment("a b/c"), "a_b_c");
    }

    #[test]
    fn expired_backups_read_minus_one() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
        let spec = RedisBackupSpec::finished("b", start);
        let backup = RedisBackup {
            backup_id: spec.backup_id,
            start,
            end: spec.end,
            expire: spec.expire,
            status: spec.status,
            locked: false,
            backup_type: spec.backup_type,
            remark: String::new(),
            file_type: None,
            encrypted: false,
            files: Vec::new(),
            decrypt_key: String::new(),
            kms_key_id: String::new(),
        };
        assert_eq!(backup.effective_status(start), redis_status::NORMAL);
        assert_eq!(
            backup.effective_status(start + Duration::days(7)),
            redis_status::EXPIRED
        );
    }
}
