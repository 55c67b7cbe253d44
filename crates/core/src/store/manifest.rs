//! `manifest.json`: what a published set holds (format 1), its JSON form,
//! and reading it back with every way it can be unusable named.

use std::io::{self, Read};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::layout::{KEY_FILE, MANIFEST_FILE};
use crate::model::{check_file_name, BackupKind, BackupMeta, Service, UnsafeFileName};
use crate::verify::archive::{ContentCheck, SKIPPED_UNKNOWN};

/// The manifest format this version writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// A manifest larger than this is not one tcbackup wrote.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// The contents of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`] for sets this version writes.
    pub format: u32,
    /// The instance.
    pub instance_id: String,
    /// Redis or PostgreSQL.
    pub service: Service,
    /// Redis, PostgreSQL base or log.
    pub kind: BackupKind,
    /// The API's backup id.
    pub backup_id: String,
    /// The instance's region.
    pub region: String,
    /// When the backup started (RFC 3339, UTC).
    #[serde(with = "rfc3339")]
    pub start: DateTime<Utc>,
    /// When it finished, if the API said.
    #[serde(with = "rfc3339_option", default)]
    pub finish: Option<DateTime<Utc>>,
    /// When tcbackup published the set.
    #[serde(with = "rfc3339")]
    pub published_at: DateTime<Utc>,
    /// The tcbackup version that published it.
    pub tcbackup_version: String,
    /// Every file of the set.
    pub files: Vec<FileRecord>,
    /// Whether the files are ciphertext (an encrypted Redis backup).
    /// Absent (false) in manifests of unencrypted sets and in those written
    /// before tcbackup knew about encryption.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// How the files are encrypted and where the key is; present exactly
    /// when `encrypted` is true. Never the key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionRecord>,
    /// What the API said about the set: manual or automatic, remark,
    /// instance name, engine version, file type, backup method. Absent in
    /// manifests written before tcbackup recorded it (and when the API
    /// said none of it).
    #[serde(default, skip_serializing_if = "BackupMeta::is_empty")]
    pub meta: BackupMeta,
}

/// What the manifest of an encrypted set records about its encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionRecord {
    /// `KeyAlgorithm` as the API gave it (`AES-256-CBC`; empty if it gave none).
    pub algorithm: String,
    /// `KmsKeyId`, absent when the API gave none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// The key file in the set directory ([`KEY_FILE`]), or absent when
    /// the API returned no key (a key held by KMS): the set cannot be
    /// decrypted with what tcbackup holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

/// One file of a set with its checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The name the API gave (a plain file name).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents, lowercase hex.
    pub sha256: String,
    /// CRC-64/XZ (the COS `x-cos-hash-crc64ecma` algorithm) of the
    /// contents; a decimal string in JSON so that no reader rounds it.
    #[serde(with = "u64_string")]
    pub crc64: u64,
    /// Whether COS sent a CRC64 for the object and it matched.
    pub crc64_checked_against_cos: bool,
    /// The content checks of a PostgreSQL archive: which passed and which
    /// were skipped. Absent for Redis files and in manifests written before
    /// tcbackup checked archives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_checks: Option<ContentChecks>,
}

/// What the content check of one archive file did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentChecks {
    /// The archive format the file name says (`"tar.gz"`), or absent for a
    /// name that says none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The checks the file passed (`"gzip CRC-32 and length"`, `"tar headers"`).
    #[serde(default)]
    pub passed: Vec<String>,
    /// The checks that did not apply to it, and so were not made.
    #[serde(default)]
    pub skipped: Vec<String>,
}

impl ContentChecks {
    /// The record of a verified file's content check: `None` when nothing
    /// was checked and `archive_expected` is false (a Redis file).
    pub fn from_check(check: &ContentCheck, archive_expected: bool) -> Option<Self> {
        let strings = |list: &[&str]| list.iter().map(|s| (*s).to_string()).collect();
        match check {
            ContentCheck::Archive(Ok(summary)) => Some(Self {
                format: Some(summary.format.as_str().to_string()),
                passed: strings(&summary.passed()),
                skipped: strings(&summary.skipped()),
            }),
            // A failed check never reaches a manifest; record nothing passed.
            ContentCheck::Archive(Err(_)) => None,
            ContentCheck::NotChecked if archive_expected => Some(Self {
                format: None,
                passed: Vec::new(),
                skipped: strings(SKIPPED_UNKNOWN),
            }),
            ContentCheck::NotChecked => None,
        }
    }
}

impl Manifest {
    /// The total size of the set's files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|file| file.size).sum()
    }

    /// Check what a reader relies on: the format, plain file names, hex digests.
    pub fn check(&self) -> Result<(), ManifestError> {
        if self.format != MANIFEST_FORMAT {
            return Err(ManifestError::UnsupportedFormat(self.format));
        }
        if self.kind.service() != self.service {
            return Err(ManifestError::Inconsistent("kind and service disagree"));
        }
        if self.files.is_empty() {
            return Err(ManifestError::Inconsistent("it lists no files"));
        }
        if self.encrypted != self.encryption.is_some() {
            return Err(ManifestError::Inconsistent(
                "encrypted and encryption disagree",
            ));
        }
        if let Some(name) = self.encryption.as_ref().and_then(|e| e.key_file.as_ref()) {
            if name != KEY_FILE {
                return Err(ManifestError::Inconsistent(
                    "the key file is not DECRYPT-KEY",
                ));
            }
        }
        for file in &self.files {
            check_file_name(&file.name).map_err(ManifestError::UnsafeFileName)?;
            if file.name == MANIFEST_FILE {
                return Err(ManifestError::Inconsistent(
                    "a file is named like the manifest",
                ));
            }
            if file.name == KEY_FILE {
                return Err(ManifestError::Inconsistent(
                    "a file is named like the decryption key",
                ));
            }
            let hex_ok = file.sha256.len() == 64
                && file
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok {
                return Err(ManifestError::BadDigest(file.name.clone()));
            }
        }
        Ok(())
    }

    /// Read and check `<dir>/manifest.json`.
    pub fn read_from(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(ManifestError::Missing)
            }
            Err(err) => return Err(ManifestError::Unreadable(err)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(ManifestError::Unreadable)?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ManifestError::Inconsistent("it is larger than 16 MiB"));
        }
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(ManifestError::Invalid)?;
        manifest.check()?;
        Ok(manifest)
    }
}

/// Why a directory's manifest is not usable (so it is not a published set).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// No `manifest.json`: an incomplete set.
    #[error("no manifest.json, so not a complete set")]
    Missing,
    /// It could not be read.
    #[error("manifest.json cannot be read")]
    Unreadable(#[source] io::Error),
    /// It is not valid manifest JSON.
    #[error("manifest.json is not a valid manifest")]
    Invalid(#[source] serde_json::Error),
    /// It was written by a newer tcbackup.
    #[error("manifest.json has format {0}, this tcbackup reads format 1")]
    UnsupportedFormat(u32),
    /// It names a file that is not a plain name.
    #[error("manifest.json names an unsafe file")]
    UnsafeFileName(#[source] UnsafeFileName),
    /// A SHA-256 is not 64 lowercase hex digits.
    #[error("manifest.json has a malformed sha256 for {0:?}")]
    BadDigest(String),
    /// It contradicts itself or its place.
    #[error("manifest.json is inconsistent: {0}")]
    Inconsistent(&'static str),
}

mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod rfc3339_option {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        at: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::rfc3339::serialize(at, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        let text: Option<String> = Option::deserialize(deserializer)?;
        text.map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|at| at.with_timezone(&Utc))
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

mod u64_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            instance_id: "crs-4y9t57vt".to_string(),
            service: Service::Redis,
            kind: BackupKind::Redis,
            backup_id: "659b0b4d".to_string(),
            region: "ap-guangzhou".to_string(),
            start: Utc.with_ymd_and_hms(2024, 12, 31, 15, 59, 59).unwrap(),
            finish: None,
            published_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            tcbackup_version: "0.1.0".to_string(),
            files: vec![FileRecord {
                name: "a-1.rdb".to_string(),
                size: 3,
                sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                    .to_string(),
                crc64: u64::MAX,
                crc64_checked_against_cos: true,
                content_checks: None,
            }],
            encrypted: false,
            encryption: None,
            meta: BackupMeta::default(),
        }
    }

    #[test]
    fn json_round_trip_keeps_crc_exact_and_times_utc() {
        let manifest = sample();
        let json = serde_json::to_string_pretty(&manifest).unwrap();
        assert!(
            json.contains("\"crc64\": \"18446744073709551615\""),
            "{json}"
        );
        assert!(
            json.contains("\"start\": \"2024-12-31T15:59:59Z\""),
            "{json}"
        );
        assert!(json.contains("\"format\": 1"), "{json}");
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, manifest);
        back.check().unwrap();
    }

    #[test]
    fn content_checks_are_optional_both_ways() {
        // A manifest written before content checks reads back without them.
        let json = serde_json::to_string(&sample()).unwrap();
        assert!(!json.contains("content_checks"), "{json}");
        let old: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(old.files[0].content_checks, None);
        let mut pg = sample();
        pg.service = Service::Postgres;
        pg.kind = BackupKind::PgBase;
        pg.files[0].name = "base.tar.gz".to_string();
        pg.files[0].content_checks = Some(ContentChecks {
            format: Some("tar.gz".to_string()),
            passed: vec![
                "gzip CRC-32 and length".to_string(),
                "tar headers".to_string(),
            ],
            skipped: Vec::new(),
        });
        let json = serde_json::to_string(&pg).unwrap();
        assert!(
            json.contains("\"passed\":[\"gzip CRC-32 and length\",\"tar headers\"]"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), pg);
    }

    #[test]
    fn encryption_fields_are_optional_and_never_hold_a_key() {
        // Unencrypted: neither field is written, and an old manifest
        // without them reads back as unencrypted.
        let json = serde_json::to_string(&sample()).unwrap();
        assert!(!json.contains("encrypt"), "{json}");
        let old: Manifest = serde_json::from_str(&json).unwrap();
        assert!(!old.encrypted && old.encryption.is_none());
        old.check().unwrap();

        let mut enc = sample();
        enc.encrypted = true;
        enc.encryption = Some(EncryptionRecord {
            algorithm: "AES-256-CBC".to_string(),
            kms_key_id: Some("kms-1".to_string()),
            key_file: Some(KEY_FILE.to_string()),
        });
        enc.check().unwrap();
        let json = serde_json::to_string_pretty(&enc).unwrap();
        assert!(json.contains("\"encrypted\": true"), "{json}");
        assert!(json.contains("\"algorithm\": \"AES-256-CBC\""), "{json}");
        assert!(json.contains("\"kms_key_id\": \"kms-1\""), "{json}");
        assert!(json.contains("\"key_file\": \"DECRYPT-KEY\""), "{json}");
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), enc);

        // A key not held: no key_file.
        let mut kms = enc.clone();
        kms.encryption.as_mut().unwrap().key_file = None;
        kms.check().unwrap();
        assert!(!serde_json::to_string(&kms).unwrap().contains("key_file"));

        let mut half = enc.clone();
        half.encryption = None;
        assert!(matches!(half.check(), Err(ManifestError::Inconsistent(_))));
        let mut elsewhere = enc.clone();
        elsewhere.encryption.as_mut().unwrap().key_file = Some("../key".to_string());
        assert!(matches!(
            elsewhere.check(),
            Err(ManifestError::Inconsistent(_))
        ));
        let mut clash = enc;
        clash.files[0].name = KEY_FILE.to_string();
        assert!(matches!(clash.check(), Err(ManifestError::Inconsistent(_))));
    }

    #[test]
    fn content_checks_record_what_passed_and_what_was_skipped() {
        use crate::verify::archive::{ArchiveError, ArchiveFormat, ArchiveSummary};
        let zst = |without_checksum| {
            ContentCheck::Archive(Ok(ArchiveSummary {
                format: ArchiveFormat::TarZst,
                members: 2,
                without_checksum,
                entries: 5,
                uncompressed: 10_240,
            }))
        };
        let all = ContentChecks::from_check(&zst(0), true).unwrap();
        assert_eq!(all.format.as_deref(), Some("tar.zst"));
        assert_eq!(
            all.passed,
            ["zstd framing", "zstd frame checksums", "tar headers"]
        );
        assert!(all.skipped.is_empty());
        let some = ContentChecks::from_check(&zst(1), true).unwrap();
        assert_eq!(some.passed, ["zstd framing", "tar headers"]);
        assert_eq!(some.skipped, ["zstd frame checksums"]);
        let unknown = ContentChecks::from_check(&ContentCheck::NotChecked, true).unwrap();
        assert_eq!(unknown.format, None);
        assert!(unknown.passed.is_empty());
        assert_eq!(unknown.skipped, ["compression framing", "tar headers"]);
        // A Redis file records nothing; a failed check never reaches here.
        assert_eq!(
            ContentChecks::from_check(&ContentCheck::NotChecked, false),
            None
        );
        let failed = ContentCheck::Archive(Err(ArchiveError::Empty));
        assert_eq!(ContentChecks::from_check(&failed, true), None);
    }

    #[test]
    fn backup_metadata_is_optional_and_old_manifests_still_load() {
        use crate::model::BackupMode;
        // A manifest as tcbackup wrote it before it recorded metadata.
        let old = r#"{
  "format": 1,
  "instance_id": "crs-4y9t57vt",
  "service": "redis",
  "kind": "redis",
  "backup_id": "659b0b4d",
  "region": "ap-guangzhou",
  "start": "2024-12-31T15:59:59Z",
  "finish": null,
  "published_at": "2025-01-01T00:00:00Z",
  "tcbackup_version": "0.1.0",
  "files": [{"name": "a-1.rdb", "size": 3,
    "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    "crc64": "18446744073709551615", "crc64_checked_against_cos": true}]
}"#;
        let read: Manifest = serde_json::from_str(old).unwrap();
        read.check().unwrap();
        assert!(read.meta.is_empty());
        assert_eq!(read, sample());
        assert!(!serde_json::to_string(&read).unwrap().contains("\"meta\""));

        let mut manual = sample();
        manual.meta = BackupMeta {
            mode: Some(BackupMode::Manual),
            remark: Some("before the upgrade".to_string()),
            instance_name: Some("orders-cache".to_string()),
            file_type: Some("RDB-Redis 6.2".to_string()),
            redis_version: Some("6.2.6".to_string()),
            ..BackupMeta::default()
        };
        let json = serde_json::to_string_pretty(&manual).unwrap();
        assert!(json.contains("\"mode\": \"manual\""), "{json}");
        assert!(
            json.contains("\"remark\": \"before the upgrade\""),
            "{json}"
        );
        assert!(
            json.contains("\"instance_name\": \"orders-cache\""),
            "{json}"
        );
        assert!(!json.contains("backup_method"), "{json}");
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, manual);
        assert!(back.meta.is_manual());
    }

    #[test]
    fn check_refuses_what_a_reader_cannot_trust() {
        let mut newer = sample();
        newer.format = 2;
        assert!(matches!(
            newer.check(),
            Err(ManifestError::UnsupportedFormat(2))
        ));
        let mut escaping = sample();
        escaping.files[0].name = "../../x.rdb".to_string();
        assert!(matches!(
            escaping.check(),
            Err(ManifestError::UnsafeFileName(_))
        ));
        let mut bad_digest = sample();
        bad_digest.files[0].sha256 = "XYZ".to_string();
        assert!(matches!(
            bad_digest.check(),
            Err(ManifestError::BadDigest(_))
        ));
        let mut mixed = sample();
        mixed.kind = BackupKind::PgLog;
        assert!(matches!(mixed.check(), Err(ManifestError::Inconsistent(_))));
    }
}
