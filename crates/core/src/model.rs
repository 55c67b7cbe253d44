//! The domain model shared by the cloud layer, the sync cycle, the store and
//! retention: what a backup set is, independently of Redis or PostgreSQL.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use tcbackup_signing::secret::SignedUrl;

pub use crate::meta::{BackupMeta, BackupMode, InstanceMeta};
pub use tcbackup_signing::service::Service;

/// What kind of backup a set is. Retention runs separately per kind.
/// Serialised (manifests, JSON output) with the same short names as
/// directory names and logs: `redis`, `base`, `log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BackupKind {
    /// A Redis backup: one RDB file per shard.
    #[serde(rename = "redis")]
    Redis,
    /// A PostgreSQL base (full) backup.
    #[serde(rename = "base")]
    PgBase,
    /// A PostgreSQL log (WAL) backup.
    #[serde(rename = "log")]
    PgLog,
}

impl BackupKind {
    /// Short stable name used in manifests, logs and `list` output.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Redis => "redis",
            BackupKind::PgBase => "base",
            BackupKind::PgLog => "log",
        }
    }

    /// The service this kind belongs to.
    pub fn service(self) -> Service {
        match self {
            BackupKind::Redis => Service::Redis,
            BackupKind::PgBase | BackupKind::PgLog => Service::Postgres,
        }
    }
}

impl fmt::Display for BackupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where backups are downloaded from (`[transfer] network`, overridable
/// per instance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Network {
    /// The public COS URLs (`DownloadUrl`); the API is sent no download
    /// restriction, so the account's own policy applies.
    #[default]
    Public,
    /// The intranet URLs (Redis `InnerDownloadUrl`, PostgreSQL's URL under
    /// `RestrictionType` `INTRANET`), which work only inside Tencent Cloud's
    /// network.
    Intranet,
}

impl Network {
    /// Every network, in the order messages list them.
    pub const ALL: [Network; 2] = [Network::Public, Network::Intranet];

    /// The name the config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Public => "public",
            Network::Intranet => "intranet",
        }
    }

    /// The network named `name` (exactly as [`Network::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Network> {
        Network::ALL.into_iter().find(|n| n.as_str() == name)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One file of a backup set as the API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFile {
    /// The file name the API gave (Redis `FileName`, PostgreSQL `Name`).
    pub name: String,
    /// The size in bytes the API reported.
    pub expected_size: u64,
}

/// A backup as listed by the cloud API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBackup {
    /// The instance (`crs-…`, `postgres-…`).
    pub instance_id: String,
    /// The region the instance lives in.
    pub region: String,
    /// The API's backup id (opaque).
    pub backup_id: String,
    /// Redis, PostgreSQL base or PostgreSQL log.
    pub kind: BackupKind,
    /// When the backup started.
    pub start: DateTime<Utc>,
    /// When it finished, if the API says.
    pub finish: Option<DateTime<Utc>>,
    /// When the cloud copy expires, if the API says.
    pub expire: Option<DateTime<Utc>>,
    /// Whether the backup is finished and usable (Redis Status 2 or 4,
    /// PostgreSQL State `finished`). Unfinished backups are never fetched.
    pub finished: bool,
    /// The raw status as the API gave it, for display.
    pub status: String,
    /// Files known from the listing: PostgreSQL lists its one file; Redis
    /// lists none until `DescribeBackupUrl` (one file per shard).
    pub files: Vec<RemoteFile>,
    /// Whether the listing says the backup is encrypted (Redis
    /// `Encrypted`; always false for PostgreSQL). The sync cycle then asks
    /// `DescribeBackupDetail` for the key at fetch time.
    pub encrypted: bool,
    /// What the API says about the set beyond its files (manual or
    /// automatic, remark, instance name and version, file type, method).
    pub meta: BackupMeta,
}

/// A file with a fresh presigned download URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFile {
    /// The file name the API gave.
    pub name: String,
    /// The size in bytes the API reported.
    pub expected_size: u64,
    /// The presigned URL; prints redacted.
    pub url: SignedUrl,
}

/// Why a file name from the API cannot be used on disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("file name {name:?} from the API is not a plain file name ({why})")]
pub struct UnsafeFileName {
    /// The name as received (Debug-escaped when printed).
    pub name: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Check that a file name from the API is a plain name: not empty, not `.`
/// or `..`, no `/`, `\` or NUL, not hidden (a leading dot is reserved for
/// private state in the download directory).
pub fn check_file_name(name: &str) -> Result<&str, UnsafeFileName> {
    let why = if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("a directory reference")
    } else if name.contains('/') || name.contains('\\') {
        Some("contains a path separator")
    } else if name.contains('\0') {
        Some("contains NUL")
    } else if name.starts_with('.') {
        Some("starts with a dot")
    } else if name.len() > 255 {
        Some("longer than 255 bytes")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    };
    match why {
        Some(why) => Err(UnsafeFileName {
            name: name.to_string(),
            why,
        }),
        None => Ok(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_as_their_short_names() {
        for kind in [BackupKind::Redis, BackupKind::PgBase, BackupKind::PgLog] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<BackupKind>(&json).unwrap(), kind);
        }
    }

    #[test]
    fn networks_are_named_as_the_config_writes_them() {
        for network in Network::ALL {
            assert_eq!(Network::from_name(network.as_str()), Some(network));
        }
        assert_eq!(Network::from_name("Intranet"), None);
        assert_eq!(Network::from_name(""), None);
        assert_eq!(Network::default(), Network::Public);
    }

    #[test]
    fn refuses_names_that_are_not_plain() {
        for bad in [
            "",
            ".",
            "..",
            "../../x.rdb",
            "a/b",
            "a\\b",
            "a\0b",
            ".hidden",
            "x\ny",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?} must be refused");
        }
        for good in [
            "9527208-4633789-redis-server-4.0.8-1001463-ignore-1-ignore.rdb",
            "manual-20230215190924.tar.gz",
            "a..b",
        ] {
            assert_eq!(check_file_name(good), Ok(good));
        }
    }
}
