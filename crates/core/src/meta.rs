//! What the API says about a backup set beyond its files: manual or
//! automatic, the remark, the instance's name and engine version, the file
//! type (Redis) and backup method (PostgreSQL). Recorded in the manifest
//! (what a restore needs), shown by `list`, used by retention
//! (`keep_manual`) and by the sync cycle, which lists but does not fetch
//! backups whose format tcbackup does not know ([`BackupMeta::unfetchable`]).
//!
//! Every field is optional: manifests written before tcbackup recorded them
//! still load, and an API that leaves a field out leaves it out here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a backup was started, as the API says (Redis `BackupType` of the
/// listing, PostgreSQL `BackupMode`). Values tcbackup does not know are kept
/// as given (reference §12: accept unknown values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum BackupMode {
    /// Started by a user (Redis `"0"`, PostgreSQL `manual`).
    Manual,
    /// Started by the backup plan (Redis `"1"`, PostgreSQL `automatic`).
    Automatic,
    /// Started by a specification change (Redis `"2"`).
    SpecChange,
    /// A value tcbackup does not know, as the API gave it.
    Other(String),
}

impl BackupMode {
    /// Redis `RedisBackupSet.BackupType` (`"0"` manual, `"1"` automatic,
    /// `"2"` spec change); `None` when empty. Not `DescribeBackupDetail`'s
    /// `BackupType`, which is documented the other way round.
    pub fn from_redis_backup_type(value: &str) -> Option<BackupMode> {
        match value.trim() {
            "" => None,
            "0" => Some(BackupMode::Manual),
            "1" => Some(BackupMode::Automatic),
            "2" => Some(BackupMode::SpecChange),
            other => Some(BackupMode::Other(format!("BackupType {other}"))),
        }
    }

    /// PostgreSQL `BackupMode` (`manual` / `automatic`); `None` when empty.
    pub fn from_pg_backup_mode(value: &str) -> Option<BackupMode> {
        match value.trim() {
            "" => None,
            other => Some(BackupMode::from(other.to_string())),
        }
    }

    /// The name in manifests and `list --json`.
    pub fn as_str(&self) -> &str {
        match self {
            BackupMode::Manual => "manual",
            BackupMode::Automatic => "automatic",
            BackupMode::SpecChange => "spec_change",
            BackupMode::Other(value) => value,
        }
    }
}

impl From<String> for BackupMode {
    fn from(value: String) -> Self {
        match value.as_str() {
            "manual" => BackupMode::Manual,
            "automatic" => BackupMode::Automatic,
            "spec_change" => BackupMode::SpecChange,
            _ => BackupMode::Other(value),
        }
    }
}

impl From<BackupMode> for String {
    fn from(mode: BackupMode) -> Self {
        mode.as_str().to_string()
    }
}

impl fmt::Display for BackupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The PostgreSQL base backup methods tcbackup can fetch and check.
pub const FETCHABLE_PG_METHODS: [&str; 2] = ["physical", "logical"];

/// The prefix of a Redis `FileType` that tcbackup can fetch and check.
pub const FETCHABLE_REDIS_FILE_TYPE_PREFIX: &str = "RDB";

/// What the API says about a backup set. Serialised with absent fields left
/// out, so an empty record writes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupMeta {
    /// Manual or automatic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<BackupMode>,
    /// Redis `Remark`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    /// Redis `InstanceName`, PostgreSQL `DBInstanceName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    /// Redis `FileType` (e.g. `RDB-Redis 6.2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_type: Option<String>,
    /// Redis: the instance's `CurrentRedisVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_version: Option<String>,
    /// PostgreSQL `BackupMethod` (`physical`, `logical`, `snapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_method: Option<String>,
    /// PostgreSQL: the instance's `DBVersion` (e.g. `16.2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_version: Option<String>,
    /// PostgreSQL: the instance's `DBMajorVersion` (e.g. `16`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_major_version: Option<String>,
    /// PostgreSQL: the instance's `DBKernelVersion` (e.g. `v16.2_r1.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_kernel_version: Option<String>,
}

/// What the instance listing says about an instance, copied into the
/// metadata of each of its backups (one `DescribeInstances` /
/// `DescribeDBInstances` call per instance, not per backup).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceMeta {
    /// Redis `InstanceName`, PostgreSQL `DBInstanceName`.
    pub name: Option<String>,
    /// Redis `CurrentRedisVersion`.
    pub redis_version: Option<String>,
    /// PostgreSQL `DBVersion`.
    pub db_version: Option<String>,
    /// PostgreSQL `DBMajorVersion`.
    pub db_major_version: Option<String>,
    /// PostgreSQL `DBKernelVersion`.
    pub db_kernel_version: Option<String>,
}

/// `Some(value)` unless `value` is empty or blank.
pub fn non_empty(value: &str) -> Option<String> {
    Some(value.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

impl BackupMeta {
    /// Whether the API said the backup was started by a user.
    pub fn is_manual(&self) -> bool {
        self.mode == Some(BackupMode::Manual)
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self == &BackupMeta::default()
    }

    /// Add what the instance listing says (fields the backup listing gave
    /// itself win).
    pub fn add_instance(&mut self, instance: &InstanceMeta) {
        let fill = |slot: &mut Option<String>, value: &Option<String>| {
            if slot.is_none() {
                slot.clone_from(value);
            }
        };
        fill(&mut self.instance_name, &instance.name);
        fill(&mut self.redis_version, &instance.redis_version);
        fill(&mut self.db_version, &instance.db_version);
        fill(&mut self.db_major_version, &instance.db_major_version);
        fill(&mut self.db_kernel_version, &instance.db_kernel_version);
    }

    /// Why tcbackup cannot fetch this backup, or `None` when it can: a
    /// PostgreSQL backup method other than physical or logical (such as
    /// `snapshot`), or a Redis file type that is not an RDB. An absent
    /// field says nothing against it.
    pub fn unfetchable(&self) -> Option<String> {
        if let Some(method) = &self.backup_method {
            if !FETCHABLE_PG_METHODS.contains(&method.as_str()) {
                return Some(format!(
                    "backup method {method:?} is not one tcbackup can fetch (only physical and logical)"
                ));
            }
        }
        if let Some(file_type) = &self.file_type {
            if !file_type.starts_with(FETCHABLE_REDIS_FILE_TYPE_PREFIX) {
                return Some(format!(
                    "file type {file_type:?} is not an RDB file tcbackup can fetch"
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_backup_types_follow_the_listing_not_the_detail() {
        assert_eq!(
            BackupMode::from_redis_backup_type("0"),
            Some(BackupMode::Manual)
        );
        assert_eq!(
            BackupMode::from_redis_backup_type("1"),
            Some(BackupMode::Automatic)
        );
        assert_eq!(
            BackupMode::from_redis_backup_type("2"),
            Some(BackupMode::SpecChange)
        );
        assert_eq!(BackupMode::from_redis_backup_type(""), None);
        let odd = BackupMode::from_redis_backup_type("7").unwrap();
        assert_eq!(odd.as_str(), "BackupType 7");
    }

    #[test]
    fn modes_round_trip_and_keep_unknown_values() {
        for mode in [
            BackupMode::Manual,
            BackupMode::Automatic,
            BackupMode::SpecChange,
            BackupMode::Other("nightly".to_string()),
        ] {
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{}\"", mode.as_str()));
            assert_eq!(serde_json::from_str::<BackupMode>(&json).unwrap(), mode);
        }
        assert_eq!(
            BackupMode::from_pg_backup_mode("manual"),
            Some(BackupMode::Manual)
        );
        assert_eq!(BackupMode::from_pg_backup_mode(" "), None);
    }

    #[test]
    fn empty_meta_writes_nothing_and_reads_from_nothing() {
        assert_eq!(serde_json::to_string(&BackupMeta::default()).unwrap(), "{}");
        let meta: BackupMeta = serde_json::from_str("{}").unwrap();
        assert!(meta.is_empty() && !meta.is_manual());
    }

    #[test]
    fn instance_fields_fill_only_what_the_backup_left_out() {
        let mut meta = BackupMeta {
            instance_name: Some("from-backup".to_string()),
            ..BackupMeta::default()
        };
        meta.add_instance(&InstanceMeta {
            name: Some("from-instance".to_string()),
            db_version: Some("16.2".to_string()),
            ..InstanceMeta::default()
        });
        assert_eq!(meta.instance_name.as_deref(), Some("from-backup"));
        assert_eq!(meta.db_version.as_deref(), Some("16.2"));
    }

    #[test]
    fn unknown_methods_and_file_types_are_unfetchable() {
        let pg = |method: &str| BackupMeta {
            backup_method: Some(method.to_string()),
            ..BackupMeta::default()
        };
        assert_eq!(pg("physical").unfetchable(), None);
        assert_eq!(pg("logical").unfetchable(), None);
        assert!(pg("snapshot").unfetchable().unwrap().contains("snapshot"));
        let redis = |file_type: &str| BackupMeta {
            file_type: Some(file_type.to_string()),
            ..BackupMeta::default()
        };
        assert_eq!(redis("RDB-Redis 6.2").unfetchable(), None);
        assert!(redis("AOF-Redis 7.0")
            .unfetchable()
            .unwrap()
            .contains("AOF"));
        assert_eq!(BackupMeta::default().unfetchable(), None);
    }
}
