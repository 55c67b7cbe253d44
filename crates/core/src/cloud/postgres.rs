//! TencentDB for PostgreSQL (API 2017-03-12): typed requests and answers
//! for instance lookup, base and log backup listing (item-offset paging over
//! a finish-time window), download URLs (reference §7) and the account's
//! download policy (`DescribeBackupDownloadRestriction`, §7.6).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cloud::client::ApiClient;
use crate::cloud::error::ApiError;
use crate::cloud::paging::{collect_pages, null_as_default, Page};
use crate::model::{Network, Service};
use tcbackup_signing::times::ApiTimeZone;

/// Page size of every PostgreSQL list action (documented maximum 100).
pub const LIMIT: u64 = 100;

/// Longest `URLExpireTime` the API accepts, in hours.
pub const MAX_URL_EXPIRE_HOURS: u32 = 36;

/// The `RestrictionType` of a link that works only inside Tencent Cloud.
/// The only value tcbackup sends: a public download sends no restriction,
/// so that the account's own policy applies (`NONE` would override it).
pub const RESTRICTION_INTRANET: &str = "INTRANET";

/// The `State` of a usable backup.
pub const FINISHED_STATE: &str = "finished";

/// `{Name, Values}`; filters are AND-ed, values OR-ed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    /// e.g. `db-instance-id`.
    pub name: String,
    /// Accepted values.
    pub values: Vec<String>,
}

impl Filter {
    /// The `db-instance-id` filter for one instance.
    pub fn instance(instance_id: &str) -> Self {
        Self {
            name: "db-instance-id".to_string(),
            values: vec![instance_id.to_string()],
        }
    }
}

/// `DescribeDBInstances` request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDbInstancesRequest {
    /// Filters.
    pub filters: Vec<Filter>,
    /// Page size (≤ 100).
    pub limit: u64,
    /// Item offset.
    pub offset: u64,
}

/// `DescribeDBInstances` answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDbInstancesResponse {
    /// All matching instances.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_count: u64,
    /// This page.
    #[serde(
        rename = "DBInstanceSet",
        default,
        deserialize_with = "null_as_default"
    )]
    pub db_instance_set: Vec<DbInstance>,
}

/// One instance (the fields used).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct DbInstance {
    /// `postgres-…`.
    #[serde(rename = "DBInstanceId")]
    pub db_instance_id: String,
    /// Display name.
    #[serde(
        rename = "DBInstanceName",
        default,
        deserialize_with = "null_as_default"
    )]
    pub db_instance_name: String,
    /// Region.
    #[serde(rename = "Region", default, deserialize_with = "null_as_default")]
    pub region: String,
    /// e.g. `running`.
    #[serde(
        rename = "DBInstanceStatus",
        default,
        deserialize_with = "null_as_default"
    )]
    pub db_instance_status: String,
    /// e.g. `16.2`.
    #[serde(rename = "DBVersion", default, deserialize_with = "null_as_default")]
    pub db_version: String,
    /// e.g. `16`.
    #[serde(
        rename = "DBMajorVersion",
        default,
        deserialize_with = "null_as_default"
    )]
    pub db_major_version: String,
    /// e.g. `v16.2_r1.5`.
    #[serde(
        rename = "DBKernelVersion",
        default,
        deserialize_with = "null_as_default"
    )]
    pub db_kernel_version: String,
}

/// `DescribeBaseBackups` / `DescribeLogBackups` request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeBackupsRequest {
    /// Lower bound of the finish time.
    pub min_finish_time: String,
    /// Upper bound of the finish time.
    pub max_finish_time: String,
    /// Filters (`db-instance-id`).
    pub filters: Vec<Filter>,
    /// Page size (1..=100).
    pub limit: u64,
    /// Item offset.
    pub offset: u64,
    /// `StartTime`: a stable order while paging.
    pub order_by: String,
    /// `asc`: new backups append at the end instead of shifting pages.
    pub order_by_type: String,
}

/// `DescribeBaseBackups` answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeBaseBackupsResponse {
    /// All matching backups.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_count: u64,
    /// This page.
    #[serde(default, deserialize_with = "null_as_default")]
    pub base_backup_set: Vec<PgBackup>,
}

/// `DescribeLogBackups` answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeLogBackupsResponse {
    /// All matching backups.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_count: u64,
    /// This page.
    #[serde(default, deserialize_with = "null_as_default")]
    pub log_backup_set: Vec<PgBackup>,
}

/// A base or log backup (the two share their fields).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct PgBackup {
    /// The instance.
    #[serde(rename = "DBInstanceId", default, deserialize_with = "null_as_default")]
    pub db_instance_id: String,
    /// Backup id (the `BackupId` of the download API).
    pub id: String,
    /// File name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// `physical` / `logical`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup_method: String,
    /// `automatic` / `manual`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup_mode: String,
    /// `init`, `running`, `finished`, `failed`, `canceled`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub state: String,
    /// Bytes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub size: u64,
    /// `YYYY-MM-DD hh:mm:ss`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub start_time: String,
    /// `YYYY-MM-DD hh:mm:ss`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub finish_time: String,
    /// `YYYY-MM-DD hh:mm:ss`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub expire_time: String,
}

impl PgBackup {
    /// Finished and usable: `State` `finished`.
    pub fn is_finished(&self) -> bool {
        self.state.eq_ignore_ascii_case(FINISHED_STATE)
    }
}

/// Base or log backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgBackupType {
    /// Full data backups.
    Base,
    /// WAL backups.
    Log,
}

impl PgBackupType {
    /// The `BackupType` value of `DescribeBackupDownloadURL`.
    pub fn as_api_str(self) -> &'static str {
        match self {
            PgBackupType::Base => "BaseBackup",
            PgBackupType::Log => "LogBackup",
        }
    }

    /// The list action.
    pub fn list_action(self) -> &'static str {
        match self {
            PgBackupType::Base => "DescribeBaseBackups",
            PgBackupType::Log => "DescribeLogBackups",
        }
    }
}

/// `DescribeBackupDownloadURL` request.
#[derive(Debug, Clone, Serialize)]
pub struct DescribeBackupDownloadUrlRequest {
    /// The instance.
    #[serde(rename = "DBInstanceId")]
    pub db_instance_id: String,
    /// `BaseBackup` or `LogBackup`.
    #[serde(rename = "BackupType")]
    pub backup_type: String,
    /// The backup's `Id`.
    #[serde(rename = "BackupId")]
    pub backup_id: String,
    /// Link lifetime in hours, 0..=36.
    #[serde(rename = "URLExpireTime")]
    pub url_expire_time: u32,
    /// `{"RestrictionType": "INTRANET"}` for an intranet link; absent otherwise.
    #[serde(
        rename = "BackupDownloadRestriction",
        skip_serializing_if = "Option::is_none"
    )]
    pub backup_download_restriction: Option<BackupDownloadRestriction>,
}

/// A per-call download restriction (only the field tcbackup sets).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackupDownloadRestriction {
    /// `INTRANET`.
    #[serde(rename = "RestrictionType")]
    pub restriction_type: String,
}

/// `DescribeBackupDownloadRestriction` answer: the account's download
/// policy for the region. The service mixes case (`Customize`, `Allow`)
/// and sends empty strings: compare case-insensitively.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct DescribeBackupDownloadRestrictionResponse {
    /// `NONE`, `INTRANET` or `CUSTOMIZE`, in any case.
    #[serde(
        rename = "RestrictionType",
        default,
        deserialize_with = "null_as_default"
    )]
    pub restriction_type: String,
    /// `ALLOW` / `DENY` for `VpcIdSet`, in any case, or empty.
    #[serde(
        rename = "VpcRestrictionEffect",
        default,
        deserialize_with = "null_as_default"
    )]
    pub vpc_restriction_effect: String,
    /// Listed VPCs.
    #[serde(rename = "VpcIdSet", default, deserialize_with = "null_as_default")]
    pub vpc_id_set: Vec<String>,
    /// `ALLOW` / `DENY` for `IpSet`, in any case, or empty.
    #[serde(
        rename = "IpRestrictionEffect",
        default,
        deserialize_with = "null_as_default"
    )]
    pub ip_restriction_effect: String,
    /// Listed IPs.
    #[serde(rename = "IpSet", default, deserialize_with = "null_as_default")]
    pub ip_set: Vec<String>,
}

/// `DescribeBackupDownloadURL` answer.
#[derive(Clone, Deserialize)]
pub struct DescribeBackupDownloadUrlResponse {
    /// The presigned COS URL.
    #[serde(
        rename = "BackupDownloadURL",
        default,
        deserialize_with = "null_as_default"
    )]
    pub backup_download_url: String,
}

impl std::fmt::Debug for DescribeBackupDownloadUrlResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DescribeBackupDownloadUrlResponse")
            .field(
                "backup_download_url",
                &tcbackup_signing::secret::redact_url(&self.backup_download_url),
            )
            .finish()
    }
}

/// The instance `instance_id`, or `None` when the API does not know it.
pub async fn describe_instance(
    client: &ApiClient,
    region: Option<&str>,
    instance_id: &str,
) -> Result<Option<DbInstance>, ApiError> {
    let action = "DescribeDBInstances";
    let instances = collect_pages(
        action,
        LIMIT,
        |i: &DbInstance| i.db_instance_id.clone(),
        |offset| async move {
            let request = DescribeDbInstancesRequest {
                filters: vec![Filter::instance(instance_id)],
                limit: LIMIT,
                offset,
            };
            let answer: DescribeDbInstancesResponse = client
                .call(Service::Postgres, action, region, &request)
                .await?;
            Ok(Page {
                total: answer.total_count,
                items: answer.db_instance_set,
            })
        },
    )
    .await?;
    Ok(instances
        .into_iter()
        .find(|i| i.db_instance_id == instance_id))
}

/// Every backup of `kind` of `instance_id` that finished in
/// `[min_finish, max_finish]`, each once, asked for in pages of `limit`
/// (clamped to 1..=100; `LIMIT` normally).
#[allow(clippy::too_many_arguments)]
pub async fn list_backups(
    client: &ApiClient,
    region: Option<&str>,
    instance_id: &str,
    kind: PgBackupType,
    min_finish: DateTime<Utc>,
    max_finish: DateTime<Utc>,
    tz: ApiTimeZone,
    limit: u64,
) -> Result<Vec<PgBackup>, ApiError> {
    let action = kind.list_action();
    let limit = limit.clamp(1, LIMIT);
    let min_finish_time = tz.format(min_finish);
    let max_finish_time = tz.format(max_finish);
    collect_pages(
        action,
        limit,
        |b: &PgBackup| b.id.clone(),
        |offset| {
            let request = DescribeBackupsRequest {
                min_finish_time: min_finish_time.clone(),
                max_finish_time: max_finish_time.clone(),
                filters: vec![Filter::instance(instance_id)],
                limit,
                offset,
                order_by: "StartTime".to_string(),
                order_by_type: "asc".to_string(),
            };
            async move {
                let (total, items) = match kind {
                    PgBackupType::Base => {
                        let answer: DescribeBaseBackupsResponse = client
                            .call(Service::Postgres, action, region, &request)
                            .await?;
                        (answer.total_count, answer.base_backup_set)
                    }
                    PgBackupType::Log => {
                        let answer: DescribeLogBackupsResponse = client
                            .call(Service::Postgres, action, region, &request)
                            .await?;
                        (answer.total_count, answer.log_backup_set)
                    }
                };
                Ok(Page { total, items })
            }
        },
    )
    .await
}

/// A fresh download URL for one backup, valid `url_expire_hours` (0..=36,
/// checked before calling), that works over `network`.
#[allow(clippy::too_many_arguments)]
pub async fn download_url(
    client: &ApiClient,
    region: Option<&str>,
    instance_id: &str,
    kind: PgBackupType,
    backup_id: &str,
    url_expire_hours: u32,
    network: Network,
) -> Result<String, ApiError> {
    let action = "DescribeBackupDownloadURL";
    if url_expire_hours > MAX_URL_EXPIRE_HOURS {
        return Err(ApiError::InvalidRequest {
            action: action.to_string(),
            reason: format!(
                "URLExpireTime {url_expire_hours} hours is outside 0..={MAX_URL_EXPIRE_HOURS}"
            ),
        });
    }
    let request = DescribeBackupDownloadUrlRequest {
        db_instance_id: instance_id.to_string(),
        backup_type: kind.as_api_str().to_string(),
        backup_id: backup_id.to_string(),
        url_expire_time: url_expire_hours,
        backup_download_restriction: match network {
            Network::Public => None,
            Network::Intranet => Some(BackupDownloadRestriction {
                restriction_type: RESTRICTION_INTRANET.to_string(),
            }),
        },
    };
    let answer: DescribeBackupDownloadUrlResponse = client
        .call(Service::Postgres, action, region, &request)
        .await?;
    if answer.backup_download_url.is_empty() {
        return Err(ApiError::BadResponse {
            action: action.to_string(),
            what: format!("an empty BackupDownloadURL for backup {backup_id}"),
        });
    }
    Ok(answer.backup_download_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_request_sends_no_restriction_and_an_intranet_one_intranet() {
        let request = |restriction: Option<BackupDownloadRestriction>| {
            serde_json::to_value(DescribeBackupDownloadUrlRequest {
                db_instance_id: "postgres-1".to_string(),
                backup_type: "BaseBackup".to_string(),
                backup_id: "b".to_string(),
                url_expire_time: 12,
                backup_download_restriction: restriction,
            })
            .expect("serialise")
        };
        assert!(request(None).get("BackupDownloadRestriction").is_none());
        let intranet = request(Some(BackupDownloadRestriction {
            restriction_type: RESTRICTION_INTRANET.to_string(),
        }));
        assert_eq!(
            intranet["BackupDownloadRestriction"],
            serde_json::json!({"RestrictionType": "INTRANET"})
        );
    }

    #[test]
    fn decodes_the_download_restriction_as_the_documented_example_writes_it() {
        let text = r#"{"RestrictionType": "Customize", "VpcRestrictionEffect": "Allow",
            "VpcIdSet": ["vpc-1"], "IpRestrictionEffect": "", "IpSet": [], "RequestId": "r"}"#;
        let answer: DescribeBackupDownloadRestrictionResponse =
            serde_json::from_str(text).expect("decode");
        assert_eq!(answer.restriction_type, "Customize");
        assert_eq!(answer.vpc_restriction_effect, "Allow");
        assert_eq!(answer.vpc_id_set, ["vpc-1"]);
        assert_eq!(answer.ip_restriction_effect, "");
        let nulls = r#"{"RestrictionType": null, "VpcIdSet": null, "IpSet": null}"#;
        let answer: DescribeBackupDownloadRestrictionResponse =
            serde_json::from_str(nulls).expect("decode");
        assert_eq!(answer, DescribeBackupDownloadRestrictionResponse::default());
    }

    #[test]
    fn decodes_the_documented_answers() {
        let text = r#"{"TotalCount": 1, "BaseBackupSet": [{
            "DBInstanceId": "postgres-oamgybor", "Id": "88d3a71e-b822-5728-9d41-d8cfc0d0556e",
            "Name": "manual-20230215190924.tar.gz", "BackupMethod": "physical", "BackupMode": "manual",
            "State": "finished", "Size": 16783360, "StartTime": "2023-02-15 19:09:24",
            "FinishTime": "2023-02-15 19:10:00", "ExpireTime": "2023-02-18 23:59:59"}],
            "RequestId": "r"}"#;
        let answer: DescribeBaseBackupsResponse = serde_json::from_str(text).expect("decode");
        let b = &answer.base_backup_set[0];
        assert!(b.is_finished());
        assert_eq!(b.size, 16783360);
        let mut running = b.clone();
        running.state = "running".into();
        assert!(!running.is_finished());
        let logs: DescribeLogBackupsResponse =
            serde_json::from_str(r#"{"TotalCount": 0, "LogBackupSet": null}"#).expect("decode");
        assert!(logs.log_backup_set.is_empty());
        let instances: DescribeDbInstancesResponse = serde_json::from_str(
            r#"{"TotalCount": 1, "DBInstanceSet": [{"DBInstanceId": "postgres-1", "Region": "ap-guangzhou", "DBInstanceStatus": "running"}]}"#,
        )
        .expect("decode");
        assert_eq!(instances.db_instance_set[0].db_instance_id, "postgres-1");
    }

    #[test]
    fn requests_use_the_documented_names() {
        let r = DescribeBackupDownloadUrlRequest {
            db_instance_id: "postgres-1".into(),
            backup_type: PgBackupType::Log.as_api_str().into(),
            backup_id: "b".into(),
            url_expire_time: 12,
            backup_download_restriction: None,
        };
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["DBInstanceId"], "postgres-1");
        assert_eq!(v["BackupType"], "LogBackup");
        assert_eq!(v["URLExpireTime"], 12);
        let l = DescribeBackupsRequest {
            min_finish_time: "a".into(),
            max_finish_time: "b".into(),
            filters: vec![Filter::instance("postgres-1")],
            limit: 100,
            offset: 0,
            order_by: "StartTime".into(),
            order_by_type: "asc".into(),
        };
        let v = serde_json::to_value(&l).expect("json");
        assert_eq!(v["Filters"][0]["Name"], "db-instance-id");
        assert_eq!(v["Filters"][0]["Values"][0], "postgres-1");
        assert_eq!(v["MinFinishTime"], "a");
    }
}
