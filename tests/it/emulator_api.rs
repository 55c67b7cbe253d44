//! End-to-end tests of the emulator's API side over HTTP, with raw requests
//! signed by `cloud::sign`: envelope, signature and token checks, the
//! documented error codes, paging, finished vs in-progress backups, one file
//! per shard, state changes between calls, rate limits, faults, the metadata
//! service and the sample data.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use tcbackup_core::model::Service;
use tcbackup_emulator::{
    format_api_time, redis_status, sample, ApiFault, Emulator, EmulatorOptions, ObjectBody,
    PgBackupKind, PgBackupSpec, PgInstance, RedisBackupSpec, RedisInstance,
};
use tcbackup_signing::clock::{Clock, ManualClock};
use tcbackup_signing::tc3::{self, SignRequest};

const REGION: &str = "ap-guangzhou";

fn version(service: &str) -> &'static str {
    match service {
        "redis" => "2018-04-12",
        _ => "2017-03-12",
    }
}

/// One raw API request; every field can be bent by a test.
#[derive(Clone)]
struct Req {
    service: String,
    action: String,
    version: String,
    region: Option<String>,
    body: String,
    method: &'static str,
    query: String,
    timestamp: i64,
    secret_id: String,
    secret_key: String,
    token: Option<String>,
    /// Scope service, when it must differ from `service`.
    scope_service: Option<String>,
    /// A `Host` header other than the emulator's address.
    host: Option<String>,
    /// The host the signature covers, when it must differ from the `Host` sent.
    signed_host: Option<String>,
}

struct Api {
    http: reqwest::Client,
    endpoint: String,
    host: String,
    secret_id: String,
    secret_key: String,
    clock: Arc<dyn Clock>,
}

struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

impl Answer {
    fn response(&self) -> &Value {
        &self.body["Response"]
    }
    fn code(&self) -> Option<&str> {
        self.response()["Error"]["Code"].as_str()
    }
    fn ok(&self) -> &Value {
        assert_eq!(self.code(), None, "unexpected error: {}", self.body);
        self.response()
    }
    fn err(&self, code: &str) -> &str {
        assert_eq!(self.code(), Some(code), "{}", self.body);
        self.response()["Error"]["Message"].as_str().unwrap()
    }
}

impl Api {
    fn new(emu: &Emulator) -> Self {
        let endpoint = emu.endpoint();
        Self {
            http: reqwest::Client::new(),
            host: endpoint.trim_start_matches("http://").to_string(),
            endpoint,
            secret_id: emu.secret_id().to_string(),
            secret_key: emu.secret_key().expose().to_string(),
            clock: emu.clock().clone(),
        }
    }

    fn req(&self, service: &str, action: &str, body: Value) -> Req {
        Req {
            service: service.to_string(),
            action: action.to_string(),
            version: version(service).to_string(),
            region: Some(REGION.to_string()),
            body: body.to_string(),
            method: "POST",
            query: String::new(),
            timestamp: self.clock.unix(),
            secret_id: self.secret_id.clone(),
            secret_key: self.secret_key.clone(),
            token: None,
            scope_service: None,
            host: None,
            signed_host: None,
        }
    }

    async fn send(&self, r: &Req) -> Answer {
        let content_type = if r.method == "GET" {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        let body = if r.method == "GET" {
            String::new()
        } else {
            r.body.clone()
        };
        let scope_service = r.scope_service.clone().unwrap_or(r.service.clone());
        let host = r.host.clone().unwrap_or(self.host.clone());
        let signed_host = r.signed_host.clone().unwrap_or(host.clone());
        let signature = tc3::sign(
            &SignRequest {
                method: r.method,
                query: &r.query,
                headers: &[("content-type", content_type), ("host", &signed_host)],
                payload: body.as_bytes(),
                unsigned_payload: false,
                service: &scope_service,
                timestamp: r.timestamp,
            },
            &r.secret_key,
        );
        let url = if r.query.is_empty() {
            format!("{}/", self.endpoint)
        } else {
            format!("{}/?{}", self.endpoint, r.query)
        };
        let mut builder = if r.method == "GET" {
            self.http.get(url)
        } else {
            self.http.post(url).body(body)
        };
        builder = builder
            .header("Content-Type", content_type)
            .header("X-TC-Action", &r.action)
            .header("X-TC-Version", &r.version)
            .header("X-TC-Timestamp", r.timestamp.to_string())
            .header("Authorization", signature.authorization(&r.secret_id));
        if r.host.is_some() {
            builder = builder.header("Host", &host);
        }
        if let Some(region) = &r.region {
            builder = builder.header("X-TC-Region", region);
        }
        if let Some(token) = &r.token {
            builder = builder.header("X-TC-Token", token);
        }
        answer(builder.send().await.unwrap()).await
    }

    async fn call(&self, service: &str, action: &str, body: Value) -> Answer {
        self.send(&self.req(service, action, body)).await
    }
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        content_type,
        body,
    }
}

async fn emulator() -> Emulator {
    Emulator::start(EmulatorOptions::new()).await.unwrap()
}

async fn sample_emulator() -> Emulator {
    Emulator::start(EmulatorOptions::new().sample(true))
        .await
        .unwrap()
}

fn at(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap()
}

// ---- envelope and routing ---------------------------------------------------

#[tokio::test]
async fn every_processed_request_is_200_json_with_a_request_id() {
    let emu = sample_emulator().await;
    let api = Api::new(&emu);
    let ok = api.call("redis", "DescribeInstances", json!({})).await;
    let bad = api
        .call(
            "redis",
            "DescribeBackupUrl",
            json!({"InstanceId": "crs-none", "BackupId": "x"}),
        )
        .await;
    for a in [&ok, &bad] {
        assert_eq!(a.status, 200);
        assert_eq!(a.content_type, "application/json");
        let id = a.response()["RequestId"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        assert_eq!(
            a.body.as_object().unwrap().len(),
            1,
            "only Response at the top"
        );
    }
    // The cluster and the instance with encrypted backups.
    assert_eq!(ok.ok()["TotalCount"], 2);
    bad.err("ResourceNotFound.InstanceNotExists");
}

#[tokio::test]
async fn version_action_and_parameter_errors() {
    let emu = sample_emulator().await;
    let api = Api::new(&emu);
    let mut r = api.req("redis", "DescribeInstances", json!({}));
    r.version = "2017-03-12".to_string();
    api.send(&r).await.err("NoSuchVersion");
    api.call("redis", "DescribeNothing", json!({}))
        .await
        .err("InvalidAction");
    api.call("postgres", "DescribeInstanceBackups", json!({}))
        .await
        .err("InvalidAction");
    api.call("redis", "DescribeInstances", json!({"Bogus": 1}))
        .await
        .err("UnknownParameter");
    api.call(
        "redis",
        "DescribeBackupUrl",
        json!({"InstanceId": "crs-4y9t57vt"}),
    )
    .await
    .err("MissingParameter");
    api.call(
        "postgres",
        "DescribeBackupDownloadURL",
        json!({"DBInstanceId": "p", "BackupId": "b"}),
    )
    .await
    .err("MissingParameter");
    api.call("redis", "DescribeInstanceBackups", json!({"Limit": "20"}))
        .await
        .err("InvalidParameterValue");
}

#[tokio::test]
async fn get_requests_with_a_flattened_query_are_answered() {
    let emu = sample_emulator().await;
    let api = Api::new(&emu);
    let mut r = api.req("redis", "DescribeInstances", json!({}));
    r.method = "GET";
    r.query = "Limit=20&Offset=0&InstanceIds.0=crs-4y9t57vt&InstanceIds.1=crs-none".to_string();
    let a = api.send(&r).await;
    assert_eq!(a.ok()["TotalCount"], 1);
    assert_eq!(a.ok()["InstanceSet"][0]["InstanceId"], "crs-4y9t57vt");
    assert_eq!(a.ok()["InstanceSet"][0]["RedisShardNum"], 3);
}

// ---- signature, timestamp, token ---------------------------------------------

#[tokio::test]
async fn clock_skew_of_299_seconds_passes_and_301_fails() {
    let clock = ManualClock::fixed(at(1_716_249_600));
    let emu = Emulator::start(EmulatorOptions::new().clock(Arc::new(clock.clone())))
        .await
        .unwrap();
    let api = Api::new(&emu);
    for skew in [-299, 0, 299] {
        let mut r = api.req("redis", "DescribeInstances", json!({}));
        r.timestamp += skew;
        api.send(&r).await.ok();
    }
    for skew in [-301, 301] {
        let mut r = api.req("redis", "DescribeInstances", json!({}));
        r.timestamp += skew;
        api.send(&r).await.err("AuthFailure.SignatureExpire");
    }
    // The server's clock moving is the same as the client's being skewed.
    let r = api.req("redis", "DescribeInstances", json!({}));
    clock.advance(Duration::seconds(301));
    api.send(&r).await.err("AuthFailure.SignatureExpire");
}

#[tokio::test]
async fn authentication_failures_have_their_codes() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    // Malformed Authorization.
    let resp = api
        .http
        .post(format!("{}/", api.endpoint))
        .header("Content-Type", "application/json")
        .header("X-TC-Action", "DescribeInstances")
        .header("X-TC-Version", "2018-04-12")
        .header("X-TC-Timestamp", api.clock.unix().to_string())
        .header("Authorization", "TC3-HMAC-SHA256 Credential=broken")
        .body("{}")
        .send()
        .await
        .unwrap();
    let a = answer(resp).await;
    assert_eq!(a.status, 200);
    a.err("AuthFailure.InvalidAuthorization");
    // Unknown SecretId.
    let mut r = api.req("redis", "DescribeInstances", json!({}));
    r.secret_id = "AKIDnobody".to_string();
    api.send(&r).await.err("AuthFailure.SecretIdNotFound");
    // Wrong key.
    let mut r = api.req("redis", "DescribeInstances", json!({}));
    r.secret_key.push('x');
    let msg = api
        .send(&r)
        .await
        .err("AuthFailure.SignatureFailure")
        .to_string();
    assert_eq!(
        msg,
        "The provided credentials could not be validated. Please check your signature is correct."
    );
    // A `postgres.` host with a `redis` scope: the scope does not match the service.
    let mut r = api.req("postgres", "DescribeDBInstances", json!({}));
    r.scope_service = Some("redis".to_string());
    r.host = Some("postgres.tencentcloudapi.com".to_string());
    let msg = api
        .send(&r)
        .await
        .err("AuthFailure.SignatureFailure")
        .to_string();
    assert!(msg.starts_with("The provided credentials could not be validated"));
    // The same host with the matching scope is accepted: the host names the service.
    r.scope_service = None;
    api.send(&r).await.ok();
    // On a bare address the scope names the service: a redis scope reaches redis.
    let mut r = api.req("redis", "DescribeDBInstances", json!({}));
    r.version = "2018-04-12".to_string();
    api.send(&r).await.err("InvalidAction");
    // A revoked key stops working at once.
    assert!(emu.state().revoke_credential(emu.secret_id()));
    api.call("redis", "DescribeInstances", json!({}))
        .await
        .err("AuthFailure.SecretIdNotFound");
}

#[tokio::test]
async fn a_signature_made_for_another_host_is_refused() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let intl = "redis.intl.tencentcloudapi.com";
    let china = "redis.tencentcloudapi.com";
    // (Host sent, host signed): only equal pairs pass.
    let cases = [
        (None, Some(intl)),
        (Some(intl), Some(api.host.as_str())),
        (Some(intl), Some(china)),
        (Some(china), Some(intl)),
        (Some(china), Some("redis.ap-guangzhou.tencentcloudapi.com")),
    ];
    for (sent, signed) in cases {
        let mut r = api.req("redis", "DescribeInstances", json!({}));
        r.host = sent.map(str::to_string);
        r.signed_host = signed.map(str::to_string);
        let a = api.send(&r).await;
        assert_eq!(a.status, 200);
        a.err("AuthFailure.SignatureFailure");
    }
    // The same requests signed for the host they are sent to are answered.
    for sent in [None, Some(intl), Some(china)] {
        let mut r = api.req("redis", "DescribeInstances", json!({}));
        r.host = sent.map(str::to_string);
        assert_eq!(api.send(&r).await.ok()["TotalCount"], 0, "{sent:?}");
    }
    let mut r = api.req("postgres", "DescribeDBInstances", json!({}));
    r.host = Some("postgres.intl.tencentcloudapi.com".to_string());
    api.send(&r).await.ok();
}

#[tokio::test]
async fn the_hosts_the_client_picks_are_served_and_the_nearest_host_refuses_financial_regions() {
    use tcbackup_core::cloud::endpoint::{api_host, Site};
    let emu = emulator().await;
    let api = Api::new(&emu);
    let call = |service: Service, host: String, region: &str| {
        let (name, action) = match service {
            Service::Redis => ("redis", "DescribeInstances"),
            Service::Postgres => ("postgres", "DescribeDBInstances"),
        };
        let mut r = api.req(name, action, json!({}));
        r.host = Some(host);
        r.region = Some(region.to_string());
        r
    };
    for service in [Service::Redis, Service::Postgres] {
        for site in Site::ALL {
            for region in [
                "ap-guangzhou",
                "ap-singapore",
                "ap-shanghai-fsi",
                "ap-shenzhen-fsi",
            ] {
                let host = api_host(service, site, Some(region));
                let a = api.send(&call(service, host.clone(), region)).await;
                assert_eq!(
                    a.code(),
                    None,
                    "{service} {site} {region} on {host}: {}",
                    a.body
                );
            }
            // The site's nearest host does not serve a financial region.
            let nearest = api_host(service, site, None);
            let a = api.send(&call(service, nearest, "ap-shanghai-fsi")).await;
            a.err("UnsupportedRegion");
        }
        // A regional host serves its own region only.
        let fsi = api_host(service, Site::China, Some("ap-shenzhen-fsi"));
        api.send(&call(service, fsi, "ap-shanghai-fsi"))
            .await
            .err("UnsupportedRegion");
    }
    // The emulator's own address stands for `[api] endpoint`: every region.
    let mut r = api.req("redis", "DescribeInstances", json!({}));
    r.region = Some("ap-shanghai-fsi".to_string());
    api.send(&r).await.ok();
}

#[tokio::test]
async fn temporary_credentials_need_their_token_until_expiry() {
    let clock = ManualClock::fixed(at(1_716_249_600));
    let emu = Emulator::start(EmulatorOptions::new().clock(Arc::new(clock.clone())))
        .await
        .unwrap();
    let api = Api::new(&emu);
    emu.state().add_temporary_credential(
        "AKIDtmp1",
        "tmpkey",
        "tok-123",
        clock.now() + Duration::seconds(600),
    );
    let tmp = |token: Option<&str>| {
        let mut r = api.req("redis", "DescribeInstances", json!({}));
        r.secret_id = "AKIDtmp1".to_string();
        r.secret_key = "tmpkey".to_string();
        r.token = token.map(str::to_string);
        r
    };
    api.send(&tmp(Some("tok-123"))).await.ok();
    api.send(&tmp(None)).await.err("AuthFailure.TokenFailure");
    api.send(&tmp(Some("tok-124")))
        .await
        .err("AuthFailure.TokenFailure");
    clock.advance(Duration::seconds(600));
    api.send(&tmp(Some("tok-123")))
        .await
        .err("AuthFailure.TokenFailure");
}

/// Every TC3 vector, sent exactly as its SDK sent it (headers, host, body,
/// query), passes the emulator's checks when its clock is at the vector's
/// timestamp: the answer is never an `AuthFailure`.
#[tokio::test]
async fn tc3_vectors_pass_the_signature_check_end_to_end() {
    let vectors: Value = serde_json::from_str(include_str!("../data/tc3-vectors.json")).unwrap();
    let mut list: Vec<Value> = vectors["tc3_sdk_vectors"].as_array().unwrap().clone();
    list.extend(
        vectors["published_doc_vectors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["id"] == "tc3-doc-cvm-describeinstances-legacy")
            .cloned(),
    );
    assert_eq!(list.len(), 10);
    let clock = ManualClock::fixed(at(0));
    let emu = Emulator::start(EmulatorOptions::new().clock(Arc::new(clock.clone())))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for v in list {
        let id = v["id"].as_str().unwrap();
        let inp = &v["inputs"];
        let out = &v["outputs"];
        let ts = inp["timestamp"].as_i64().unwrap();
        clock.set(at(ts));
        let sid = inp["secret_id"].as_str().unwrap();
        let key = inp["secret_key"].as_str().unwrap();
        match inp["token"].as_str() {
            Some(token) => emu
                .state()
                .add_temporary_credential(sid, key, token, at(ts + 3600)),
            None => emu.state().add_credential(sid, key),
        }
        let query = inp["query_string"].as_str().unwrap_or("");
        let url = if query.is_empty() {
            format!("{}/", emu.endpoint())
        } else {
            format!("{}/?{query}", emu.endpoint())
        };
        let body = hex::decode(inp["payload_hex"].as_str().unwrap()).unwrap();
        let method = inp["http_method"].as_str().unwrap();
        let mut req = if method == "GET" {
            http.get(url)
        } else {
            http.post(url).body(body)
        };
        let headers: Vec<(String, String)> = match out["request_headers"].as_object() {
            Some(h) => h
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect(),
            None => vec![
                (
                    "Content-Type".into(),
                    inp["content_type"].as_str().unwrap().into(),
                ),
                ("Host".into(), inp["host"].as_str().unwrap().into()),
                ("X-TC-Action".into(), inp["action"].as_str().unwrap().into()),
                (
                    "X-TC-Version".into(),
                    inp["version"].as_str().unwrap().into(),
                ),
                ("X-TC-Timestamp".into(), ts.to_string()),
                (
                    "Authorization".into(),
                    out["authorization"].as_str().unwrap().into(),
                ),
            ],
        };
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let a = answer(req.send().await.unwrap()).await;
        assert_eq!(a.status, 200, "{id}");
        let code = a.code().unwrap_or("");
        assert!(!code.starts_with("AuthFailure"), "{id}: {}", a.body);
        if id.contains("cvm") {
            // Accepted signature, but this emulator serves no CVM.
            assert_eq!(code, "NoSuchProduct", "{id}");
        }
        // The same request a second past the window fails.
        clock.set(at(ts + 301));
        let mut again = if method == "GET" {
            http.get(format!("{}/?{query}", emu.endpoint()))
        } else {
            http.post(format!("{}/", emu.endpoint()))
                .body(hex::decode(inp["payload_hex"].as_str().unwrap()).unwrap())
        };
        for (k, v) in &headers {
            again = again.header(k.as_str(), v.as_str());
        }
        let a = answer(again.send().await.unwrap()).await;
        assert_eq!(a.code(), Some("AuthFailure.SignatureExpire"), "{id}");
    }
}

// ---- Redis ----------------------------------------------------------------------

async fn redis_with_backups(n: usize) -> (Emulator, Vec<String>) {
    let emu = emulator().await;
    let now = emu.clock().now();
    emu.state()
        .add_redis_instance(RedisInstance::new("crs-paging", REGION, now).cluster(2))
        .unwrap();
    let mut ids = Vec::new();
    for k in 0..n {
        let id = format!("b-{k:03}");
        let start = now - Duration::hours(k as i64 + 1);
        emu.state()
            .add_redis_backup(
                "crs-paging",
                RedisBackupSpec::finished(&id, start)
                    .file(
                        "s1.rdb",
                        ObjectBody::Generated {
                            seed: k as u64,
                            len: 1000 + k as u64,
                        },
                    )
                    .file("s2.rdb", ObjectBody::Generated { seed: 99, len: 7 }),
            )
            .unwrap();
        ids.push(id);
    }
    (emu, ids)
}

#[tokio::test]
async fn redis_backup_paging_defaults_limits_and_total_count() {
    let (emu, ids) = redis_with_backups(45).await;
    let api = Api::new(&emu);
    let body = |extra: Value| {
        let mut b = json!({"InstanceId": "crs-paging"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let first = api
        .call("redis", "DescribeInstanceBackups", body(json!({})))
        .await;
    let first = first.ok();
    assert_eq!(first["TotalCount"], 45);
    let set = first["BackupSet"].as_array().unwrap();
    assert_eq!(set.len(), 20, "default Limit is 20");
    assert_eq!(set[0]["BackupId"], ids[0], "newest first");
    let last = api
        .call(
            "redis",
            "DescribeInstanceBackups",
            body(json!({"Limit": 20, "Offset": 40})),
        )
        .await;
    assert_eq!(last.ok()["BackupSet"].as_array().unwrap().len(), 5);
    assert_eq!(last.ok()["TotalCount"], 45);
    let all = api
        .call(
            "redis",
            "DescribeInstanceBackups",
            body(json!({"Limit": 100})),
        )
        .await;
    assert_eq!(all.ok()["BackupSet"].as_array().unwrap().len(), 45);
    api.call(
        "redis",
        "DescribeInstanceBackups",
        body(json!({"Limit": 101})),
    )
    .await
    .err("InvalidParameterValue");
    api.call(
        "redis",
        "DescribeInstanceBackups",
        body(json!({"Limit": 20, "Offset": 10})),
    )
    .await
    .err("InvalidParameterValue");
    api.call(
        "redis",
        "DescribeInstanceBackups",
        json!({"InstanceId": "crs-nope"}),
    )
    .await
    .err("ResourceNotFound.InstanceNotExists");
    // Fields of one entry.
    let b = &set[0];
    assert_eq!(b["InstanceId"], "crs-paging");
    assert_eq!(b["Status"], 2);
    assert_eq!(b["Locked"], 0);
    assert_eq!(b["Region"], REGION);
    let start = b["StartTime"].as_str().unwrap();
    // The start the backup was given, not the clock read again (a second
    // may have ticked over since).
    let given = emu.state().redis_backups("crs-paging").unwrap();
    let newest = given.iter().find(|g| g.backup_id == ids[0]).unwrap();
    assert_eq!(start, format_api_time(newest.start));
    assert!(b["ExpireTime"].as_str().unwrap() > start);
}

#[tokio::test]
async fn redis_instances_paging() {
    let emu = emulator().await;
    let now = emu.clock().now();
    for k in 0..25 {
        emu.state()
            .add_redis_instance(RedisInstance::new(format!("crs-{k:08}"), REGION, now))
            .unwrap();
    }
    emu.state()
        .add_redis_instance(RedisInstance::new("crs-shanghai", "ap-shanghai", now))
        .unwrap();
    let api = Api::new(&emu);
    let a = api.call("redis", "DescribeInstances", json!({})).await;
    assert_eq!(
        a.ok()["TotalCount"],
        25,
        "the region header limits the view"
    );
    assert_eq!(a.ok()["InstanceSet"].as_array().unwrap().len(), 20);
    let a = api
        .call(
            "redis",
            "DescribeInstances",
            json!({"Limit": 10, "Offset": 20}),
        )
        .await;
    assert_eq!(a.ok()["InstanceSet"].as_array().unwrap().len(), 5);
    api.call("redis", "DescribeInstances", json!({"Limit": 1001}))
        .await
        .err("InvalidParameterValue");
    api.call(
        "redis",
        "DescribeInstances",
        json!({"Limit": 10, "Offset": 5}),
    )
    .await
    .err("InvalidParameterValue");
    let a = api
        .call(
            "redis",
            "DescribeInstances",
            json!({"InstanceId": "crs-00000003"}),
        )
        .await;
    assert_eq!(a.ok()["TotalCount"], 1);
    let mut r = api.req("redis", "DescribeInstances", json!({}));
    r.region = None;
    assert_eq!(api.send(&r).await.ok()["TotalCount"], 26);
}

#[tokio::test]
async fn in_progress_backups_are_excluded_unless_asked_for() {
    let emu = sample_emulator().await;
    let s = emu.sample().unwrap().clone();
    let api = Api::new(&emu);
    let body = json!({"InstanceId": s.redis_instance_id});
    let a = api.call("redis", "DescribeInstanceBackups", body).await;
    let ids: Vec<&str> = a.ok()["BackupSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["BackupId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, s.redis_finished);
    assert_eq!(a.ok()["TotalCount"], 4);
    let a = api
        .call(
            "redis",
            "DescribeInstanceBackups",
            json!({"InstanceId": s.redis_instance_id, "Status": [1, 2]}),
        )
        .await;
    assert_eq!(a.ok()["TotalCount"], 5);
    let running = &a.ok()["BackupSet"][0];
    assert_eq!(running["BackupId"], s.redis_in_progress.as_str());
    assert_eq!(running["Status"], 1);
    assert_eq!(running["Locked"], 1);
    assert_eq!(running["EndTime"], "");
    api.call(
        "redis",
        "DescribeBackupUrl",
        json!({"InstanceId": s.redis_instance_id, "BackupId": s.redis_in_progress}),
    )
    .await
    .err("ResourceUnavailable.BackupStatusInvalid");
    // It finishes between two calls.
    emu.state()
        .set_redis_backup_status(
            &s.redis_instance_id,
            &s.redis_in_progress,
            redis_status::NORMAL,
        )
        .unwrap();
    emu.state()
        .set_redis_backup_locked(&s.redis_instance_id, &s.redis_in_progress, false)
        .unwrap();
    let a = api
        .call(
            "redis",
            "DescribeInstanceBackups",
            json!({"InstanceId": s.redis_instance_id}),
        )
        .await;
    assert_eq!(a.ok()["TotalCount"], 5);
    assert_eq!(
        a.ok()["BackupSet"][0]["BackupId"],
        s.redis_in_progress.as_str()
    );
}

#[tokio::test]
async fn redis_time_window_filters_on_start_and_is_at_most_30_days() {
    let (emu, ids) = redis_with_backups(10).await;
    let api = Api::new(&emu);
    let now = emu.clock().now();
    let a = api
        .call(
            "redis",
            "DescribeInstanceBackups",
            json!({
                "InstanceId": "crs-paging",
                "BeginTime": format_api_time(now - Duration::minutes(150)),
                "EndTime": format_api_time(now),
            }),
        )
        .await;
    // Starts at now-1h and now-2h are inside; now-3h is not.
    let got: Vec<&str> = a.ok()["BackupSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["BackupId"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[0].as_str(), ids[1].as_str()]);
    api.call(
        "redis",
        "DescribeInstanceBackups",
        json!({
            "BeginTime": format_api_time(now - Duration::days(31)),
            "EndTime": format_api_time(now),
        }),
    )
    .await
    .err("InvalidParameter.InvalidParameter");
    api.call(
        "redis",
        "DescribeInstanceBackups",
        json!({"BeginTime": "2024-01-01T00:00:00"}),
    )
    .await
    .err("InvalidParameterValue");
}

#[tokio::test]
async fn backup_url_gives_one_file_per_shard_with_true_sizes_and_wrapped_urls() {
    let emu = sample_emulator().await;
    let s = emu.sample().unwrap().clone();
    let api = Api::new(&emu);
    let backup = &s.redis_finished[1];
    let a = api
        .call(
            "redis",
            "DescribeBackupUrl",
            json!({"InstanceId": s.redis_instance_id, "BackupId": backup}),
        )
        .await;
    let r = a.ok();
    let infos = r["BackupInfos"].as_array().unwrap();
    assert_eq!(infos.len(), 3, "one file per shard");
    assert_eq!(
        r["DownloadUrl"].as_array().unwrap().len(),
        3,
        "deprecated list still sent"
    );
    assert_eq!(r["InnerDownloadUrl"].as_array().unwrap().len(), 3);
    assert_eq!(r["Filenames"].as_array().unwrap().len(), 3);
    let now = emu.clock().unix();
    for (i, info) in infos.iter().enumerate() {
        let name = info["FileName"].as_str().unwrap();
        assert!(
            name.ends_with(&format!("-ignore-{}-ignore.rdb", i + 1)),
            "{name}"
        );
        let url = info["DownloadUrl"].as_str().unwrap();
        assert!(url.starts_with(&emu.endpoint()), "{url}");
        assert!(
            url.contains("?sign="),
            "Redis URLs wrap the signature: {url}"
        );
        let (start, end) = tcbackup_signing::cos::url_validity(url).unwrap();
        assert_eq!((start, end), (now - 60, now + 21_600));
        let bytes = reqwest::get(url).await.unwrap();
        assert_eq!(bytes.status(), 200);
        let bytes = bytes.bytes().await.unwrap();
        assert_eq!(info["FileSize"].as_u64().unwrap(), bytes.len() as u64);
        assert!(
            sample::rdb::footer_is_valid(&bytes),
            "shard {i} is a valid RDB"
        );
    }
}

#[tokio::test]
async fn backup_url_error_codes() {
    let emu = sample_emulator().await;
    let s = emu.sample().unwrap().clone();
    let api = Api::new(&emu);
    let url = |instance: &str, backup: &str| json!({"InstanceId": instance, "BackupId": backup});
    let inst = s.redis_instance_id.as_str();
    let b = s.redis_finished[0].as_str();
    api.call("redis", "DescribeBackupUrl", url("crs-none", b))
        .await
        .err("ResourceNotFound.InstanceNotExists");
    api.call("redis", "DescribeBackupUrl", url(inst, "nope"))
        .await
        .err("InvalidParameterValue.BackupNotExists");
    api.call("redis", "DescribeBackupUrl", json!({"BackupId": b}))
        .await
        .err("MissingParameter");
    emu.state().set_redis_backup_locked(inst, b, true).unwrap();
    api.call("redis", "DescribeBackupUrl", url(inst, b))
        .await
        .err("ResourceUnavailable.BackupStatusInvalid");
    emu.state().set_redis_backup_locked(inst, b, false).unwrap();
    api.call("redis", "DescribeBackupUrl", url(inst, b))
        .await
        .ok();
    // Expired by time: the listing shows -1 and the URL is refused.
    emu.state()
        .update_redis_backup(inst, b, |backup| {
            backup.expire = emu.clock().now() - Duration::seconds(1)
        })
        .unwrap();
    api.call("redis", "DescribeBackupUrl", url(inst, b))
        .await
        .err("ResourceUnavailable.BackupStatusInvalid");
    let a = api
        .call(
            "redis",
            "DescribeInstanceBackups",
            json!({"InstanceId": inst, "Status": [-1]}),
        )
        .await;
    assert_eq!(a.ok()["TotalCount"], 1);
    assert_eq!(a.ok()["BackupSet"][0]["Status"], -1);
    // Another region does not see the instance.
    let mut r = api.req(
        "redis",
        "DescribeBackupUrl",
        url(inst, &s.redis_finished[1]),
    );
    r.region = Some("ap-shanghai".to_string());
    api.send(&r).await.err("ResourceNotFound.InstanceNotExists");
}

#[tokio::test]
async fn state_changes_between_calls_are_visible() {
    let (emu, ids) = redis_with_backups(3).await;
    let api = Api::new(&emu);
    let urls = |id: &str| json!({"InstanceId": "crs-paging", "BackupId": id});
    let a = api.call("redis", "DescribeBackupUrl", urls(&ids[0])).await;
    assert_eq!(a.ok()["BackupInfos"][0]["FileSize"], 1000);
    emu.state()
        .set_redis_file_size("crs-paging", &ids[0], 0, 0)
        .unwrap();
    emu.state()
        .set_redis_file_name("crs-paging", &ids[0], 1, "../../x.rdb")
        .unwrap();
    let a = api.call("redis", "DescribeBackupUrl", urls(&ids[0])).await;
    assert_eq!(a.ok()["BackupInfos"][0]["FileSize"], 0);
    assert_eq!(a.ok()["BackupInfos"][1]["FileName"], "../../x.rdb");
    // The object behind the hostile name is still served at a safe path.
    let url = a.ok()["BackupInfos"][1]["DownloadUrl"].as_str().unwrap();
    assert!(!url.contains("/../"), "{url}");
    assert_eq!(
        reqwest::get(url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len(),
        7
    );
    emu.state()
        .remove_redis_backup("crs-paging", &ids[2])
        .unwrap();
    let a = api
        .call(
            "redis",
            "DescribeInstanceBackups",
            json!({"InstanceId": "crs-paging"}),
        )
        .await;
    assert_eq!(a.ok()["TotalCount"], 2);
    api.call("redis", "DescribeBackupUrl", urls(&ids[2]))
        .await
        .err("InvalidParameterValue.BackupNotExists");
    let now = emu.clock().now();
    emu.state()
        .add_redis_backup(
            "crs-paging",
            RedisBackupSpec::finished("b-new", now - Duration::minutes(1))
                .file("n.rdb", ObjectBody::Generated { seed: 5, len: 42 }),
        )
        .unwrap();
    let a = api
        .call(
            "redis",
            "DescribeInstanceBackups",
            json!({"InstanceId": "crs-paging"}),
        )
        .await;
    assert_eq!(a.ok()["TotalCount"], 3);
    assert_eq!(a.ok()["BackupSet"][0]["BackupId"], "b-new");
}

// ---- PostgreSQL -----------------------------------------------------------------

fn filter_id(id: &str) -> Value {
    json!([{"Name": "db-instance-id", "Values": [id]}])
}

#[tokio::test]
async fn pg_listings_follow_filters_windows_and_paging() {
    let emu = sample_emulator().await;
    let s = emu.sample().unwrap().clone();
    let api = Api::new(&emu);
    let a = api
        .call(
            "postgres",
            "DescribeDBInstances",
            json!({"Filters": filter_id(&s.pg_instance_id)}),
        )
        .await;
    assert_eq!(a.ok()["TotalCount"], 1);
    assert_eq!(
        a.ok()["DBInstanceSet"][0]["DBInstanceId"],
        s.pg_instance_id.as_str()
    );
    let a = api
        .call(
            "postgres",
            "DescribeDBInstances",
            json!({"Filters": filter_id("postgres-none")}),
        )
        .await;
    assert_eq!(a.ok()["TotalCount"], 0);

    let base = api
        .call(
            "postgres",
            "DescribeBaseBackups",
            json!({"Filters": filter_id(&s.pg_instance_id)}),
        )
        .await;
    let set = base.ok()["BaseBackupSet"].as_array().unwrap();
    // Four finished and one running, newest start first.
    assert_eq!(base.ok()["TotalCount"], 5);
    assert_eq!(set[0]["Id"], s.pg_base_running.as_str());
    assert_eq!(set[0]["State"], "running");
    assert_eq!(set[0]["FinishTime"], "");
    assert_eq!(set[1]["Id"], s.pg_base_finished[0].as_str());
    assert_eq!(set[1]["State"], "finished");
    assert!(set[1]["Name"].as_str().unwrap().ends_with(".tar.gz"));
    assert!(set[1]["Size"].as_u64().unwrap() > 10_000);

    let logs = api
        .call(
            "postgres",
            "DescribeLogBackups",
            json!({"Filters": filter_id(&s.pg_instance_id)}),
        )
        .await;
    assert_eq!(logs.ok()["TotalCount"], 8);
    assert_eq!(logs.ok()["LogBackupSet"].as_array().unwrap().len(), 8);
    let page = api
        .call(
            "postgres",
            "DescribeLogBackups",
            json!({"Limit": 3, "Offset": 7, "OrderByType": "asc"}),
        )
        .await;
    let page_set = page.ok()["LogBackupSet"].as_array().unwrap();
    assert_eq!(page_set.len(), 1, "Offset is an item offset");
    assert_eq!(
        page_set[0]["Id"],
        s.pg_log_finished[0].as_str(),
        "asc: the newest is last"
    );
    let default_limit = api.call("postgres", "DescribeLogBackups", json!({})).await;
    assert_eq!(
        default_limit.ok()["LogBackupSet"].as_array().unwrap().len(),
        8
    );

    // Finish-time window: old backups drop out of the default 7 days.
    let old = emu.clock().now() - Duration::days(8);
    emu.state()
        .add_pg_backup(
            &s.pg_instance_id,
            PgBackupSpec::finished(
                PgBackupKind::Base,
                "old-base",
                old,
                "old.tar.gz",
                ObjectBody::Generated { seed: 1, len: 10 },
            ),
        )
        .unwrap();
    let a = api.call("postgres", "DescribeBaseBackups", json!({})).await;
    // Unfiltered: the sample instance's five and the snapshot instance's one.
    assert_eq!(a.ok()["TotalCount"], 6);
    let a = api
        .call(
            "postgres",
            "DescribeBaseBackups",
            json!({
                "MinFinishTime": format_api_time(old - Duration::hours(1)),
                "MaxFinishTime": format_api_time(old + Duration::hours(1)),
                "Filters": [{"Name": "base-backup-id", "Values": ["old-base"]}],
            }),
        )
        .await;
    assert_eq!(a.ok()["TotalCount"], 1);
    for bad in [
        json!({"Limit": 0}),
        json!({"Limit": 101}),
        json!({"OrderBy": "Name"}),
    ] {
        api.call("postgres", "DescribeBaseBackups", bad)
            .await
            .err("InvalidParameterValue.InvalidParameterValueError");
    }
    api.call(
        "postgres",
        "DescribeLogBackups",
        json!({"Filters": [{"Name": "base-backup-id", "Values": ["x"]}]}),
    )
    .await
    .err("InvalidParameterValue.InvalidParameterValueError");
    api.call("postgres", "DescribeDBInstances", json!({"Limit": 101}))
        .await
        .err("InvalidParameterValue.InvalidParameterValueError");
}

#[tokio::test]
async fn pg_download_url_has_top_level_signature_and_hours_lifetime() {
    let emu = sample_emulator().await;
    let s = emu.sample().unwrap().clone();
    let api = Api::new(&emu);
    let req = |extra: Value| {
        let mut b = json!({
            "DBInstanceId": s.pg_instance_id,
            "BackupType": "BaseBackup",
            "BackupId": s.pg_base_finished[0],
        });
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let download_url = |extra: Value| api.call("postgres", "DescribeBackupDownloadURL", req(extra));
    let now = emu.clock().unix();
    let a = download_url(json!({})).await;
    let url = a.ok()["BackupDownloadURL"].as_str().unwrap().to_string();
    assert!(url.contains("q-sign-algorithm=sha1"), "{url}");
    assert!(!url.contains("sign=q-"), "{url}");
    assert_eq!(
        tcbackup_signing::cos::url_validity(&url).unwrap(),
        (now - 60, now + 12 * 3600)
    );
    let a = download_url(json!({"URLExpireTime": 36})).await;
    let url36 = a.ok()["BackupDownloadURL"].as_str().unwrap();
    assert_eq!(
        tcbackup_signing::cos::url_validity(url36).unwrap().1,
        now + 36 * 3600
    );
    download_url(json!({"URLExpireTime": 37}))
        .await
        .err("InvalidParameterValue.ParameterValueExceedError");
    download_url(json!({"BackupType": "Full"}))
        .await
        .err("InvalidParameterValue.InvalidParameterValueError");
    download_url(json!({"DBInstanceId": "postgres-none"}))
        .await
        .err("ResourceNotFound.InstanceNotFoundError");
    download_url(json!({"BackupId": "nope"}))
        .await
        .err("InvalidParameterValue.InvalidParameterValueError");
    download_url(json!({"BackupId": s.pg_base_running}))
        .await
        .err("FailedOperation.FailedOperationError");
    // A log backup asked as a base backup does not exist.
    download_url(json!({"BackupId": s.pg_log_finished[0]}))
        .await
        .err("InvalidParameterValue.InvalidParameterValueError");
    let a =
        download_url(json!({"BackupType": "LogBackup", "BackupId": s.pg_log_finished[0]})).await;
    assert!(a.ok()["BackupDownloadURL"].as_str().is_some());
    // The archive downloads and is a valid .tar.gz with PG files.
    let bytes = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    let listed = api
        .call(
            "postgres",
            "DescribeBaseBackups",
            json!({"Filters": [{"Name": "base-backup-id", "Values": [s.pg_base_finished[0]]}]}),
        )
        .await;
    assert_eq!(
        listed.ok()["BaseBackupSet"][0]["Size"].as_u64().unwrap(),
        bytes.len() as u64
    );
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "backup_label"), "{names:?}");
    assert!(names.iter().any(|n| n == "PG_VERSION"), "{names:?}");
}

// ---- rate limits and faults ----------------------------------------------------

#[tokio::test]
async fn rate_limit_answers_request_limit_exceeded() {
    let emu = sample_emulator().await;
    let s = emu.sample().unwrap().clone();
    // A low limit keeps the test independent of machine speed: 40 calls at
    // once cannot all fit into 5/s unless they take seconds.
    emu.state()
        .set_rate_limit(Service::Redis, "DescribeBackupUrl", Some(5));
    let api = Api::new(&emu);
    let body = json!({"InstanceId": s.redis_instance_id, "BackupId": s.redis_finished[0]});
    let calls = (0..40).map(|_| api.call("redis", "DescribeBackupUrl", body.clone()));
    let answers = futures::future::join_all(calls).await;
    let limited: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.code() == Some("RequestLimitExceeded"))
        .collect();
    assert!(limited.len() >= 30, "{} of 40 limited", limited.len());
    let msg = limited[0].response()["Error"]["Message"].as_str().unwrap();
    assert!(
        msg.starts_with("Your current request times equals to `")
            && msg.ends_with("which exceeds the frequency limit `5` for a second. Please reduce the frequency of calls."),
        "{msg}"
    );
    assert!(
        answers.iter().any(|a| a.code().is_none()),
        "the first ones pass"
    );
    // Other actions and other keys are not affected.
    api.call("redis", "DescribeInstances", json!({})).await.ok();
    emu.state().set_rate_limiting(false);
    api.call("redis", "DescribeBackupUrl", body).await.ok();
}

#[tokio::test]
async fn injected_faults_fire_the_given_number_of_times() {
    let emu = sample_emulator().await;
    let api = Api::new(&emu);
    emu.state()
        .inject_fault("DescribeInstances", ApiFault::InternalError, 2);
    api.call("redis", "DescribeInstances", json!({}))
        .await
        .err("InternalError");
    api.call("redis", "DescribeInstances", json!({}))
        .await
        .err("InternalError");
    api.call("redis", "DescribeInstances", json!({})).await.ok();
    emu.state()
        .inject_fault("DescribeInstanceBackups", ApiFault::SystemError, 1);
    api.call("redis", "DescribeInstanceBackups", json!({}))
        .await
        .err("FailedOperation.SystemError");
    emu.state()
        .inject_fault("DescribeBaseBackups", ApiFault::DatabaseAccessError, 1);
    api.call("postgres", "DescribeBaseBackups", json!({}))
        .await
        .err("FailedOperation.DatabaseAccessError");
    emu.state().inject_fault("*", ApiFault::RateLimit, 1);
    api.call("postgres", "DescribeLogBackups", json!({}))
        .await
        .err("RequestLimitExceeded");
    emu.state()
        .inject_fault("DescribeDBInstances", ApiFault::Gateway(502), 1);
    let a = api.call("postgres", "DescribeDBInstances", json!({})).await;
    assert_eq!(a.status, 502);
    assert_eq!(a.content_type, "text/html");
    api.call("postgres", "DescribeDBInstances", json!({}))
        .await
        .ok();
    // Faults are not consumed by other actions, and can be cleared.
    emu.state()
        .inject_fault("DescribeBackupUrl", ApiFault::InternalError, 5);
    api.call("redis", "DescribeInstances", json!({})).await.ok();
    emu.state().clear_faults();
    assert_eq!(emu.state().request_count("DescribeInstances"), 4);
}

// ---- metadata -------------------------------------------------------------------

#[tokio::test]
async fn metadata_credentials_work_until_they_expire() {
    let clock = ManualClock::fixed(at(1_716_249_600));
    let emu = Emulator::start(
        EmulatorOptions::new()
            .clock(Arc::new(clock.clone()))
            .sample(true),
    )
    .await
    .unwrap();
    emu.metadata().set_lifetime(Duration::seconds(400));
    let base = emu.metadata_url();
    let role = reqwest::get(format!("{base}cam/security-credentials/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(role, tcbackup_emulator::metadata::DEFAULT_ROLE);
    let creds: Value = reqwest::get(format!("{base}cam/security-credentials/{role}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(creds["Code"], "Success");
    assert_eq!(creds["ExpiredTime"], 1_716_249_600 + 400);
    assert_eq!(creds["Expiration"], "2024-05-21T00:06:40Z");
    let api = Api::new(&emu);
    let tmp = || {
        let mut r = api.req("redis", "DescribeInstances", json!({}));
        r.secret_id = creds["TmpSecretId"].as_str().unwrap().to_string();
        r.secret_key = creds["TmpSecretKey"].as_str().unwrap().to_string();
        r.token = Some(creds["Token"].as_str().unwrap().to_string());
        r.timestamp = clock.unix();
        r
    };
    // Both sample Redis instances (the cluster, the encrypted one).
    assert_eq!(api.send(&tmp()).await.ok()["TotalCount"], 2);
    clock.advance(Duration::seconds(400));
    api.send(&tmp()).await.err("AuthFailure.TokenFailure");
    assert_eq!(emu.metadata().issued(), 1);
    let wrong = reqwest::get(format!("{base}cam/security-credentials/other-role"))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    emu.metadata().set_role(None);
    let none = reqwest::get(format!("{base}cam/security-credentials/"))
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
}

// ---- sample data and lifecycle --------------------------------------------------

/// The sample RDB passes `redis-check-rdb` when it is installed; the footer
/// checksum is checked here either way.
#[tokio::test]
async fn sample_rdb_has_a_valid_footer_and_passes_redis_check_rdb_if_installed() {
    let emu = sample_emulator().await;
    let s = emu.sample().unwrap().clone();
    let api = Api::new(&emu);
    let a = api
        .call(
            "redis",
            "DescribeBackupUrl",
            json!({"InstanceId": s.redis_instance_id, "BackupId": s.redis_finished[0]}),
        )
        .await;
    let url = a.ok()["BackupInfos"][0]["DownloadUrl"].as_str().unwrap();
    let bytes = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert!(bytes.starts_with(b"REDIS0009"));
    let (body, footer) = bytes.split_at(bytes.len() - 8);
    assert_eq!(*body.last().unwrap(), 0xFF, "EOF opcode before the footer");
    let crc = crc::Crc::<u64>::new(&crc::CRC_64_REDIS).checksum(body);
    assert_eq!(crc.to_le_bytes(), footer);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard.rdb");
    std::fs::write(&path, &bytes).unwrap();
    match std::process::Command::new("redis-check-rdb")
        .arg(&path)
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("RDB looks OK"), "{text}");
        }
        Err(e) => eprintln!("redis-check-rdb not run ({e}); footer checked above"),
    }
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let emu = emulator().await;
    let endpoint = emu.endpoint();
    reqwest::get(format!(
        "{endpoint}/latest/meta-data/cam/security-credentials/"
    ))
    .await
    .unwrap();
    emu.shutdown().await.unwrap();
    let fresh = reqwest::Client::new();
    assert!(fresh.get(format!("{endpoint}/")).send().await.is_err());
}

#[tokio::test]
async fn pg_instance_without_sample_and_state_errors() {
    let emu = emulator().await;
    let now = emu.clock().now();
    emu.state()
        .add_pg_instance(PgInstance::new("postgres-a", REGION, now))
        .unwrap();
    assert!(emu
        .state()
        .add_pg_instance(PgInstance::new("postgres-a", REGION, now))
        .is_err());
    assert!(emu
        .state()
        .add_redis_backup("crs-missing", RedisBackupSpec::finished("x", now))
        .is_err());
    let api = Api::new(&emu);
    let a = api.call("postgres", "DescribeDBInstances", json!({})).await;
    assert_eq!(a.ok()["TotalCount"], 1);
    assert_eq!(a.ok()["DBInstanceSet"][0]["DBInstanceStatus"], "running");
}

#[tokio::test]
async fn detail_restriction_and_unmodelled_filters() {
    let emu = sample_emulator().await;
    let s = emu.sample().unwrap().clone();
    let api = Api::new(&emu);
    let a = api
        .call(
            "redis",
            "DescribeBackupDetail",
            json!({"InstanceId": s.redis_instance_id, "BackupId": s.redis_finished[0]}),
        )
        .await;
    assert_eq!(a.ok()["ShardNum"], 3);
    assert_eq!(a.ok()["Status"], 2);
    assert!(a.ok()["BackupSize"].as_u64().unwrap() > 0);
    assert_eq!(a.ok()["Encrypted"], false);
    assert!(a.ok()["DecryptKey"].is_null() && a.ok()["KeyAlgorithm"].is_null());
    // The encrypted sample: the key and algorithm under the SDK model's names.
    let enc = &s.redis_encrypted_instance_id;
    let served = emu.state().redis_backups(enc).unwrap();
    let a = api
        .call(
            "redis",
            "DescribeBackupDetail",
            json!({"InstanceId": enc, "BackupId": s.redis_encrypted[0]}),
        )
        .await;
    assert_eq!(a.ok()["Encrypted"], true);
    assert_eq!(a.ok()["KeyAlgorithm"], "AES-256-CBC");
    let key = &served
        .iter()
        .find(|b| b.backup_id == s.redis_encrypted[0])
        .unwrap()
        .decrypt_key;
    assert_eq!(a.ok()["DecryptKey"].as_str(), Some(key.as_str()));
    assert!(a.ok()["KmsKeyId"].is_null());
    let a = api
        .call(
            "redis",
            "DescribeBackupDetail",
            json!({"InstanceId": enc, "BackupId": s.redis_encrypted[1]}),
        )
        .await;
    assert_eq!(a.ok()["Encrypted"], true);
    assert!(
        a.ok()["DecryptKey"].is_null(),
        "a KMS-held key is not given out"
    );
    assert_eq!(a.ok()["KmsKeyId"], sample::SAMPLE_KMS_KEY_ID);
    let listed = api
        .call(
            "redis",
            "DescribeInstanceBackups",
            json!({"InstanceId": enc}),
        )
        .await;
    assert_eq!(listed.ok()["TotalCount"], 2);
    assert_eq!(listed.ok()["BackupSet"][0]["Encrypted"], true);
    let a = api
        .call("redis", "DescribeBackupDownloadRestriction", json!({}))
        .await;
    assert_eq!(a.ok()["LimitType"], "NoLimit");
    emu.state()
        .set_pg_download_restriction(tcbackup_emulator::PgRestriction {
            restriction_type: "Customize".to_string(),
            ip_restriction_effect: "Allow".to_string(),
            ip_set: vec!["10.0.0.1".to_string()],
            ..Default::default()
        });
    let a = api
        .call("postgres", "DescribeBackupDownloadRestriction", json!({}))
        .await;
    assert_eq!(a.ok()["RestrictionType"], "Customize");
    assert_eq!(a.ok()["VpcRestrictionEffect"], "");
    // A defined filter the emulator does not model is refused, not ignored.
    api.call("redis", "DescribeInstances", json!({"TagKeys": ["env"]}))
        .await
        .err("UnsupportedOperation");
}

#[tokio::test]
async fn generated_backups_for_benchmarks_are_listed_and_served() {
    let emu = sample_emulator().await;
    let s = emu.sample().unwrap().clone();
    let now = emu.clock().now();
    sample::add_generated_pg_base_backup(
        emu.state(),
        &s.pg_instance_id,
        "bench-base",
        now - Duration::minutes(10),
        3 << 20,
        7,
    )
    .unwrap();
    sample::add_generated_redis_backup(
        emu.state(),
        &s.redis_instance_id,
        "bench-redis",
        now - Duration::minutes(10),
        1 << 20,
        7,
    )
    .unwrap();
    let api = Api::new(&emu);
    let a = api
        .call(
            "redis",
            "DescribeBackupUrl",
            json!({"InstanceId": s.redis_instance_id, "BackupId": "bench-redis"}),
        )
        .await;
    let infos = a.ok()["BackupInfos"].as_array().unwrap();
    assert_eq!(infos.len(), 3);
    assert!(infos.iter().all(|i| i["FileSize"] == 1 << 20));
    let a = api
        .call(
            "postgres",
            "DescribeBackupDownloadURL",
            json!({"DBInstanceId": s.pg_instance_id, "BackupType": "BaseBackup", "BackupId": "bench-base"}),
        )
        .await;
    let url = a.ok()["BackupDownloadURL"].as_str().unwrap();
    let body = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert_eq!(body.len(), 3 << 20);
}

/// Status of a GET of `url` (the body is read and dropped).
async fn get_status(url: &str) -> u16 {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.bytes().await.unwrap();
    status
}

#[tokio::test]
async fn redis_inner_urls_are_on_the_intranet_host_and_limit_only_intranet_refuses_the_public_one()
{
    let emu = sample_emulator().await;
    let s = emu.sample().unwrap().clone();
    let api = Api::new(&emu);
    let urls = |extra: Value| {
        let mut body = json!({"InstanceId": s.redis_instance_id, "BackupId": s.redis_finished[0]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        api.call("redis", "DescribeBackupUrl", body)
    };
    let first = |a: &Answer, field: &str| {
        a.ok()["BackupInfos"][0][field]
            .as_str()
            .unwrap()
            .to_string()
    };

    let open = urls(json!({})).await;
    let (public, inner) = (
        first(&open, "DownloadUrl"),
        first(&open, "InnerDownloadUrl"),
    );
    assert!(public.starts_with(&emu.endpoint()), "{public}");
    assert!(inner.starts_with(&emu.intranet_endpoint()), "{inner}");
    assert_ne!(emu.endpoint(), emu.intranet_endpoint());
    assert_eq!(
        open.ok()["InnerDownloadUrl"][0].as_str(),
        Some(inner.as_str()),
        "the deprecated list names the same intranet links"
    );
    assert_eq!(get_status(&public).await, 200);
    assert_eq!(get_status(&inner).await, 200);

    let limited = urls(json!({"LimitType": "LimitOnlyIntranet"})).await;
    let public = first(&limited, "DownloadUrl");
    let resp = reqwest::get(&public).await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body = resp.text().await.unwrap();
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    assert_eq!(get_status(&first(&limited, "InnerDownloadUrl")).await, 200);

    // The account's policy applies when the call names none; NoLimit per
    // call overrides it.
    emu.state()
        .set_redis_download_restriction(tcbackup_emulator::RedisRestriction {
            limit_type: "LimitOnlyIntranet".to_string(),
            ..Default::default()
        });
    let by_policy = urls(json!({})).await;
    assert_eq!(get_status(&first(&by_policy, "DownloadUrl")).await, 403);
    let overridden = urls(json!({"LimitType": "NoLimit"})).await;
    assert_eq!(get_status(&first(&overridden, "DownloadUrl")).await, 200);

    urls(json!({"LimitType": "OnlyIntranet"}))
        .await
        .err("InvalidParameterValue");
    urls(json!({"LimitType": "Customize"}))
        .await
        .err("InvalidParameter.InvalidParameter");
    let received = emu.state().received_params("DescribeBackupUrl");
    let limit_types: Vec<Option<&str>> = received
        .iter()
        .map(|p| p.get("LimitType").and_then(Value::as_str))
        .collect();
    assert_eq!(
        limit_types,
        [
            None,
            Some("LimitOnlyIntranet"),
            None,
            Some("NoLimit"),
            Some("OnlyIntranet"),
            Some("Customize")
        ]
    );
    let stats = emu.cos().stats(&cos_key(&public));
    assert_eq!(stats.intranet_requests(), 2, "{stats:?}");
    assert_eq!(stats.count_status(403), 2);
}

/// The object key of a presigned URL (its path).
fn cos_key(url: &str) -> String {
    reqwest::Url::parse(url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_string()
}

#[tokio::test]
async fn pg_intranet_restriction_gives_the_intranet_url_and_the_policy_refuses_the_public_one() {
    let emu = sample_emulator().await;
    let s = emu.sample().unwrap().clone();
    let api = Api::new(&emu);
    let url = |extra: Value| {
        let mut body = json!({
            "DBInstanceId": s.pg_instance_id,
            "BackupType": "BaseBackup",
            "BackupId": s.pg_base_finished[0],
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        api.call("postgres", "DescribeBackupDownloadURL", body)
    };
    let link = |a: &Answer| a.ok()["BackupDownloadURL"].as_str().unwrap().to_string();

    let public = link(&url(json!({})).await);
    assert!(public.starts_with(&emu.endpoint()), "{public}");
    assert_eq!(get_status(&public).await, 200);
    let intranet =
        link(&url(json!({"BackupDownloadRestriction": {"RestrictionType": "INTRANET"}})).await);
    assert!(intranet.starts_with(&emu.intranet_endpoint()), "{intranet}");
    assert_eq!(get_status(&intranet).await, 200);

    emu.state()
        .set_pg_download_restriction(tcbackup_emulator::PgRestriction {
            restriction_type: "INTRANET".to_string(),
            ..Default::default()
        });
    let refused = link(&url(json!({})).await);
    assert!(refused.starts_with(&emu.endpoint()), "{refused}");
    assert_eq!(get_status(&refused).await, 403);
    let none = link(&url(json!({"BackupDownloadRestriction": {"RestrictionType": "NONE"}})).await);
    assert_eq!(
        get_status(&none).await,
        200,
        "NONE per call overrides the policy"
    );

    url(json!({"BackupDownloadRestriction": {"RestrictionType": "INNER"}}))
        .await
        .err("InvalidParameterValue.InvalidParameterValueError");
    url(json!({"BackupDownloadRestriction": {"RestrictionType": "CUSTOMIZE"}}))
        .await
        .err("InvalidParameterValue.InvalidParameterValueError");
    let received = emu.state().received_params("DescribeBackupDownloadURL");
    assert_eq!(received.len(), 6);
    assert!(received[0].get("BackupDownloadRestriction").is_none());
    assert_eq!(
        received[1]["BackupDownloadRestriction"],
        json!({"RestrictionType": "INTRANET"})
    );
    let stats = emu.cos().stats(&cos_key(&public));
    assert_eq!(stats.intranet_requests(), 1, "{stats:?}");
}
