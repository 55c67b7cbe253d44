//! TencentDB for Redis (API 2018-04-12): typed requests and answers for the
//! actions a backup download needs (instances, backups, URLs, and the
//! detail that carries an encrypted backup's key), with paging and the
//! 30-day window rule of `DescribeInstanceBackups` (reference §6), and the
//! account's download policy (`DescribeBackupDownloadRestriction`, §6.5).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::cloud::client::ApiClient;
use crate::cloud::error::ApiError;
use crate::cloud::paging::{collect_pages, null_as_default, Page};
use crate::model::{Network, Service};
use tcbackup_signing::secret::Secret;
use tcbackup_signing::times::ApiTimeZone;

/// `DescribeInstances` page size: the documented maximum.
pub const INSTANCES_LIMIT: u64 = 1000;

/// `DescribeInstanceBackups` page size: the documented maximum (default 20).
pub const BACKUPS_LIMIT: u64 = 100;

/// The longest `BeginTime`..`EndTime` span `DescribeInstanceBackups` accepts.
pub const MAX_WINDOW_DAYS: i64 = 30;

/// `Status` values of a usable backup: 2 normal, 4 RDB export succeeded.
pub const FINISHED_STATUSES: [i64; 2] = [2, 4];

/// `Status` filter sent with `DescribeInstanceBackups`: everything not
/// expired or deleted (1 in progress, 2 normal, 3 exporting, 4 exported).
/// Without it the API returns only status 2 and the exported ones would be
/// missed; the in-progress ones are listed for display and skipped by
/// `is_finished`.
pub const LISTED_STATUSES: [i64; 4] = [1, 2, 3, 4];

/// The `LimitType` of links that work only inside Tencent Cloud. The only
/// value tcbackup sends: a public download sends none, so that the
/// account's own policy applies (`NoLimit` would override it).
pub const LIMIT_ONLY_INTRANET: &str = "LimitOnlyIntranet";

/// `DescribeInstances` request (only the fields used).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstancesRequest {
    /// One instance id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Page size, at most 1000.
    pub limit: u64,
    /// A multiple of `limit`.
    pub offset: u64,
}

/// `DescribeInstances` answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstancesResponse {
    /// All matching instances.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_count: u64,
    /// This page.
    #[serde(default, deserialize_with = "null_as_default")]
    pub instance_set: Vec<RedisInstance>,
}

/// One instance (the fields a backup tool needs).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RedisInstance {
    /// `crs-…`.
    pub instance_id: String,
    /// Display name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub instance_name: String,
    /// e.g. `ap-guangzhou`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub region: String,
    /// 0 initialising, 1 in a workflow, 2 running, -2 isolated, -3 pending deletion.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: i64,
    /// Shards: one RDB file per shard in each backup of a cluster.
    #[serde(default, deserialize_with = "null_as_default")]
    pub redis_shard_num: i64,
    /// `standalone` or `cluster`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub product_type: String,
    /// The Redis version the instance runs (e.g. `6.2.6`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub current_redis_version: String,
}

/// `DescribeInstanceBackups` request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstanceBackupsRequest {
    /// The instance.
    pub instance_id: String,
    /// Page size, at most 100.
    pub limit: u64,
    /// A multiple of `limit`.
    pub offset: u64,
    /// Lower bound of the backups' start time.
    pub begin_time: String,
    /// Upper bound of the backups' start time (at most 30 days after `begin_time`).
    pub end_time: String,
    /// Which statuses to list (`LISTED_STATUSES`).
    pub status: Vec<i64>,
}

/// `DescribeInstanceBackups` answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstanceBackupsResponse {
    /// All matching backups.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_count: u64,
    /// This page.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup_set: Vec<RedisBackupSet>,
}

/// One backup as listed.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RedisBackupSet {
    /// Opaque id.
    pub backup_id: String,
    /// The instance.
    #[serde(default, deserialize_with = "null_as_default")]
    pub instance_id: String,
    /// Where the backup is stored.
    #[serde(default, deserialize_with = "null_as_default")]
    pub region: String,
    /// `YYYY-MM-DD hh:mm:ss`.
    pub start_time: String,
    /// `YYYY-MM-DD hh:mm:ss`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub end_time: String,
    /// `YYYY-MM-DD hh:mm:ss`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub expire_time: String,
    /// 1 locked, 2 normal, -1 expired, 3 exporting, 4 exported.
    pub status: i64,
    /// 0 unlocked, 1 locked.
    #[serde(default, deserialize_with = "null_as_default")]
    pub locked: i64,
    /// e.g. `RDB-Redis 6.2`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub file_type: String,
    /// Whether the backup is encrypted.
    #[serde(default, deserialize_with = "null_as_default")]
    pub encrypted: bool,
    /// `"0"` manual, `"1"` automatic, `"2"` spec change (unknown values
    /// are kept as given). `BackupSize` is not read: the API calls it
    /// internal, and only each file's `FileSize` counts.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup_type: String,
    /// The user's note.
    #[serde(default, deserialize_with = "null_as_default")]
    pub remark: String,
    /// The instance's display name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub instance_name: String,
}

impl RedisBackupSet {
    /// Finished and usable now: `Status` 2 or 4 and not locked by another
    /// workflow (a locked backup's URL call fails with
    /// `ResourceUnavailable.BackupStatusInvalid`; it is fetched by a later
    /// cycle once the lock is gone).
    pub fn is_finished(&self) -> bool {
        FINISHED_STATUSES.contains(&self.status) && self.locked != 1
    }
}

/// `DescribeBackupUrl` request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeBackupUrlRequest {
    /// The instance.
    pub instance_id: String,
    /// The backup.
    pub backup_id: String,
    /// `LimitOnlyIntranet` for intranet links; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_type: Option<String>,
}

/// `DescribeBackupUrl` answer. The deprecated top-level `DownloadUrl`,
/// `InnerDownloadUrl` and `Filenames` arrays are ignored on purpose.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeBackupUrlResponse {
    /// One entry per shard.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup_infos: Vec<BackupDownloadInfo>,
}

/// One file of a backup.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct BackupDownloadInfo {
    /// The RDB file name.
    pub file_name: String,
    /// Bytes; 0 means the file is invalid.
    #[serde(default, deserialize_with = "null_as_default")]
    pub file_size: u64,
    /// Public presigned COS URL, valid 6 hours.
    #[serde(default, deserialize_with = "null_as_default")]
    pub download_url: String,
    /// Intranet presigned COS URL, valid 6 hours.
    #[serde(default, deserialize_with = "null_as_default")]
    pub inner_download_url: String,
}

impl BackupDownloadInfo {
    /// The URL that works over `network` (may be empty when the API gave none).
    pub fn url_for(&self, network: Network) -> &str {
        match network {
            Network::Public => &self.download_url,
            Network::Intranet => &self.inner_download_url,
        }
    }
}

/// `DescribeBackupDownloadRestriction` answer: the account's download
/// policy for the region.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeBackupDownloadRestrictionResponse {
    /// `NoLimit`, `LimitOnlyIntranet` or `Customize`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub limit_type: String,
    /// Listed VPCs per region (under `Customize`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub limit_vpc: Vec<BackupLimitVpcItem>,
    /// Listed IPs (under `Customize`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub limit_ip: Vec<String>,
}

/// One `LimitVpc` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct BackupLimitVpcItem {
    /// The VPCs' region.
    #[serde(default, deserialize_with = "null_as_default")]
    pub region: String,
    /// VPC ids.
    #[serde(default, deserialize_with = "null_as_default")]
    pub vpc_list: Vec<String>,
}

impl std::fmt::Debug for BackupDownloadInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupDownloadInfo")
            .field("file_name", &self.file_name)
            .field("file_size", &self.file_size)
            .field(
                "download_url",
                &tcbackup_signing::secret::redact_url(&self.download_url),
            )
            .field(
                "inner_download_url",
                &tcbackup_signing::secret::redact_url(&self.inner_download_url),
            )
            .finish()
    }
}

/// `DescribeBackupDetail` request (reference §6.4).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeBackupDetailRequest {
    /// The instance.
    pub instance_id: String,
    /// The backup.
    pub backup_id: String,
}

/// `DescribeBackupDetail` answer: only the encryption fields are read (the
/// others repeat the listing, and `BackupType` is documented the other way
/// round). `Debug` never shows the key: it is a [`Secret`].
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeBackupDetailResponse {
    /// The backup.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup_id: String,
    /// Whether the backup is encrypted (optional in the model).
    #[serde(default, deserialize_with = "null_as_default")]
    pub encrypted: bool,
    /// The decryption key; empty or absent when the API gives none.
    #[serde(default, deserialize_with = "secret_or_empty")]
    pub decrypt_key: Secret,
    /// The KMS key id, if any.
    #[serde(default, deserialize_with = "null_as_default")]
    pub kms_key_id: String,
    /// Documented: only `AES-256-CBC`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub key_algorithm: String,
}

/// A nullable string read straight into a [`Secret`], so that the value
/// never exists as a printable `String` field.
fn secret_or_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
    Ok(Secret::new(
        Option::<String>::deserialize(deserializer)?.unwrap_or_default(),
    ))
}

/// The instance `instance_id`, or `None` when the API does not know it.
pub async fn describe_instance(
    client: &ApiClient,
    region: Option<&str>,
    instance_id: &str,
) -> Result<Option<RedisInstance>, ApiError> {
    let action = "DescribeInstances";
    let instances = collect_pages(
        action,
        INSTANCES_LIMIT,
        |i: &RedisInstance| i.instance_id.clone(),
        |offset| async move {
            let request = DescribeInstancesRequest {
                instance_id: Some(instance_id.to_string()),
                limit: INSTANCES_LIMIT,
                offset,
            };
            let answer: DescribeInstancesResponse = client
                .call(Service::Redis, action, region, &request)
                .await?;
            Ok(Page {
                total: answer.total_count,
                items: answer.instance_set,
            })
        },
    )
    .await?;
    Ok(instances.into_iter().find(|i| i.instance_id == instance_id))
}

/// Split `[begin, end]` into consecutive windows of at most 30 days. Windows
/// share their boundary second (the API's bounds are inclusive); callers
/// de-duplicate. Empty when `begin > end`.
pub fn windows(begin: DateTime<Utc>, end: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let span = Duration::days(MAX_WINDOW_DAYS);
    let mut out = Vec::new();
    if begin > end {
        return out;
    }
    let mut from = begin;
    loop {
        let to = (from + span).min(end);
        out.push((from, to));
        if to >= end {
            return out;
        }
        from = to;
    }
}

/// Every backup of `instance_id` whose start time lies in `[begin, end]`,
/// in whatever state (see `RedisBackupSet::is_finished`), each once, asked
/// for in pages of `limit` (clamped to 1..=100; `BACKUPS_LIMIT` normally).
pub async fn list_backups(
    client: &ApiClient,
    region: Option<&str>,
    instance_id: &str,
    begin: DateTime<Utc>,
    end: DateTime<Utc>,
    tz: ApiTimeZone,
    limit: u64,
) -> Result<Vec<RedisBackupSet>, ApiError> {
    let action = "DescribeInstanceBackups";
    let limit = limit.clamp(1, BACKUPS_LIMIT);
    let mut all: Vec<RedisBackupSet> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (from, to) in windows(begin, end) {
        let begin_time = tz.format(from);
        let end_time = tz.format(to);
        let page_items = collect_pages(
            action,
            limit,
            |b: &RedisBackupSet| b.backup_id.clone(),
            |offset| {
                let request = DescribeInstanceBackupsRequest {
                    instance_id: instance_id.to_string(),
                    limit,
                    offset,
                    begin_time: begin_time.clone(),
                    end_time: end_time.clone(),
                    status: LISTED_STATUSES.to_vec(),
                };
                async move {
                    let answer: DescribeInstanceBackupsResponse = client
                        .call(Service::Redis, action, region, &request)
                        .await?;
                    Ok(Page {
                        total: answer.total_count,
                        items: answer.backup_set,
                    })
                }
            },
        )
        .await?;
        for backup in page_items {
            if seen.insert(backup.backup_id.clone()) {
                all.push(backup);
            }
        }
    }
    Ok(all)
}

/// The files of one backup with fresh download URLs (one per shard),
/// asked for as links that work over `network`.
pub async fn backup_urls(
    client: &ApiClient,
    region: Option<&str>,
    instance_id: &str,
    backup_id: &str,
    network: Network,
) -> Result<Vec<BackupDownloadInfo>, ApiError> {
    let request = DescribeBackupUrlRequest {
        instance_id: instance_id.to_string(),
        backup_id: backup_id.to_string(),
        limit_type: match network {
            Network::Public => None,
            Network::Intranet => Some(LIMIT_ONLY_INTRANET.to_string()),
        },
    };
    let answer: DescribeBackupUrlResponse = client
        .call(Service::Redis, "DescribeBackupUrl", region, &request)
        .await?;
    Ok(answer.backup_infos)
}

/// The detail of one backup (its encryption and key), asked fresh.
pub async fn backup_detail(
    client: &ApiClient,
    region: Option<&str>,
    instance_id: &str,
    backup_id: &str,
) -> Result<DescribeBackupDetailResponse, ApiError> {
    let request = DescribeBackupDetailRequest {
        instance_id: instance_id.to_string(),
        backup_id: backup_id.to_string(),
    };
    client
        .call(Service::Redis, "DescribeBackupDetail", region, &request)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn windows_never_exceed_30_days_and_cover_the_span() {
        let begin = at("2024-01-01T00:00:00Z");
        let end = at("2024-03-15T12:00:00Z");
        let w = windows(begin, end);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].0, begin);
        assert_eq!(w.last().expect("window").1, end);
        for (from, to) in &w {
            assert!(*to - *from <= Duration::days(30));
            assert!(from <= to);
        }
        for pair in w.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "no gap between windows");
        }
        let short = windows(begin, begin + Duration::days(7));
        assert_eq!(short, vec![(begin, begin + Duration::days(7))]);
        let exact = windows(begin, begin + Duration::days(30));
        assert_eq!(exact.len(), 1);
        assert!(windows(end, begin).is_empty());
    }

    #[test]
    fn a_public_request_names_no_limit_type_and_an_intranet_one_limit_only_intranet() {
        let request = |limit_type: Option<&str>| {
            serde_json::to_value(DescribeBackupUrlRequest {
                instance_id: "crs-1".to_string(),
                backup_id: "b".to_string(),
                limit_type: limit_type.map(str::to_string),
            })
            .expect("serialise")
        };
        assert_eq!(
            request(None),
            serde_json::json!({"InstanceId": "crs-1", "BackupId": "b"})
        );
        assert_eq!(
            request(Some(LIMIT_ONLY_INTRANET))["LimitType"],
            "LimitOnlyIntranet"
        );
    }

    #[test]
    fn decodes_the_download_restriction() {
        let text = r#"{"LimitType": "Customize", "VpcComparisonSymbol": "In",
            "IpComparisonSymbol": "NotIn", "LimitVpc": [{"Region": "ap-guangzhou", "VpcList": ["vpc-1"]}],
            "LimitIp": ["10.0.0.1"], "RequestId": "r"}"#;
        let answer: DescribeBackupDownloadRestrictionResponse =
            serde_json::from_str(text).expect("decode");
        assert_eq!(answer.limit_type, "Customize");
        assert_eq!(answer.limit_vpc[0].vpc_list, ["vpc-1"]);
        assert_eq!(answer.limit_ip, ["10.0.0.1"]);
        let nulls = r#"{"LimitType": null, "LimitVpc": null, "LimitIp": null}"#;
        let answer: DescribeBackupDownloadRestrictionResponse =
            serde_json::from_str(nulls).expect("decode");
        assert_eq!(answer, DescribeBackupDownloadRestrictionResponse::default());
    }

    #[test]
    fn decodes_the_documented_answers_and_ignores_deprecated_arrays() {
        let text = r#"{
            "DownloadUrl": ["https://old?sign=x"],
            "InnerDownloadUrl": ["https://old-inner"],
            "Filenames": ["old.rdb"],
            "BackupInfos": [
                {"FileName": "a-1.rdb", "FileSize": 1234, "DownloadUrl": "https://h/a-1.rdb?sign=s", "InnerDownloadUrl": "https://i/a-1.rdb"},
                {"FileName": "a-2.rdb", "FileSize": 0, "DownloadUrl": "https://h/a-2.rdb?sign=s", "InnerDownloadUrl": null}
            ],
            "RequestId": "r"
        }"#;
        let answer: DescribeBackupUrlResponse = serde_json::from_str(text).expect("decode");
        assert_eq!(answer.backup_infos.len(), 2);
        assert_eq!(answer.backup_infos[0].file_size, 1234);
        assert_eq!(answer.backup_infos[1].file_size, 0);
        assert!(!format!("{:?}", answer.backup_infos[0]).contains("sign=s"));
        let first = &answer.backup_infos[0];
        assert_eq!(first.url_for(Network::Public), "https://h/a-1.rdb?sign=s");
        assert_eq!(first.url_for(Network::Intranet), "https://i/a-1.rdb");
        assert_eq!(answer.backup_infos[1].url_for(Network::Intranet), "");

        let list = r#"{"TotalCount": 1, "BackupSet": [{"BackupId": "165706342-5832225-1641692389",
            "InstanceId": "crs-1", "InstanceName": "n", "Region": "ap-guangzhou",
            "StartTime": "2024-01-01 03:00:00", "EndTime": "2024-01-01 03:01:00",
            "ExpireTime": "2024-01-08 03:00:00", "BackupType": "1", "Status": 2, "Locked": 0,
            "Remark": null, "FileType": "RDB-Redis 6.2", "BackupSize": 537, "FullBackup": 0,
            "InstanceType": 16}], "RequestId": "r"}"#;
        let answer: DescribeInstanceBackupsResponse = serde_json::from_str(list).expect("decode");
        assert!(answer.backup_set[0].is_finished());
        assert!(!answer.backup_set[0].encrypted, "Encrypted is optional");
        let encrypted = list.replace(
            "\"InstanceType\": 16",
            "\"InstanceType\": 16, \"Encrypted\": true",
        );
        let answer: DescribeInstanceBackupsResponse =
            serde_json::from_str(&encrypted).expect("decode");
        assert!(answer.backup_set[0].encrypted);
        let mut b = answer.backup_set[0].clone();
        for (status, finished) in [(1, false), (2, true), (3, false), (4, true), (-1, false)] {
            b.status = status;
            assert_eq!(b.is_finished(), finished, "status {status}");
        }
        // A finished backup that another workflow holds is not fetchable yet.
        b.status = 2;
        b.locked = 1;
        assert!(!b.is_finished());
    }

    #[test]
    fn decodes_the_backup_detail_of_an_encrypted_backup_without_showing_the_key() {
        let text = r#"{"BackupId": "b-1", "StartTime": "2024-01-01 03:00:00",
            "EndTime": "2024-01-01 03:01:00", "BackupType": "0", "Status": 2, "Remark": "",
            "Locked": 0, "BackupSize": 1024, "InstanceType": 6, "MemSize": 1024,
            "ShardNum": 1, "ReplicasNum": 1, "Encrypted": true,
            "DecryptKey": "0123456789abcdef0123456789abcdef", "KmsKeyId": "kms-9",
            "KeyAlgorithm": "AES-256-CBC", "RequestId": "r"}"#;
        let d: DescribeBackupDetailResponse = serde_json::from_str(text).expect("decode");
        assert!(d.encrypted);
        assert_eq!(d.decrypt_key.expose(), "0123456789abcdef0123456789abcdef");
        assert_eq!(d.kms_key_id, "kms-9");
        assert_eq!(d.key_algorithm, "AES-256-CBC");
        let shown = format!("{d:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");

        // An unencrypted backup: the optional fields absent or null.
        for text in [
            r#"{"BackupId": "b-2", "Status": 2}"#,
            r#"{"BackupId": "b-2", "Encrypted": null, "DecryptKey": null, "KmsKeyId": null, "KeyAlgorithm": null}"#,
        ] {
            let d: DescribeBackupDetailResponse = serde_json::from_str(text).expect("decode");
            assert!(!d.encrypted);
            assert!(d.decrypt_key.is_empty());
            assert!(d.kms_key_id.is_empty() && d.key_algorithm.is_empty());
        }
        let request = DescribeBackupDetailRequest {
            instance_id: "crs-1".into(),
            backup_id: "b-1".into(),
        };
        assert_eq!(
            serde_json::to_value(&request).expect("json"),
            serde_json::json!({"InstanceId": "crs-1", "BackupId": "b-1"})
        );
    }

    #[test]
    fn requests_use_pascal_case() {
        let r = DescribeInstanceBackupsRequest {
            instance_id: "crs-1".into(),
            limit: 100,
            offset: 200,
            begin_time: "2024-01-01 00:00:00".into(),
            end_time: "2024-01-31 00:00:00".into(),
            status: LISTED_STATUSES.to_vec(),
        };
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["InstanceId"], "crs-1");
        assert_eq!(v["Limit"], 100);
        assert_eq!(v["Offset"], 200);
        assert_eq!(v["BeginTime"], "2024-01-01 00:00:00");
        assert_eq!(v["Status"], serde_json::json!([1, 2, 3, 4]));
        let i = DescribeInstancesRequest {
            instance_id: None,
            limit: 1000,
            offset: 0,
        };
        let v = serde_json::to_value(&i).expect("json");
        assert!(v.get("InstanceId").is_none());
    }
}
