//! Unit tests of `Catalog` (and through it the Redis and PostgreSQL action
//! modules) against the scripted fake API.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};

use super::*;
use crate::cloud::client::ClientConfig;
use crate::cloud::credentials::{CredentialProvider, CredentialSource, Credentials};
use crate::cloud::retry::RetryConfig;
use crate::cloud::testutil::{Captured, FakeApi, Reply};
use tcbackup_signing::clock::ManualClock;

const KEY: &str = "catalog-test-key";

fn catalog(endpoint: &str) -> Catalog {
    let config = ClientConfig {
        endpoint: Some(endpoint.to_string()),
        retry: RetryConfig {
            max_attempts: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            slow_base: Duration::from_millis(1),
        },
        ..ClientConfig::default()
    };
    let creds = CredentialProvider::fixed(
        CredentialSource::Fixed {
            label: "test".into(),
        },
        Credentials::permanent("AKIDcatalog", KEY),
    );
    let client = ApiClient::with_rng(
        config,
        creds,
        Arc::new(ManualClock::new()),
        Box::new(StdRng::seed_from_u64(3)),
    )
    .expect("client");
    Catalog::new(client, ApiTimeZone::default())
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn tz() -> ApiTimeZone {
    ApiTimeZone::default()
}

/// A Redis backup as the fake lists it.
fn redis_item(id: &str, start: DateTime<Utc>, status: i64) -> Value {
    redis_item_expiring(id, start, status, Span::days(7))
}

/// A Redis backup whose cloud copy expires `keep` after its start.
fn redis_item_expiring(id: &str, start: DateTime<Utc>, status: i64, keep: Span) -> Value {
    json!({
        "BackupId": id, "InstanceId": "crs-1", "Region": "ap-guangzhou",
        "StartTime": tz().format(start),
        "EndTime": tz().format(start + Span::minutes(2)),
        "ExpireTime": tz().format(start + keep),
        "BackupType": "1", "Status": status, "Locked": 0, "FileType": "RDB-Redis 6.2",
    })
}

/// Answer `DescribeInstanceBackups` like the API: start time in
/// [BeginTime, EndTime], newest first, Offset/Limit slicing.
fn redis_page(items: &[Value], req: &Captured) -> Reply {
    let body = req.json();
    let begin = tz()
        .parse(body["BeginTime"].as_str().expect("BeginTime"))
        .expect("t");
    let end = tz()
        .parse(body["EndTime"].as_str().expect("EndTime"))
        .expect("t");
    let mut matching: Vec<&Value> = items
        .iter()
        .filter(|b| {
            let start = tz().parse(b["StartTime"].as_str().expect("s")).expect("t");
            start >= begin && start <= end
        })
        .collect();
    matching.sort_by(|a, b| b["StartTime"].as_str().cmp(&a["StartTime"].as_str()));
    let offset = body["Offset"].as_u64().expect("Offset") as usize;
    let limit = body["Limit"].as_u64().expect("Limit") as usize;
    let page: Vec<&Value> = matching.iter().skip(offset).take(limit).copied().collect();
    Reply::Ok(json!({"TotalCount": matching.len(), "BackupSet": page}))
}

#[tokio::test]
async fn redis_lookback_longer_than_30_days_is_split_into_windows() {
    let now = at("2024-06-01T00:00:00Z");
    let since = now - Span::days(75);
    // One backup a day, kept 90 days, the two newest still running, and
    // one that is already expired (kept only a day).
    let items: Vec<Value> = (0..75)
        .map(|d| {
            let status = if d >= 73 { 1 } else { 2 };
            let keep = if d == 10 {
                Span::days(1)
            } else {
                Span::days(90)
            };
            let start = since + Span::days(d) + Span::hours(3);
            redis_item_expiring(&format!("b-{d:03}"), start, status, keep)
        })
        .collect();
    let served = items.clone();
    let api = FakeApi::start(KEY, move |_, r| redis_page(&served, r)).await;
    let cat = catalog(&api.endpoint);
    let all = cat
        .list_backups(
            Service::Redis,
            "crs-1",
            Some("ap-guangzhou"),
            since,
            now,
            &[],
        )
        .await
        .expect("list");
    assert_eq!(all.len(), 75);
    assert_eq!(all[0].backup_id, "b-000", "oldest first");
    assert!(all
        .iter()
        .all(|b| b.kind == BackupKind::Redis && b.files.is_empty()));
    assert_eq!(all.iter().filter(|b| !b.finished).count(), 3);
    let expired = all.iter().find(|b| b.backup_id == "b-010").expect("listed");
    assert!(!expired.finished, "an expired backup cannot be fetched");
    assert_eq!(expired.status, "2");
    assert_eq!(all[0].start, since + Span::hours(3));
    assert_eq!(all[0].region, "ap-guangzhou");

    for r in api.requests() {
        let body = r.json();
        let begin = tz()
            .parse(body["BeginTime"].as_str().expect("b"))
            .expect("t");
        let end = tz().parse(body["EndTime"].as_str().expect("e")).expect("t");
        assert!(
            end - begin <= Span::days(30),
            "window {begin}..{end} exceeds 30 days"
        );
        assert_eq!(body["Limit"], 100);
        assert_eq!(body["Offset"].as_u64().expect("offset") % 100, 0);
        assert_eq!(r.header("x-tc-action"), "DescribeInstanceBackups");
    }
    assert_eq!(
        api.requests().len(),
        3,
        "75 days = three windows of one page each"
    );

    let finished = cat
        .list_finished_backups(
            Service::Redis,
            "crs-1",
            Some("ap-guangzhou"),
            since,
            now,
            &[],
        )
        .await
        .expect("list");
    assert_eq!(
        finished.len(),
        72,
        "in-progress and expired backups are excluded"
    );
}

#[tokio::test]
async fn redis_pages_are_walked_and_deduplicated_when_backups_appear_mid_listing() {
    let now = at("2024-06-01T00:00:00Z");
    let since = now - Span::days(7);
    let base: Vec<Value> = (0..250)
        .map(|i| redis_item(&format!("b-{i:03}"), since + Span::minutes(30 * i), 2))
        .collect();
    let api = FakeApi::start(KEY, move |n, r| {
        // After the first page a new backup appears at the front, shifting
        // every later page by one.
        let mut items = base.clone();
        if n >= 1 {
            items.push(redis_item("b-new", now - Span::minutes(1), 2));
        }
        redis_page(&items, r)
    })
    .await;
    let cat = catalog(&api.endpoint);
    let all = cat
        .list_backups(Service::Redis, "crs-1", None, since, now, &[])
        .await
        .expect("list");
    let mut ids: Vec<&str> = all.iter().map(|b| b.backup_id.as_str()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no backup twice");
    assert_eq!(n, 251, "every backup, including the newcomer");
    let offsets: Vec<u64> = api
        .requests()
        .iter()
        .map(|r| r.json()["Offset"].as_u64().expect("offset"))
        .collect();
    assert_eq!(&offsets[..3], &[0, 100, 200]);
}

fn pg_item(id: &str, start: DateTime<Utc>, state: &str, size: u64) -> Value {
    json!({
        "DBInstanceId": "postgres-1", "Id": id, "Name": format!("{id}.tar.gz"),
        "BackupMethod": "physical", "BackupMode": "automatic", "State": state, "Size": size,
        "StartTime": tz().format(start),
        "FinishTime": if state == "finished" { tz().format(start + Span::minutes(5)) } else { String::new() },
        "ExpireTime": tz().format(start + Span::days(7)),
    })
}

#[tokio::test]
async fn postgres_lists_both_kinds_with_item_offsets_and_files() {
    let now = at("2024-06-01T00:00:00Z");
    let since = now - Span::days(7);
    let bases: Vec<Value> = (0..230)
        .map(|i| {
            let state = if i == 229 { "running" } else { "finished" };
            pg_item(
                &format!("base-{i:03}"),
                since + Span::minutes(40 * i),
                state,
                1000 + i as u64,
            )
        })
        .collect();
    let logs: Vec<Value> = (0..5)
        .map(|i| pg_item(&format!("log-{i}"), since + Span::hours(i), "finished", 77))
        .collect();
    let api = FakeApi::start(KEY, move |_, r| {
        let body = r.json();
        assert_eq!(body["Filters"][0]["Name"], "db-instance-id");
        assert_eq!(body["Filters"][0]["Values"][0], "postgres-1");
        let offset = body["Offset"].as_u64().expect("offset") as usize;
        let limit = body["Limit"].as_u64().expect("limit") as usize;
        let (items, key) = match r.header("x-tc-action") {
            "DescribeBaseBackups" => (&bases, "BaseBackupSet"),
            "DescribeLogBackups" => (&logs, "LogBackupSet"),
            other => panic!("unexpected action {other}"),
        };
        let page: Vec<&Value> = items.iter().skip(offset).take(limit).collect();
        Reply::Ok(json!({"TotalCount": items.len(), key: page}))
    })
    .await;
    let cat = catalog(&api.endpoint);
    let all = cat
        .list_backups(
            Service::Postgres,
            "postgres-1",
            Some("ap-guangzhou"),
            since,
            now,
            &[BackupKind::PgBase, BackupKind::PgLog],
        )
        .await
        .expect("list");
    assert_eq!(
        all.iter().filter(|b| b.kind == BackupKind::PgBase).count(),
        230
    );
    assert_eq!(
        all.iter().filter(|b| b.kind == BackupKind::PgLog).count(),
        5
    );
    let running: Vec<&RemoteBackup> = all.iter().filter(|b| !b.finished).collect();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].status, "running");
    assert_eq!(running[0].finish, None);
    let first = all
        .iter()
        .find(|b| b.backup_id == "base-000")
        .expect("listed");
    assert_eq!(
        first.files,
        vec![RemoteFile {
            name: "base-000.tar.gz".into(),
            expected_size: 1000
        }]
    );
    assert_eq!(first.start, since);
    let reqs = api.requests();
    let base_offsets: Vec<u64> = reqs
        .iter()
        .filter(|r| r.header("x-tc-action") == "DescribeBaseBackups")
        .map(|r| r.json()["Offset"].as_u64().expect("offset"))
        .collect();
    assert_eq!(base_offsets, vec![0, 100, 200]);
    let body = reqs[0].json();
    assert_eq!(body["MinFinishTime"], tz().format(since));
    assert_eq!(body["MaxFinishTime"], tz().format(now));
    assert_eq!(reqs[0].header("x-tc-version"), "2017-03-12");

    // Only the kinds asked for are listed.
    let before = api.requests().len();
    let bases_only = cat
        .list_backups(
            Service::Postgres,
            "postgres-1",
            None,
            since,
            now,
            &[BackupKind::PgBase],
        )
        .await
        .expect("list");
    assert!(bases_only.iter().all(|b| b.kind == BackupKind::PgBase));
    assert!(api.requests()[before..]
        .iter()
        .all(|r| r.header("x-tc-action") == "DescribeBaseBackups"));
}

fn remote(kind: BackupKind, files: Vec<RemoteFile>) -> RemoteBackup {
    RemoteBackup {
        instance_id: if kind == BackupKind::Redis {
            "crs-1"
        } else {
            "postgres-1"
        }
        .into(),
        region: "ap-guangzhou".into(),
        backup_id: "b-1".into(),
        kind,
        start: at("2024-06-01T00:00:00Z"),
        finish: None,
        expire: None,
        finished: true,
        status: "2".into(),
        files,
        encrypted: false,
        meta: Default::default(),
    }
}

#[tokio::test]
async fn redis_resolve_returns_one_file_per_shard() {
    let api = FakeApi::start(KEY, |_, r| {
        assert_eq!(r.json(), json!({"InstanceId": "crs-1", "BackupId": "b-1"}));
        Reply::Ok(json!({
            "DownloadUrl": ["https://ignored"],
            "BackupInfos": (1..=3).map(|s| json!({
                "FileName": format!("b-1-redis-{s}.rdb"),
                "FileSize": 100 * s,
                "DownloadUrl": format!("https://cos.example/b-1-redis-{s}.rdb?sign=q-signature%3Dabc{s}"),
                "InnerDownloadUrl": "https://inner",
            })).collect::<Vec<_>>(),
        }))
    })
    .await;
    let files = catalog(&api.endpoint)
        .resolve(&remote(BackupKind::Redis, vec![]), 12, Network::Public)
        .await
        .expect("resolve");
    assert_eq!(files.len(), 3);
    assert_eq!(files[2].name, "b-1-redis-3.rdb");
    assert_eq!(files[2].expected_size, 300);
    assert_eq!(
        files[0].url.expose(),
        "https://cos.example/b-1-redis-1.rdb?sign=q-signature%3Dabc1"
    );
    assert_eq!(api.requests()[0].header("x-tc-action"), "DescribeBackupUrl");
}

#[tokio::test]
async fn encryption_comes_from_the_backup_detail() {
    let api = FakeApi::start(KEY, |n, r| {
        assert_eq!(r.header("x-tc-action"), "DescribeBackupDetail");
        assert_eq!(r.json(), json!({"InstanceId": "crs-1", "BackupId": "b-1"}));
        Reply::Ok(match n {
            0 => json!({"BackupId": "b-1", "Encrypted": true, "DecryptKey": "k3y-value",
                "KmsKeyId": "", "KeyAlgorithm": "AES-256-CBC"}),
            1 => json!({"BackupId": "b-1", "Encrypted": true, "DecryptKey": "",
                "KmsKeyId": "kms-1", "KeyAlgorithm": "AES-256-CBC"}),
            _ => json!({"BackupId": "b-1", "Encrypted": false}),
        })
    })
    .await;
    let catalog = catalog(&api.endpoint);
    let redis = remote(BackupKind::Redis, vec![]);
    let held = catalog.encryption(&redis).await.expect("detail");
    let held = held.expect("encrypted");
    assert_eq!(held.algorithm, "AES-256-CBC");
    assert_eq!(held.key.as_ref().map(|k| k.expose()), Some("k3y-value"));
    let kms = catalog.encryption(&redis).await.expect("detail");
    let kms = kms.expect("encrypted");
    assert_eq!(kms.kms_key_id, "kms-1");
    assert!(!kms.key_held(), "an empty DecryptKey is no key");
    assert_eq!(catalog.encryption(&redis).await.expect("detail"), None);
    // PostgreSQL has no such call.
    let pg = remote(BackupKind::PgBase, vec![]);
    assert_eq!(catalog.encryption(&pg).await.expect("no call"), None);
    assert_eq!(api.requests().len(), 3);
}

#[tokio::test]
async fn redis_resolve_refuses_invalid_files() {
    for (name, size) in [("ok.rdb", 0), ("../evil.rdb", 10)] {
        let api = FakeApi::start(KEY, move |_, _| {
            Reply::Ok(json!({"BackupInfos": [
                {"FileName": name, "FileSize": size, "DownloadUrl": "https://cos.example/x"}
            ]}))
        })
        .await;
        let err = catalog(&api.endpoint)
            .resolve(&remote(BackupKind::Redis, vec![]), 12, Network::Public)
            .await
            .expect_err(name);
        assert!(matches!(err, ApiError::BadResponse { .. }), "{err:?}");
        assert!(
            err.to_string().contains("b-1") || err.to_string().contains(name),
            "{err}"
        );
    }
}

#[tokio::test]
async fn postgres_resolve_asks_for_the_lifetime_and_validates_it() {
    let api = FakeApi::start(KEY, |_, r| {
        let body = r.json();
        assert_eq!(body["DBInstanceId"], "postgres-1");
        assert_eq!(body["BackupType"], "LogBackup");
        assert_eq!(body["BackupId"], "b-1");
        Reply::Ok(json!({"BackupDownloadURL": format!("https://cos.example/pgsql/x?q-signature=s&h={}", body["URLExpireTime"])}))
    })
    .await;
    let cat = catalog(&api.endpoint);
    let backup = remote(
        BackupKind::PgLog,
        vec![RemoteFile {
            name: "wal.tar.gz".into(),
            expected_size: 42,
        }],
    );
    let files = cat
        .resolve(&backup, 36, Network::Public)
        .await
        .expect("resolve");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].name, "wal.tar.gz");
    assert_eq!(files[0].expected_size, 42);
    assert!(files[0].url.expose().ends_with("h=36"));

    let err = cat
        .resolve(&backup, 37, Network::Public)
        .await
        .expect_err("over 36 hours");
    assert!(matches!(err, ApiError::InvalidRequest { .. }), "{err:?}");
    assert!(err.to_string().contains("URLExpireTime"), "{err}");
    assert_eq!(api.requests().len(), 1, "refused before sending");
}

#[tokio::test]
async fn check_instance_reports_unknown_instances_clearly() {
    let api = FakeApi::start(KEY, |_, r| match r.header("x-tc-action") {
        "DescribeInstances" => {
            if r.json()["InstanceId"] == "crs-1" {
                Reply::Ok(json!({"TotalCount": 1, "InstanceSet": [{"InstanceId": "crs-1", "Region": "ap-guangzhou", "Status": 2}]}))
            } else {
                Reply::Ok(json!({"TotalCount": 0, "InstanceSet": []}))
            }
        }
        "DescribeDBInstances" => Reply::Error("ResourceNotFound.InstanceNotFoundError"),
        other => panic!("unexpected {other}"),
    })
    .await;
    let cat = catalog(&api.endpoint);
    cat.check_instance(Service::Redis, "crs-1", Some("ap-guangzhou"))
        .await
        .expect("exists");
    let err = cat
        .check_instance(Service::Redis, "crs-nope", Some("ap-guangzhou"))
        .await
        .expect_err("unknown");
    assert!(matches!(err, ApiError::InstanceNotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("crs-nope") && text.contains("ap-guangzhou"),
        "{text}"
    );
    let err = cat
        .check_instance(Service::Postgres, "postgres-nope", None)
        .await
        .expect_err("unknown");
    assert!(
        matches!(
            err,
            ApiError::InstanceNotFound {
                service: Service::Postgres,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_times_in_a_listing_name_the_backup() {
    let api = FakeApi::start(KEY, |_, _| {
        Reply::Ok(json!({"TotalCount": 1, "BackupSet": [{
            "BackupId": "b-odd", "StartTime": "2024-06-01T00:00:00", "Status": 2
        }]}))
    })
    .await;
    let now = at("2024-06-01T00:00:00Z");
    let err = catalog(&api.endpoint)
        .list_backups(Service::Redis, "crs-1", None, now - Span::days(1), now, &[])
        .await
        .expect_err("bad time");
    let text = err.to_string();
    assert!(
        text.contains("b-odd") && text.contains("StartTime"),
        "{text}"
    );
}

#[tokio::test]
async fn redis_intranet_resolve_asks_for_intranet_links_and_uses_inner_download_url() {
    let api = FakeApi::start(KEY, |_, r| {
        assert_eq!(
            r.json(),
            json!({"InstanceId": "crs-1", "BackupId": "b-1", "LimitType": "LimitOnlyIntranet"})
        );
        Reply::Ok(json!({
            "InnerDownloadUrl": ["https://deprecated-inner"],
            "BackupInfos": [{
                "FileName": "b-1-redis-1.rdb",
                "FileSize": 100,
                "DownloadUrl": "https://cos.example/b-1-redis-1.rdb?sign=public",
                "InnerDownloadUrl": "https://cos-internal.example/b-1-redis-1.rdb?sign=inner",
            }],
        }))
    })
    .await;
    let files = catalog(&api.endpoint)
        .resolve(&remote(BackupKind::Redis, vec![]), 12, Network::Intranet)
        .await
        .expect("resolve");
    assert_eq!(
        files[0].url.expose(),
        "https://cos-internal.example/b-1-redis-1.rdb?sign=inner"
    );
}

#[tokio::test]
async fn redis_intranet_resolve_without_inner_download_url_names_the_file_and_the_fix() {
    for inner in [json!(null), json!(""), json!("  ")] {
        let api = FakeApi::start(KEY, move |_, _| {
            Reply::Ok(json!({"BackupInfos": [{
                "FileName": "b-1-redis-2.rdb",
                "FileSize": 10,
                "DownloadUrl": "https://cos.example/x?sign=public",
                "InnerDownloadUrl": inner.clone(),
            }]}))
        })
        .await;
        let err = catalog(&api.endpoint)
            .resolve(&remote(BackupKind::Redis, vec![]), 12, Network::Intranet)
            .await
            .expect_err("no intranet link");
        let message = err.to_string();
        assert!(matches!(err, ApiError::BadResponse { .. }), "{err:?}");
        assert!(
            message.contains("no InnerDownloadUrl for file b-1-redis-2.rdb of backup b-1"),
            "{message}"
        );
        assert!(message.contains("network = \"public\""), "{message}");
        assert!(!message.contains("sign=public"), "{message}");
    }
}

#[tokio::test]
async fn postgres_resolve_sends_a_restriction_only_for_the_intranet() {
    let api = FakeApi::start(KEY, |_, r| {
        let body = r.json();
        let url = match body.get("BackupDownloadRestriction") {
            None => "https://cos.example/pgsql/x?q-signature=public",
            Some(restriction) => {
                assert_eq!(restriction, &json!({"RestrictionType": "INTRANET"}));
                "https://cos-internal.example/pgsql/x?q-signature=inner"
            }
        };
        Reply::Ok(json!({ "BackupDownloadURL": url }))
    })
    .await;
    let cat = catalog(&api.endpoint);
    let backup = remote(
        BackupKind::PgBase,
        vec![RemoteFile {
            name: "base.tar.gz".into(),
            expected_size: 42,
        }],
    );
    let public = cat
        .resolve(&backup, 12, Network::Public)
        .await
        .expect("public");
    assert!(public[0].url.expose().ends_with("=public"));
    let inner = cat
        .resolve(&backup, 12, Network::Intranet)
        .await
        .expect("intranet");
    assert!(inner[0].url.expose().ends_with("=inner"));
    let sent: Vec<Value> = api.requests().iter().map(|r| r.json()).collect();
    assert!(
        sent[0].get("BackupDownloadRestriction").is_none(),
        "{sent:?}"
    );
    assert!(
        sent[1].get("BackupDownloadRestriction").is_some(),
        "{sent:?}"
    );
}

#[tokio::test]
async fn download_policy_reads_both_services() {
    let api = FakeApi::start(KEY, |_, r| {
        assert_eq!(r.header("x-tc-action"), "DescribeBackupDownloadRestriction");
        assert_eq!(r.json(), json!({}));
        if r.header("host").starts_with("redis") || r.header("authorization").contains("/redis/") {
            Reply::Ok(json!({"LimitType": "LimitOnlyIntranet", "LimitVpc": [], "LimitIp": []}))
        } else {
            Reply::Ok(
                json!({"RestrictionType": "Customize", "VpcRestrictionEffect": "Allow",
                "VpcIdSet": ["vpc-1"], "IpRestrictionEffect": "", "IpSet": []}),
            )
        }
    })
    .await;
    let cat = catalog(&api.endpoint);
    let redis = cat
        .download_policy(Service::Redis, Some("ap-guangzhou"))
        .await
        .expect("redis");
    assert_eq!(redis.kind, crate::cloud::PolicyKind::IntranetOnly);
    assert!(redis.refuses(Network::Public));
    let pg = cat
        .download_policy(Service::Postgres, Some("ap-guangzhou"))
        .await
        .expect("postgres");
    assert_eq!(pg.kind, crate::cloud::PolicyKind::Customized);
    assert_eq!(pg.value, "Customize");
}

/// The listing's metadata reaches `RemoteBackup::meta`: Redis `BackupType`
/// (unknown values kept), `Remark`, `InstanceName`, `FileType`; PostgreSQL
/// `BackupMethod` and `BackupMode`. `BackupSize` is not read (here it is
/// neither the files' sum nor a plausible size). The instance check gives
/// the name and the versions.
#[tokio::test]
async fn listings_and_instance_checks_carry_what_the_api_says() {
    let now = at("2024-06-01T00:00:00Z");
    let start = now - Span::days(1);
    let mut manual = redis_item("r-manual", start, 2);
    manual["BackupType"] = json!("0");
    manual["Remark"] = json!("before the upgrade");
    manual["InstanceName"] = json!("orders");
    manual["BackupSize"] = json!(537);
    let mut odd = redis_item("r-odd", start + Span::hours(1), 2);
    odd["BackupType"] = json!("5");
    odd["Remark"] = Value::Null;
    odd["FileType"] = json!("AOF-Redis 7.0");
    let mut bare = redis_item("r-bare", start + Span::hours(2), 2);
    bare.as_object_mut().expect("object").remove("BackupType");
    bare.as_object_mut().expect("object").remove("FileType");
    let items = vec![manual, odd, bare];
    let mut snapshot = pg_item("p-snap", start, "finished", 10);
    snapshot["BackupMethod"] = json!("snapshot");
    snapshot["BackupMode"] = json!("manual");
    let bases = vec![snapshot];
    let api = FakeApi::start(KEY, move |_, r| match r.header("x-tc-action") {
        "DescribeInstanceBackups" => redis_page(&items, r),
        "DescribeBaseBackups" => Reply::Ok(json!({"TotalCount": 1, "BaseBackupSet": bases})),
        "DescribeInstances" => Reply::Ok(json!({"TotalCount": 1, "InstanceSet": [{
            "InstanceId": "crs-1", "InstanceName": "orders", "Region": "ap-guangzhou",
            "Status": 2, "CurrentRedisVersion": "6.2.14"}]})),
        "DescribeDBInstances" => Reply::Ok(json!({"TotalCount": 1, "DBInstanceSet": [{
            "DBInstanceId": "postgres-1", "DBInstanceName": "ledger", "Region": "ap-guangzhou",
            "DBInstanceStatus": "running", "DBVersion": "16.2", "DBMajorVersion": "16",
            "DBKernelVersion": "v16.2_r1.5"}]})),
        other => panic!("unexpected {other}"),
    })
    .await;
    let cat = catalog(&api.endpoint);
    let redis = cat
        .list_backups(Service::Redis, "crs-1", None, now - Span::days(2), now, &[])
        .await
        .expect("list");
    let meta = |id: &str| &redis.iter().find(|b| b.backup_id == id).expect(id).meta;
    let m = meta("r-manual");
    assert!(m.is_manual());
    assert_eq!(m.remark.as_deref(), Some("before the upgrade"));
    assert_eq!(m.instance_name.as_deref(), Some("orders"));
    assert_eq!(m.file_type.as_deref(), Some("RDB-Redis 6.2"));
    assert_eq!(m.unfetchable(), None);
    let o = meta("r-odd");
    assert_eq!(o.mode, Some(BackupMode::Other("BackupType 5".into())));
    assert_eq!(o.remark, None);
    assert!(o.unfetchable().expect("not an RDB").contains("AOF"));
    let b = meta("r-bare");
    assert_eq!((b.mode.as_ref(), b.file_type.as_ref()), (None, None));
    assert_eq!(b.unfetchable(), None);

    let pg = cat
        .list_backups(
            Service::Postgres,
            "postgres-1",
            None,
            now - Span::days(2),
            now,
            &[BackupKind::PgBase],
        )
        .await
        .expect("list");
    assert!(pg[0].meta.is_manual());
    assert_eq!(pg[0].meta.backup_method.as_deref(), Some("snapshot"));
    assert!(pg[0]
        .meta
        .unfetchable()
        .expect("snapshot")
        .contains("snapshot"));

    let redis_instance = cat
        .check_instance(Service::Redis, "crs-1", None)
        .await
        .expect("exists");
    assert_eq!(redis_instance.name.as_deref(), Some("orders"));
    assert_eq!(redis_instance.redis_version.as_deref(), Some("6.2.14"));
    let pg_instance = cat
        .check_instance(Service::Postgres, "postgres-1", None)
        .await
        .expect("exists");
    assert_eq!(pg_instance.name.as_deref(), Some("ledger"));
    assert_eq!(pg_instance.db_version.as_deref(), Some("16.2"));
    assert_eq!(pg_instance.db_major_version.as_deref(), Some("16"));
    assert_eq!(pg_instance.db_kernel_version.as_deref(), Some("v16.2_r1.5"));
}
