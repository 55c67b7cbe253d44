//! Names in the download directory: set directories, private prefixes and
//! file names, as pure functions.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::model::BackupKind;

/// The manifest in every published set directory, written last.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The decryption key of an encrypted Redis set, beside its files: the key
/// exactly as `DescribeBackupDetail` gave it (no newline), always 0600
/// (owner only, even with `group_readable`), written into the staging
/// directory before the manifest so that it is published with the set.
pub const KEY_FILE: &str = "DECRYPT-KEY";
/// The private area for partial downloads, under the download directory.
pub const PARTIAL_DIR: &str = ".partial";
/// The lock file under the download directory.
pub const LOCK_FILE: &str = ".lock";
/// Prefix of a set directory being published.
pub(crate) const STAGING_PREFIX: &str = ".tmp-";
/// Prefix of a set directory being deleted.
pub(crate) const DELETING_PREFIX: &str = ".deleting-";
/// Who a partial directory belongs to, inside it.
pub(crate) const OWNER_FILE: &str = ".owner.json";

/// Longest sanitised backup id kept verbatim in a directory name.
const MAX_ID_LEN: usize = 96;

/// The set directory name: the start time in UTC (so a plain `ls` sorts
/// sets by time), the kind and the sanitised backup id, for example
/// `2024-12-31T155959Z_redis_659b0b4d-1f9e`.
pub fn set_dir_name(start: DateTime<Utc>, kind: BackupKind, backup_id: &str) -> String {
    format!(
        "{}_{}_{}",
        start.format("%Y-%m-%dT%H%M%SZ"),
        kind.as_str(),
        sanitize_backup_id(backup_id)
    )
}

/// The partial directory name of a backup: `<kind>_<sanitised id>`.
pub(crate) fn partial_dir_name(kind: BackupKind, backup_id: &str) -> String {
    format!("{}_{}", kind.as_str(), sanitize_backup_id(backup_id))
}

/// A backup id as a file-name part: `[A-Za-z0-9._-]` kept, anything else
/// replaced by `_`. When something was replaced or cut, 8 hex digits of the
/// id's SHA-256 are appended so that two ids never share a name.
pub fn sanitize_backup_id(backup_id: &str) -> String {
    let mut out: String = backup_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let changed = out != backup_id || out.len() > MAX_ID_LEN || out.is_empty();
    if changed {
        out.truncate(MAX_ID_LEN);
        let digest = Sha256::digest(backup_id.as_bytes());
        out.push('-');
        out.push_str(&hex::encode(&digest[..4]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn set_dir_names_start_with_the_utc_start_time() {
        let start = Utc.with_ymd_and_hms(2024, 12, 31, 15, 59, 59).unwrap();
        assert_eq!(
            set_dir_name(start, BackupKind::Redis, "659b0b4d-1f9e"),
            "2024-12-31T155959Z_redis_659b0b4d-1f9e"
        );
        assert_eq!(
            set_dir_name(start, BackupKind::PgBase, "pg.base_1"),
            "2024-12-31T155959Z_base_pg.base_1"
        );
    }

    #[test]
    fn sanitised_ids_are_plain_and_distinct() {
        let a = sanitize_backup_id("a/b");
        let b = sanitize_backup_id("a_b");
        let c = sanitize_backup_id("a:b");
        assert_eq!(b, "a_b");
        assert!(a.starts_with("a_b-") && a.len() == "a_b-".len() + 8, "{a}");
        assert_ne!(a, b);
        assert_ne!(a, c);
        for id in ["../../etc", "", "x\0y", &"z".repeat(300), "中文"] {
            let name = sanitize_backup_id(id);
            assert!(!name.is_empty());
            assert!(name.len() <= MAX_ID_LEN + 9, "{name}");
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')));
        }
    }
}
