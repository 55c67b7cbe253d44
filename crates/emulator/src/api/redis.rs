//! Redis API 2018-04-12 actions (reference §6): DescribeInstances,
//! DescribeInstanceBackups, DescribeBackupUrl, DescribeBackupDetail and
//! DescribeBackupDownloadRestriction, with the documented paging rules,
//! filters and error codes.

use serde_json::{json, Map, Value};

use super::{directed, page, to_map, ApiError, Call};
use crate::cos::UrlShape;
use crate::state::{format_api_time, redis_status, RedisBackup, RedisInstance};

/// The API version.
pub(crate) const VERSION: &str = "2018-04-12";

/// Redis' code for a bad parameter value.
pub(crate) const INVALID_VALUE: &str = "InvalidParameterValue";

/// `KeyAlgorithm` of an encrypted backup: the only documented value.
pub(crate) const KEY_ALGORITHM: &str = "AES-256-CBC";

/// Lifetime of the URLs of `DescribeBackupUrl` (6 hours).
pub(crate) const URL_LIFETIME_SECS: i64 = 21600;

/// The `LimitType` values `DescribeBackupUrl` accepts (reference §12).
const LIMIT_TYPES: [&str; 3] = ["NoLimit", "LimitOnlyIntranet", "Customize"];

/// The implementation of an action, if the service has it.
pub(crate) fn action(name: &str) -> Option<super::Action> {
    Some(match name {
        "DescribeInstances" => describe_instances,
        "DescribeInstanceBackups" => describe_instance_backups,
        "DescribeBackupUrl" => describe_backup_url,
        "DescribeBackupDetail" => describe_backup_detail,
        "DescribeBackupDownloadRestriction" => describe_backup_download_restriction,
        _ => return None,
    })
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(INVALID_VALUE, message)
}

fn business_error(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidParameter.InvalidParameter", message)
}

fn instance_not_found(id: &str) -> ApiError {
    ApiError::new(
        "ResourceNotFound.InstanceNotExists",
        format!("The instance {id} does not exist."),
    )
}

/// Redis paging: `Offset` counts items and must be a multiple of `Limit`.
fn paging(
    call: &Call<'_>,
    default: i64,
    max: i64,
    zero_is_default: bool,
) -> Result<(usize, usize), ApiError> {
    let (offset, limit) = call.params.paging(default, max, zero_is_default)?;
    if offset % limit != 0 {
        return Err(invalid(format!(
            "Offset must be a multiple of Limit (offset = limit * (page - 1)); got Offset {offset}, Limit {limit}."
        )));
    }
    Ok((offset, limit))
}

fn region_id(region: &str) -> i64 {
    match region {
        "ap-guangzhou" => 1,
        "ap-shanghai" => 4,
        "ap-hongkong" => 5,
        "ap-shanghai-fsi" => 7,
        "ap-beijing" => 8,
        "ap-singapore" => 9,
        "ap-shenzhen-fsi" => 11,
        "na-siliconvalley" => 15,
        "ap-chengdu" => 16,
        "eu-frankfurt" => 17,
        "ap-seoul" => 18,
        "ap-chongqing" => 19,
        "na-ashburn" => 22,
        "ap-bangkok" => 23,
        "ap-tokyo" => 25,
        _ => 0,
    }
}

fn instance_json(i: &RedisInstance) -> Value {
    let cluster = i.is_cluster();
    let first = json!({
        "InstanceName": i.name,
        "InstanceId": i.instance_id,
        "Appid": 1250000000,
        "ProjectId": 0,
        "RegionId": region_id(&i.region),
        "ZoneId": i.zone_id,
        "VpcId": 0,
        "SubnetId": 0,
        "Status": i.status,
        "WanIp": "10.0.0.6",
        "Port": 6379,
        "Createtime": format_api_time(i.created),
        "Size": (i.shard_size_mb * u64::from(i.shard_count)) as f64,
        "SizeUsed": 0.0,
        "Type": i.type_code,
        "AutoRenewFlag": 0,
        "DeadlineTime": "0000-00-00 00:00:00",
        "Engine": "Redis",
        "ProductType": if cluster { "cluster" } else { "standalone" },
        "UniqVpcId": "vpc-emulated",
        "UniqSubnetId": "subnet-emulated",
        "BillingMode": 0,
        "InstanceTitle": if i.status == 2 { "运行中" } else { "" },
    });
    // Split in two: one `json!` literal this long exceeds the macro recursion limit.
    let more = json!({
        "OfflineTime": "0000-00-00 00:00:00",
        "SubStatus": 0,
        "Tags": [],
        "InstanceNode": [],
        "RedisShardSize": i.shard_size_mb,
        "RedisShardNum": i.shard_count,
        "RedisReplicasNum": i.replicas,
        "PriceId": 0,
        "CloseTime": "0000-00-00 00:00:00",
        "SlaveReadWeight": 0,
        "InstanceTags": [],
        "ProjectName": "默认项目",
        "NoAuth": false,
        "ClientLimit": 10000,
        "DtsStatus": 0,
        "NetLimit": 48,
        "PasswordFree": 0,
        "Vip6": "",
        "IPv6": "",
        "ReadOnly": 0,
        "RemainBandwidthDuration": "",
        "DiskSize": 0,
        "MonitorVersion": "1s",
        "ClientLimitMin": 10000,
        "ClientLimitMax": 100000,
        "NodeSet": [],
        "Region": i.region,
        "WanAddress": "",
        "PolarisServer": "",
        "CurrentProxyVersion": "5.6.0",
        "CurrentRedisVersion": i.engine_version,
        "UpgradeProxyVersion": "",
        "UpgradeRedisVersion": "",
        "BackupMode": "NormalLevelBackup",
        "DeleteProtectionSwitch": 0,
        "ProductVersion": "local",
    });
    let mut out = to_map(first);
    out.extend(to_map(more));
    Value::Object(out)
}

/// Request fields of DescribeInstances the spec defines.
const INSTANCES_FIELDS: &[&str] = &[
    "Limit",
    "Offset",
    "InstanceId",
    "InstanceIds",
    "SearchKeys",
    "SearchKey",
    "InstanceName",
    "OrderBy",
    "OrderType",
    "Status",
    "TypeVersion",
    "EngineName",
    "Type",
    "ProjectIds",
    "UniqVpcIds",
    "UniqSubnetIds",
    "VpcIds",
    "SubnetIds",
    "RegionIds",
    "AutoRenew",
    "BillingMode",
    "InstanceTags",
    "TagKeys",
    "ProductVersions",
    "AzMode",
    "TypeList",
    "MonitorVersion",
];

/// Defined fields whose filtering the emulator does not model: answered
/// with `UnsupportedOperation` rather than silently ignored.
const INSTANCES_UNMODELLED: &[&str] = &[
    "EngineName",
    "Type",
    "UniqVpcIds",
    "UniqSubnetIds",
    "VpcIds",
    "SubnetIds",
    "RegionIds",
    "AutoRenew",
    "InstanceTags",
    "TagKeys",
    "ProductVersions",
    "AzMode",
    "TypeList",
    "MonitorVersion",
];

fn describe_instances(call: &Call<'_>) -> Result<Map<String, Value>, ApiError> {
    let p = &call.params;
    p.check_known(INSTANCES_FIELDS)?;
    if let Some(field) = INSTANCES_UNMODELLED.iter().find(|f| p.has(f)) {
        return Err(ApiError::new(
            "UnsupportedOperation",
            format!("The emulator does not filter instances by `{field}`."),
        ));
    }
    let (offset, limit) = paging(call, 20, 1000, true)?;
    let instance_id = p.string("InstanceId")?;
    let instance_ids = p.string_list("InstanceIds")?;
    let search_key = p.string("SearchKey")?;
    let search_keys = p.string_list("SearchKeys")?;
    let name = p.string("InstanceName")?;
    let status = p.int_list("Status")?;
    let type_version = p.int("TypeVersion")?;
    let project_ids = p.int_list("ProjectIds")?;
    let billing = p.string("BillingMode")?;
    if let Some(b) = &billing {
        if b != "postpaid" && b != "prepaid" {
            return Err(invalid(format!(
                "BillingMode must be postpaid or prepaid, got {b:?}."
            )));
        }
    }
    let order_by = p
        .string("OrderBy")?
        .unwrap_or_else(|| "createtime".to_string());
    if ![
        "projectId",
        "createtime",
        "instancename",
        "type",
        "curDeadline",
    ]
    .contains(&order_by.as_str())
    {
        return Err(invalid(format!("OrderBy {order_by:?} is not supported.")));
    }
    let descending = match p.int("OrderType")? {
        None | Some(1) => true,
        Some(0) => false,
        Some(o) => return Err(invalid(format!("OrderType must be 0 or 1, got {o}."))),
    };
    let world = call.ctx.state.lock();
    let mut found: Vec<&RedisInstance> = world
        .redis
        .iter()
        .map(|e| &e.instance)
        .filter(|i| call.sees_region(&i.region))
        .filter(|i| instance_id.as_ref().is_none_or(|id| &i.instance_id == id))
        .filter(|i| {
            instance_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&i.instance_id))
        })
        .filter(|i| {
            search_key
                .as_ref()
                .is_none_or(|k| i.name.contains(k.as_str()))
        })
        .filter(|i| {
            search_keys.as_ref().is_none_or(|keys| {
                keys.iter()
                    .any(|k| i.name.contains(k.as_str()) || &i.instance_id == k)
            })
        })
        .filter(|i| name.as_ref().is_none_or(|n| &i.name == n))
        .filter(|i| status.as_ref().is_none_or(|s| s.contains(&i.status)))
        .filter(|i| type_version.is_none_or(|t| t == if i.is_cluster() { 3 } else { 2 }))
        .filter(|_| project_ids.as_ref().is_none_or(|ids| ids.contains(&0)))
        .filter(|_| billing.as_deref().is_none_or(|b| b == "postpaid"))
        .collect();
    found.sort_by(|a, b| {
        let ord = match order_by.as_str() {
            "instancename" => a.name.cmp(&b.name),
            "type" => a.type_code.cmp(&b.type_code),
            _ => a.created.cmp(&b.created),
        };
        directed(
            ord.then_with(|| a.instance_id.cmp(&b.instance_id)),
            descending,
        )
    });
    Ok(page("InstanceSet", &found, offset, limit, |i| {
        instance_json(i)
    }))
}

/// The listing's `BackupSize`: an internal number that is never the sum
/// of the files' sizes (537 per file, as in the documentation's example).
pub fn internal_backup_size(b: &RedisBackup) -> u64 {
    537 * b.files.len().max(1) as u64
}

fn backup_json(i: &RedisInstance, b: &RedisBackup, now: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "StartTime": format_api_time(b.start),
        "BackupId": b.backup_id,
        "BackupType": b.backup_type,
        "Status": b.effective_status(now),
        "Remark": b.remark,
        "Locked": i64::from(b.locked),
        // "Internal field" (reference §12): like the documentation's 537,
        // not the sum of the files, which clients must not expect.
        "BackupSize": internal_backup_size(b),
        "FullBackup": 0,
        "InstanceType": i.type_code,
        "InstanceId": i.instance_id,
        "InstanceName": i.name,
        "Region": i.region,
        "EndTime": b.end.map(format_api_time).unwrap_or_default(),
        "FileType": b
            .file_type
            .clone()
            .unwrap_or_else(|| format!("RDB-Redis {}", i.engine_version)),
        "ExpireTime": format_api_time(b.expire),
        "Encrypted": b.encrypted,
    })
}

fn describe_instance_backups(call: &Call<'_>) -> Result<Map<String, Value>, ApiError> {
    let p = &call.params;
    p.check_known(&[
        "Limit",
        "Offset",
        "InstanceId",
        "BeginTime",
        "EndTime",
        "Status",
        "InstanceName",
    ])?;
    let (offset, limit) = paging(call, 20, 100, false)?;
    let begin = p.time("BeginTime")?;
    let end = p.time("EndTime")?;
    if let Some(begin) = begin {
        let until = end.unwrap_or(call.now);
        if begin > until {
            return Err(business_error("BeginTime must not be after EndTime."));
        }
        if until - begin > chrono::Duration::days(30) {
            return Err(business_error(
                "The time span between BeginTime and EndTime must not exceed 30 days.",
            ));
        }
    }
    let statuses = p
        .int_list("Status")?
        .unwrap_or_else(|| vec![redis_status::NORMAL]);
    if let Some(bad) = statuses.iter().find(|s| ![1, 2, 3, 4, -1, -2].contains(*s)) {
        return Err(invalid(format!("Status {bad} is not a backup status.")));
    }
    let instance_id = p.string("InstanceId")?.filter(|s| !s.is_empty());
    let name = p.string("InstanceName")?;
    let world = call.ctx.state.lock();
    if let Some(id) = &instance_id {
        if !world
            .redis_entry(id)
            .is_some_and(|e| call.sees_region(&e.instance.region))
        {
            return Err(instance_not_found(id));
        }
    }
    let mut found: Vec<(&RedisInstance, &RedisBackup)> = world
        .redis
        .iter()
        .filter(|e| call.sees_region(&e.instance.region))
        .filter(|e| {
            instance_id
                .as_ref()
                .is_none_or(|id| &e.instance.instance_id == id)
        })
        .filter(|e| {
            name.as_ref()
                .is_none_or(|n| e.instance.name.contains(n.as_str()))
        })
        .flat_map(|e| e.backups.iter().map(move |b| (&e.instance, b)))
        .filter(|(_, b)| begin.is_none_or(|t| b.start >= t))
        .filter(|(_, b)| end.is_none_or(|t| b.start <= t))
        .filter(|(_, b)| statuses.contains(&b.effective_status(call.now)))
        .collect();
    // Newest first, as the console and the API list them.
    found.sort_by(|a, b| {
        b.1.start
            .cmp(&a.1.start)
            .then_with(|| b.1.backup_id.cmp(&a.1.backup_id))
    });
    Ok(page("BackupSet", &found, offset, limit, |(i, b)| {
        backup_json(i, b, call.now)
    }))
}

/// Find a visible instance and one of its backups, with the documented codes.
fn find_backup<'w>(
    call: &Call<'_>,
    world: &'w crate::state::World,
    instance_id: &str,
    backup_id: &str,
) -> Result<(&'w RedisInstance, &'w RedisBackup), ApiError> {
    let entry = world
        .redis_entry(instance_id)
        .filter(|e| call.sees_region(&e.instance.region))
        .ok_or_else(|| instance_not_found(instance_id))?;
    let backup = entry
        .backups
        .iter()
        .find(|b| b.backup_id == backup_id)
        .ok_or_else(|| {
            ApiError::new(
                "InvalidParameterValue.BackupNotExists",
                format!("The backup {backup_id} does not exist."),
            )
        })?;
    Ok((&entry.instance, backup))
}

fn describe_backup_url(call: &Call<'_>) -> Result<Map<String, Value>, ApiError> {
    let p = &call.params;
    p.check_known(&[
        "InstanceId",
        "BackupId",
        "LimitType",
        "VpcComparisonSymbol",
        "IpComparisonSymbol",
        "LimitVpc",
        "LimitIp",
    ])?;
    let instance_id = p.required_string("InstanceId")?;
    let backup_id = p.required_string("BackupId")?;
    let limit_type = p.string("LimitType")?;
    if let Some(limit_type) = &limit_type {
        if !LIMIT_TYPES.contains(&limit_type.as_str()) {
            return Err(invalid(format!(
                "LimitType must be NoLimit, LimitOnlyIntranet or Customize, got {limit_type:?}."
            )));
        }
        if limit_type == "Customize" && !p.has("LimitVpc") && !p.has("LimitIp") {
            return Err(business_error(
                "LimitType Customize needs LimitVpc or LimitIp.",
            ));
        }
    }
    if let Some(symbol) = p.string("VpcComparisonSymbol")? {
        if symbol != "In" {
            return Err(invalid(format!(
                "VpcComparisonSymbol must be In, got {symbol:?}."
            )));
        }
    }
    if let Some(symbol) = p.string("IpComparisonSymbol")? {
        if symbol != "In" && symbol != "NotIn" {
            return Err(invalid(format!(
                "IpComparisonSymbol must be In or NotIn, got {symbol:?}."
            )));
        }
    }
    p.string_list("LimitIp")?;
    let world = call.ctx.state.lock();
    let (_, backup) = find_backup(call, &world, &instance_id, &backup_id)?;
    let status = backup.effective_status(call.now);
    if backup.locked || !matches!(status, redis_status::NORMAL | redis_status::EXPORTED) {
        return Err(ApiError::new(
            "ResourceUnavailable.BackupStatusInvalid",
            format!("The backup {backup_id} is locked by another workflow, in progress or expired (status {status})."),
        ));
    }
    // A per-call LimitType replaces the account's policy for these links.
    let intranet_only = limit_type
        .as_deref()
        .unwrap_or(&world.redis_restriction.limit_type)
        .eq_ignore_ascii_case("LimitOnlyIntranet");
    let cos = call.ctx.state.cos();
    let mut infos = Vec::with_capacity(backup.files.len());
    let mut urls = Vec::with_capacity(backup.files.len());
    let mut inner_urls = Vec::with_capacity(backup.files.len());
    let mut names = Vec::with_capacity(backup.files.len());
    for file in &backup.files {
        let url = cos.presign(
            &call.ctx.base_url,
            &file.cos_key,
            URL_LIFETIME_SECS,
            UrlShape::Wrapped,
        );
        let inner_url = if file.inner_url_missing {
            String::new()
        } else {
            cos.presign(
                &call.ctx.intranet_base_url,
                &file.cos_key,
                URL_LIFETIME_SECS,
                UrlShape::Wrapped,
            )
        };
        cos.restrict_to_intranet(&url, intranet_only);
        infos.push(json!({
            "FileName": file.name,
            "FileSize": file.api_size(),
            "DownloadUrl": url,
            "InnerDownloadUrl": inner_url,
        }));
        urls.push(url);
        inner_urls.push(inner_url);
        names.push(file.name.clone());
    }
    Ok(to_map(json!({
        "DownloadUrl": urls,
        "InnerDownloadUrl": inner_urls,
        "Filenames": names,
        "BackupInfos": infos,
    })))
}

fn describe_backup_detail(call: &Call<'_>) -> Result<Map<String, Value>, ApiError> {
    let p = &call.params;
    p.check_known(&["InstanceId", "BackupId"])?;
    let instance_id = p.required_string("InstanceId")?;
    let backup_id = p.required_string("BackupId")?;
    let world = call.ctx.state.lock();
    let (instance, backup) = find_backup(call, &world, &instance_id, &backup_id)?;
    Ok(to_map(json!({
        "BackupId": backup.backup_id,
        "StartTime": format_api_time(backup.start),
        "EndTime": backup.end.map(format_api_time).unwrap_or_default(),
        // This action documents 1 = manual, 0 = automatic: the opposite of
        // RedisBackupSet, reproduced as documented.
        "BackupType": if backup.backup_type == "0" { "1" } else { "0" },
        "Status": backup.effective_status(call.now),
        "Remark": backup.remark,
        "Locked": i64::from(backup.locked),
        "BackupSize": backup.files.iter().map(|f| f.size).sum::<u64>(),
        "InstanceType": instance.type_code,
        "MemSize": instance.shard_size_mb,
        "ShardNum": instance.shard_count,
        "ReplicasNum": instance.replicas,
        "Encrypted": backup.encrypted,
        // The SDK model's optional fields: null for an unencrypted backup,
        // and DecryptKey null for a key the API does not give out (KMS).
        "DecryptKey": Some(&backup.decrypt_key).filter(|k| backup.encrypted && !k.is_empty()),
        "KmsKeyId": Some(&backup.kms_key_id).filter(|k| backup.encrypted && !k.is_empty()),
        "KeyAlgorithm": backup.encrypted.then_some(KEY_ALGORITHM),
    })))
}

fn describe_backup_download_restriction(call: &Call<'_>) -> Result<Map<String, Value>, ApiError> {
    call.params.check_known(&[])?;
    let world = call.ctx.state.lock();
    let r = &world.redis_restriction;
    let vpcs: Vec<Value> = r
        .limit_vpc
        .iter()
        .map(|(region, list)| json!({ "Region": region, "VpcList": list }))
        .collect();
    Ok(to_map(json!({
        "LimitType": r.limit_type,
        "VpcComparisonSymbol": r.vpc_comparison_symbol,
        "IpComparisonSymbol": r.ip_comparison_symbol,
        "LimitVpc": vpcs,
        "LimitIp": r.limit_ip,
    })))
}
