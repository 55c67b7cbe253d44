//! PostgreSQL API 2017-03-12 actions (reference §7): DescribeDBInstances,
//! DescribeBaseBackups, DescribeLogBackups, DescribeBackupDownloadURL and
//! DescribeBackupDownloadRestriction, with `Filters`, item offsets, the
//! default finish-time window and the documented error codes.

use chrono::Duration;
use serde_json::{json, Map, Value};

use super::params::Filter;
use super::{directed, page, to_map, ApiError, Call};
use crate::cos::UrlShape;
use crate::state::{format_api_time, PgBackup, PgBackupKind, PgInstance};

/// The API version.
pub(crate) const VERSION: &str = "2017-03-12";

/// PostgreSQL's code for a bad parameter value.
pub(crate) const INVALID_VALUE: &str = "InvalidParameterValue.InvalidParameterValueError";

/// Default and largest `URLExpireTime`, in hours.
pub(crate) const DEFAULT_URL_HOURS: i64 = 12;
pub(crate) const MAX_URL_HOURS: i64 = 36;

/// The implementation of an action, if the service has it.
pub(crate) fn action(name: &str) -> Option<super::Action> {
    Some(match name {
        "DescribeDBInstances" => describe_db_instances,
        "DescribeBaseBackups" => describe_base_backups,
        "DescribeLogBackups" => describe_log_backups,
        "DescribeBackupDownloadURL" => describe_backup_download_url,
        "DescribeBackupDownloadRestriction" => describe_backup_download_restriction,
        _ => return None,
    })
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(INVALID_VALUE, message)
}

/// Whether every filter matches (AND across filters). Each is checked, so
/// an unsupported filter name is refused even after a mismatch.
fn all_match(
    filters: &[Filter],
    matches: impl Fn(&Filter) -> Result<bool, ApiError>,
) -> Result<bool, ApiError> {
    let mut keep = true;
    for filter in filters {
        keep &= matches(filter)?;
    }
    Ok(keep)
}

fn descending(call: &Call<'_>, default_desc: bool) -> Result<bool, ApiError> {
    match call.params.string("OrderByType")?.as_deref() {
        None => Ok(default_desc),
        Some("desc") => Ok(true),
        Some("asc") => Ok(false),
        Some(other) => Err(invalid(format!(
            "OrderByType must be asc or desc, got {other:?}."
        ))),
    }
}

/// Whether `value` matches one of a filter's values (OR within a filter).
fn any_value(filter: &Filter, test: impl Fn(&str) -> bool) -> bool {
    filter.values.iter().any(|v| test(v))
}

fn instance_matches(filter: &Filter, i: &PgInstance) -> Result<bool, ApiError> {
    Ok(match filter.name.as_str() {
        "db-instance-id" => any_value(filter, |v| v == i.instance_id),
        "db-instance-name" => any_value(filter, |v| i.name.contains(v)),
        "db-project-id" => any_value(filter, |v| v.parse::<i64>().ok() == Some(i.project_id)),
        "db-pay-mode" => any_value(filter, |v| v == i.pay_mode),
        "db-private-ip" | "db-instance-ip" => any_value(filter, |v| v == i.private_ip),
        "db-instance-status" => any_value(filter, |v| v == i.status),
        // The emulated instances have no tags, public address or dedicated cluster.
        "db-tag-key" | "db-public-address" | "db-dedicated-cluster-id" => false,
        other => return Err(invalid(format!("Filter name {other:?} is not supported."))),
    })
}

fn instance_json(i: &PgInstance) -> Value {
    json!({
        "Region": i.region,
        "Zone": i.zone,
        "VpcId": "vpc-emulated",
        "SubnetId": "subnet-emulated",
        "DBInstanceId": i.instance_id,
        "DBInstanceName": i.name,
        "DBInstanceStatus": i.status,
        "DBInstanceMemory": 2,
        "DBInstanceStorage": 100,
        "DBInstanceCpu": 1,
        "DBInstanceClass": "cdb.pg.z1.2g",
        "DBMajorVersion": i.major_version,
        "DBVersion": i.version,
        "DBKernelVersion": format!("v{}_r1.5", i.version),
        "DBInstanceType": "primary",
        "DBInstanceVersion": "standard",
        "DBCharset": "UTF8",
        "CreateTime": format_api_time(i.created),
        "UpdateTime": format_api_time(i.created),
        "ExpireTime": "0000-00-00 00:00:00",
        "IsolatedTime": "0000-00-00 00:00:00",
        "PayType": i.pay_mode,
        "AutoRenew": 0,
        "DBInstanceNetInfo": [{
            "Address": "",
            "Ip": i.private_ip,
            "Port": 5432,
            "NetType": "private",
            "Status": "opened",
            "VpcId": "vpc-emulated",
            "SubnetId": "subnet-emulated",
            "ProtocolType": "postgresql",
        }],
        "Type": "physical",
        "AppId": 1250000000,
        "Uid": 100000,
        "ProjectId": i.project_id,
        "TagList": [],
        "MasterDBInstanceId": "",
        "ReadOnlyInstanceNum": 0,
        "StatusInReadonlyGroup": "",
        "OfflineTime": "",
        "DBNodeSet": [],
        "IsSupportTDE": 0,
        "DBEngine": "postgresql",
        "DBEngineConfig": "",
        "NetworkAccessList": [],
        "SupportIpv6": 0,
    })
}

fn describe_db_instances(call: &Call<'_>) -> Result<Map<String, Value>, ApiError> {
    let p = &call.params;
    p.check_known(&["Filters", "Limit", "Offset", "OrderBy", "OrderByType"])?;
    let filters = p.filters()?;
    // DescribeDBInstances documents `Limit` 0 as "use the default".
    let (offset, limit) = p.paging(10, 100, true)?;
    let order_by = p
        .string("OrderBy")?
        .unwrap_or_else(|| "CreateTime".to_string());
    if !["DBInstanceId", "CreateTime", "Name", "EndTime"].contains(&order_by.as_str()) {
        return Err(invalid(format!("OrderBy {order_by:?} is not supported.")));
    }
    let desc = descending(call, false)?;
    let world = call.ctx.state.lock();
    let mut found = Vec::new();
    for entry in world
        .pg
        .iter()
        .filter(|e| call.sees_region(&e.instance.region))
    {
        if all_match(&filters, |f| instance_matches(f, &entry.instance))? {
            found.push(&entry.instance);
        }
    }
    found.sort_by(|a, b| {
        let ord = match order_by.as_str() {
            "DBInstanceId" => a.instance_id.cmp(&b.instance_id),
            "Name" => a.name.cmp(&b.name),
            _ => a.created.cmp(&b.created),
        }
        .then_with(|| a.instance_id.cmp(&b.instance_id));
        directed(ord, desc)
    });
    Ok(page("DBInstanceSet", &found, offset, limit, |i| {
        instance_json(i)
    }))
}

fn backup_json(b: &PgBackup, instance_id: &str) -> Value {
    json!({
        "DBInstanceId": instance_id,
        "Id": b.id,
        "Name": b.file.name,
        "BackupMethod": b.method,
        "BackupMode": b.mode,
        "State": b.state,
        "Size": b.file.api_size(),
        "StartTime": format_api_time(b.start),
        "FinishTime": b.finish.map(format_api_time).unwrap_or_default(),
        "ExpireTime": format_api_time(b.expire),
    })
}

fn backup_matches(
    filter: &Filter,
    instance: &PgInstance,
    backup: &PgBackup,
    kind: PgBackupKind,
) -> Result<bool, ApiError> {
    Ok(match filter.name.as_str() {
        "db-instance-id" => any_value(filter, |v| v == instance.instance_id),
        "db-instance-name" => any_value(filter, |v| instance.name.contains(v)),
        "db-instance-ip" => any_value(filter, |v| v == instance.private_ip),
        "db-instance-status" => any_value(filter, |v| v == instance.status),
        "base-backup-id" if kind == PgBackupKind::Base => any_value(filter, |v| v == backup.id),
        other => return Err(invalid(format!("Filter name {other:?} is not supported."))),
    })
}

fn describe_backups(call: &Call<'_>, kind: PgBackupKind) -> Result<Map<String, Value>, ApiError> {
    let p = &call.params;
    p.check_known(&[
        "MinFinishTime",
        "MaxFinishTime",
        "Filters",
        "Limit",
        "Offset",
        "OrderBy",
        "OrderByType",
    ])?;
    let filters = p.filters()?;
    let (offset, limit) = p.paging(10, 100, false)?;
    let min = p
        .time("MinFinishTime")?
        .unwrap_or(call.now - Duration::days(7));
    let max = p.time("MaxFinishTime")?.unwrap_or(call.now);
    let order_by = p
        .string("OrderBy")?
        .unwrap_or_else(|| "StartTime".to_string());
    if !["StartTime", "FinishTime", "Size"].contains(&order_by.as_str()) {
        return Err(invalid(format!("OrderBy {order_by:?} is not supported.")));
    }
    let desc = descending(call, true)?;
    let world = call.ctx.state.lock();
    let mut found: Vec<(&PgBackup, &str)> = Vec::new();
    for entry in world
        .pg
        .iter()
        .filter(|e| call.sees_region(&e.instance.region))
    {
        for backup in entry.backups.iter().filter(|b| b.kind == kind) {
            // An unfinished backup has no finish time; its start stands in.
            let finish = backup.finish.unwrap_or(backup.start);
            if finish < min || finish > max {
                continue;
            }
            if all_match(&filters, |f| {
                backup_matches(f, &entry.instance, backup, kind)
            })? {
                found.push((backup, entry.instance.instance_id.as_str()));
            }
        }
    }
    found.sort_by(|(a, _), (b, _)| {
        let ord = match order_by.as_str() {
            "FinishTime" => a
                .finish
                .unwrap_or(a.start)
                .cmp(&b.finish.unwrap_or(b.start)),
            "Size" => a.file.api_size().cmp(&b.file.api_size()),
            _ => a.start.cmp(&b.start),
        }
        .then_with(|| a.id.cmp(&b.id));
        directed(ord, desc)
    });
    let key = match kind {
        PgBackupKind::Base => "BaseBackupSet",
        PgBackupKind::Log => "LogBackupSet",
    };
    Ok(page(key, &found, offset, limit, |(b, id)| {
        backup_json(b, id)
    }))
}

fn describe_base_backups(call: &Call<'_>) -> Result<Map<String, Value>, ApiError> {
    describe_backups(call, PgBackupKind::Base)
}

fn describe_log_backups(call: &Call<'_>) -> Result<Map<String, Value>, ApiError> {
    describe_backups(call, PgBackupKind::Log)
}

/// Check a per-call `BackupDownloadRestriction`; its `RestrictionType`,
/// upper-cased (empty when not given).
fn check_restriction(value: &Value) -> Result<String, ApiError> {
    let Value::Object(obj) = value else {
        return Err(invalid("BackupDownloadRestriction must be an object."));
    };
    const FIELDS: &[&str] = &[
        "RestrictionType",
        "VpcRestrictionEffect",
        "VpcIdSet",
        "IpRestrictionEffect",
        "IpSet",
    ];
    if let Some(extra) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::new(
            "UnknownParameter",
            format!("The parameter `BackupDownloadRestriction.{extra}` is not recognized."),
        ));
    }
    let text = |name: &str| obj.get(name).and_then(Value::as_str).unwrap_or("");
    let kind = text("RestrictionType").to_ascii_uppercase();
    if !["", "NONE", "INTRANET", "CUSTOMIZE"].contains(&kind.as_str()) {
        return Err(invalid(
            "RestrictionType must be NONE, INTRANET or CUSTOMIZE.",
        ));
    }
    for name in ["VpcRestrictionEffect", "IpRestrictionEffect"] {
        if !["", "ALLOW", "DENY"].contains(&text(name).to_ascii_uppercase().as_str()) {
            return Err(invalid(format!("{name} must be ALLOW or DENY.")));
        }
    }
    let listed = |name: &str| {
        obj.get(name)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    if kind == "CUSTOMIZE" && !listed("VpcIdSet") && !listed("IpSet") {
        return Err(invalid(
            "RestrictionType CUSTOMIZE needs VpcIdSet or IpSet.",
        ));
    }
    Ok(kind)
}

fn describe_backup_download_url(call: &Call<'_>) -> Result<Map<String, Value>, ApiError> {
    let p = &call.params;
    p.check_known(&[
        "DBInstanceId",
        "BackupType",
        "BackupId",
        "URLExpireTime",
        "BackupDownloadRestriction",
    ])?;
    let instance_id = p.required_string("DBInstanceId")?;
    let backup_type = p.required_string("BackupType")?;
    let backup_id = p.required_string("BackupId")?;
    let kind = match backup_type.as_str() {
        "BaseBackup" => PgBackupKind::Base,
        "LogBackup" => PgBackupKind::Log,
        other => {
            return Err(invalid(format!(
                "BackupType must be BaseBackup or LogBackup, got {other:?}."
            )))
        }
    };
    let hours = match p.int("URLExpireTime")? {
        None | Some(0) => DEFAULT_URL_HOURS,
        Some(h) if h < 0 => {
            return Err(invalid(format!(
                "URLExpireTime must not be negative, got {h}."
            )))
        }
        Some(h) if h > MAX_URL_HOURS => {
            return Err(ApiError::new(
                "InvalidParameterValue.ParameterValueExceedError",
                format!("URLExpireTime {h} exceeds the maximum of {MAX_URL_HOURS} hours."),
            ))
        }
        Some(h) => h,
    };
    let restriction = match p.raw("BackupDownloadRestriction") {
        Some(restriction) => check_restriction(restriction)?,
        None => String::new(),
    };
    let world = call.ctx.state.lock();
    let entry = world
        .pg_entry(&instance_id)
        .filter(|e| call.sees_region(&e.instance.region))
        .ok_or_else(|| {
            ApiError::new(
                "ResourceNotFound.InstanceNotFoundError",
                format!("The instance {instance_id} does not exist."),
            )
        })?;
    let backup = entry
        .backups
        .iter()
        .find(|b| b.kind == kind && b.id == backup_id)
        .ok_or_else(|| invalid(format!("The {backup_type} {backup_id} does not exist.")))?;
    if backup.state != "finished" {
        return Err(ApiError::new(
            "FailedOperation.FailedOperationError",
            format!(
                "The backup {backup_id} is {}; only finished backups can be downloaded.",
                backup.state
            ),
        ));
    }
    // One URL: the intranet one when this call asks for INTRANET; else the
    // public one, which the public COS host refuses when the call's or
    // else the account's policy is intranet-only.
    let intranet_call = restriction == "INTRANET";
    let intranet_only = intranet_call
        || (restriction.is_empty()
            && world
                .pg_restriction
                .restriction_type
                .eq_ignore_ascii_case("INTRANET"));
    let base_url = if intranet_call {
        &call.ctx.intranet_base_url
    } else {
        &call.ctx.base_url
    };
    let cos = call.ctx.state.cos();
    let url = cos.presign(
        base_url,
        &backup.file.cos_key,
        hours * 3600,
        UrlShape::TopLevel,
    );
    cos.restrict_to_intranet(&url, intranet_only);
    Ok(to_map(json!({ "BackupDownloadURL": url })))
}

fn describe_backup_download_restriction(call: &Call<'_>) -> Result<Map<String, Value>, ApiError> {
    call.params.check_known(&[])?;
    let world = call.ctx.state.lock();
    let r = &world.pg_restriction;
    Ok(to_map(json!({
        "RestrictionType": r.restriction_type,
        "VpcRestrictionEffect": r.vpc_restriction_effect,
        "VpcIdSet": r.vpc_id_set,
        "IpRestrictionEffect": r.ip_restriction_effect,
        "IpSet": r.ip_set,
    })))
}
