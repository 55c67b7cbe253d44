//! Unit tests of `ApiClient` against the scripted fake in `testutil`.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};

use super::*;
use crate::cloud::credentials::CredentialSource;
use crate::cloud::testutil::{FakeApi, FakeMetadata, Reply};
use tcbackup_signing::clock::ManualClock;

const KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
const ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";

fn fast_config(endpoint: &str) -> ClientConfig {
    ClientConfig {
        endpoint: Some(endpoint.to_string()),
        retry: RetryConfig {
            max_attempts: 4,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(4),
            slow_base: Duration::from_millis(2),
        },
        ..ClientConfig::default()
    }
}

fn fixed(id: &str, key: &str, token: Option<&str>) -> CredentialProvider {
    CredentialProvider::fixed(
        CredentialSource::Fixed {
            label: "test".into(),
        },
        Credentials {
            secret_id: id.into(),
            secret_key: Secret::new(key),
            token: token.map(Secret::new),
            expires_at: None,
        },
    )
}

use tcbackup_signing::secret::Secret;

fn client(endpoint: &str, creds: CredentialProvider, clock: ManualClock) -> ApiClient {
    ApiClient::with_rng(
        fast_config(endpoint),
        creds,
        Arc::new(clock),
        Box::new(StdRng::seed_from_u64(1)),
    )
    .expect("client")
}

async fn describe(client: &ApiClient) -> Result<Value, ApiError> {
    client
        .call(
            Service::Redis,
            "DescribeInstances",
            Some("ap-guangzhou"),
            &json!({"InstanceId": "crs-1", "Limit": 1000, "Offset": 0}),
        )
        .await
}

#[tokio::test]
async fn sends_a_correctly_signed_request_with_the_common_headers() {
    let api = FakeApi::start(KEY, |_, _| {
        Reply::Ok(json!({"TotalCount": 0, "InstanceSet": []}))
    })
    .await;
    let clock = ManualClock::fixed(chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("t"));
    let c = client(&api.endpoint, fixed(ID, KEY, None), clock);
    let answer = describe(&c).await.expect("call");
    assert_eq!(answer["TotalCount"], 0);
    assert_eq!(answer["RequestId"], "req-0");

    let reqs = api.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert!(r.signature_valid, "signature must verify: {:?}", r.headers);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("host"), api.endpoint.trim_start_matches("http://"));
    assert_eq!(r.header("x-tc-action"), "DescribeInstances");
    assert_eq!(r.header("x-tc-version"), "2018-04-12");
    assert_eq!(r.header("x-tc-region"), "ap-guangzhou");
    assert_eq!(r.header("x-tc-timestamp"), "1700000000");
    assert_eq!(r.header("x-tc-language"), "en-US");
    assert!(!r.headers.contains_key("x-tc-token"));
    assert!(r.header("authorization").starts_with(&format!(
        "TC3-HMAC-SHA256 Credential={ID}/2023-11-14/redis/tc3_request, SignedHeaders=content-type;host, Signature="
    )));
    assert_eq!(r.json()["InstanceId"], "crs-1");
}

#[tokio::test]
async fn postgres_version_token_and_no_region_header() {
    let api = FakeApi::start(KEY, |_, _| Reply::Ok(json!({}))).await;
    let c = client(
        &api.endpoint,
        fixed(ID, KEY, Some("sess-token")),
        ManualClock::new(),
    );
    let _: Value = c
        .call(Service::Postgres, "DescribeDBInstances", None, &json!({}))
        .await
        .expect("call");
    let r = &api.requests()[0];
    assert!(r.signature_valid);
    assert_eq!(r.header("x-tc-version"), "2017-03-12");
    assert_eq!(r.header("x-tc-token"), "sess-token");
    assert!(!r.headers.contains_key("x-tc-region"));
    assert!(r.header("authorization").contains("/postgres/tc3_request"));
}

#[tokio::test]
async fn retries_transient_failures_and_re_signs_every_attempt() {
    let clock = ManualClock::fixed(chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("t"));
    let server_clock = clock.clone();
    let api = FakeApi::start(KEY, move |n, _| {
        // Time passes on the client between attempts.
        server_clock.advance(chrono::Duration::seconds(7));
        match n {
            0 => Reply::Error("InternalError.InternalError"),
            1 => Reply::Error("RequestLimitExceeded"),
            2 => Reply::Status(502),
            _ => Reply::Ok(json!({"TotalCount": 1})),
        }
    })
    .await;
    let c = client(&api.endpoint, fixed(ID, KEY, None), clock);
    let answer = describe(&c).await.expect("succeeds on the fourth attempt");
    assert_eq!(answer["TotalCount"], 1);
    let reqs = api.requests();
    assert_eq!(reqs.len(), 4);
    assert!(reqs.iter().all(|r| r.signature_valid));
    let stamps: Vec<&str> = reqs.iter().map(|r| r.header("x-tc-timestamp")).collect();
    assert_eq!(
        stamps,
        ["1700000000", "1700000007", "1700000014", "1700000021"]
    );
    let mut sigs: Vec<String> = reqs.iter().map(|r| r.signature()).collect();
    sigs.dedup();
    assert_eq!(sigs.len(), 4, "every attempt is signed anew");
    // The body is the same bytes every time.
    assert!(reqs.iter().all(|r| r.body == reqs[0].body));
}

#[tokio::test]
async fn gives_up_after_max_attempts_with_a_rate_limited_error() {
    let api = FakeApi::start(KEY, |_, _| {
        Reply::Error("RequestLimitExceeded.UinLimitExceeded")
    })
    .await;
    let c = client(&api.endpoint, fixed(ID, KEY, None), ManualClock::new());
    let err = describe(&c).await.expect_err("stays limited");
    assert_eq!(api.requests().len(), 4);
    assert!(
        matches!(err, ApiError::RateLimited { attempts: 4, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), Some("RequestLimitExceeded.UinLimitExceeded"));
    assert!(err.is_retryable());
}

#[tokio::test]
async fn signature_expire_re_signs_once_then_fails() {
    let clock = ManualClock::fixed(chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("t"));
    let server_clock = clock.clone();
    let api = FakeApi::start(KEY, move |_, _| {
        server_clock.advance(chrono::Duration::seconds(1));
        Reply::Error("AuthFailure.SignatureExpire")
    })
    .await;
    let c = client(&api.endpoint, fixed(ID, KEY, None), clock);
    let err = describe(&c).await.expect_err("clock skew persists");
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2, "one re-sign, no more");
    assert_ne!(
        reqs[0].header("x-tc-timestamp"),
        reqs[1].header("x-tc-timestamp")
    );
    assert_eq!(err.code(), Some("AuthFailure.SignatureExpire"));
    assert!(err.is_auth());
    assert!(err.to_string().contains("clock"), "{err}");
}

#[tokio::test]
async fn signature_expire_once_then_success() {
    let api = FakeApi::start(KEY, |n, _| match n {
        0 => Reply::Error("AuthFailure.SignatureExpire"),
        _ => Reply::Ok(json!({"TotalCount": 3})),
    })
    .await;
    let c = client(&api.endpoint, fixed(ID, KEY, None), ManualClock::new());
    assert_eq!(
        describe(&c).await.expect("second try works")["TotalCount"],
        3
    );
    assert_eq!(api.requests().len(), 2);
}

#[tokio::test]
async fn other_auth_failures_fail_at_once() {
    for code in [
        "AuthFailure.SignatureFailure",
        "AuthFailure.InvalidAuthorization",
        "UnauthorizedOperation.NoCAMAuthed",
        "InvalidParameterValue.BackupNotExists",
    ] {
        let api = FakeApi::start(KEY, move |_, _| Reply::Error(code)).await;
        let c = client(&api.endpoint, fixed(ID, KEY, None), ManualClock::new());
        let err = describe(&c).await.expect_err(code);
        assert_eq!(api.requests().len(), 1, "{code} is not retried");
        assert_eq!(err.code(), Some(code));
    }
}

#[tokio::test]
async fn token_failure_refreshes_role_credentials_once() {
    let meta = FakeMetadata::start(Some("backup-role"), || {
        chrono::Utc::now().timestamp() + 3600
    })
    .await;
    let creds = meta.role_provider(Arc::new(ManualClock::new())).await;
    assert_eq!(meta.fetches(), 1);
    let api = FakeApi::start(KEY, |_, r| {
        if r.header("x-tc-token") == "tmp-token-1" {
            Reply::Error("AuthFailure.TokenFailure")
        } else {
            Reply::Ok(json!({"TotalCount": 0}))
        }
    })
    .await;
    let c = client(&api.endpoint, creds, ManualClock::new());
    describe(&c).await.expect("works after refresh");
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("x-tc-token"), "tmp-token-2");
    assert!(reqs[1]
        .header("authorization")
        .contains("Credential=tmp-id-2/"));
    assert!(reqs.iter().all(|r| r.signature_valid));
    assert_eq!(meta.fetches(), 2, "exactly one forced refresh");
}

#[tokio::test]
async fn token_failure_twice_or_with_fixed_keys_fails() {
    let api = FakeApi::start(KEY, |_, _| Reply::Error("AuthFailure.TokenFailure")).await;
    let c = client(
        &api.endpoint,
        fixed(ID, KEY, Some("old-token")),
        ManualClock::new(),
    );
    let err = describe(&c).await.expect_err("cannot refresh fixed keys");
    assert_eq!(api.requests().len(), 1);
    assert!(err.is_auth());

    let meta = FakeMetadata::start(Some("r"), || chrono::Utc::now().timestamp() + 3600).await;
    let creds = meta.role_provider(Arc::new(ManualClock::new())).await;
    let c = client(&api.endpoint, creds, ManualClock::new());
    let err = describe(&c).await.expect_err("refresh does not help");
    assert_eq!(api.requests().len(), 3, "one more plus one after refresh");
    assert_eq!(err.code(), Some("AuthFailure.TokenFailure"));
    assert_eq!(meta.fetches(), 2);
}

#[tokio::test]
async fn transport_errors_are_retried_then_reported_without_secrets() {
    // A port that was just free: connections are refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let c = client(
        &format!("http://{addr}"),
        fixed(ID, KEY, None),
        ManualClock::new(),
    );
    let err = describe(&c).await.expect_err("nothing listens");
    assert!(matches!(err, ApiError::Transport { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(!err.is_auth());
    assert!(!err.to_string().contains(KEY));
}

#[tokio::test]
async fn undecodable_answers_are_decode_errors() {
    let api = FakeApi::start(KEY, |_, _| Reply::Ok(json!({"TotalCount": "many"}))).await;
    let c = client(&api.endpoint, fixed(ID, KEY, None), ManualClock::new());
    let err = c
        .call::<_, crate::cloud::redis::DescribeInstancesResponse>(
            Service::Redis,
            "DescribeInstances",
            None,
            &json!({}),
        )
        .await
        .expect_err("TotalCount is not a number");
    assert!(matches!(err, ApiError::Decode { .. }), "{err:?}");
    assert_eq!(api.requests().len(), 1, "decode errors are not retried");
}

#[test]
fn envelope_parsing_table() {
    let ok = parse_envelope("A", br#"{"Response": {"X": 1, "RequestId": "r-1"}}"#).expect("ok");
    assert_eq!(ok.request_id, "r-1");
    assert_eq!(ok.response["X"], 1);

    let err = parse_envelope(
        "DescribeBackupUrl",
        br#"{"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "The provided credentials could not be validated. Please check your signature is correct."}, "RequestId": "ed93f3cb-f35e-473f-b9f3-0d451b8b79c6"}}"#,
    )
    .err()
    .expect("error");
    match &err {
        ApiError::Service {
            action,
            code,
            message,
            request_id,
        } => {
            assert_eq!(action, "DescribeBackupUrl");
            assert_eq!(code, "AuthFailure.SignatureFailure");
            assert!(message.starts_with("The provided credentials"));
            assert_eq!(request_id, "ed93f3cb-f35e-473f-b9f3-0d451b8b79c6");
        }
        other => panic!("expected a service error, got {other:?}"),
    }
    assert!(err.is_auth());

    for bad in [
        &b"not json"[..],
        br#"{"NoResponse": {}}"#,
        br#"{"Response": 5}"#,
        br#"{"Response": {"Error": {"Message": "no code"}}}"#,
    ] {
        let e = parse_envelope("A", bad).err().expect("decode error");
        assert!(matches!(e, ApiError::Decode { .. }), "{e:?}");
    }
}

#[test]
fn host_header_keeps_non_default_ports_only() {
    let u = |s: &str| url::Url::parse(s).expect("url");
    assert_eq!(
        host_header(&u("https://redis.tencentcloudapi.com/")),
        "redis.tencentcloudapi.com"
    );
    assert_eq!(host_header(&u("http://127.0.0.1:9000")), "127.0.0.1:9000");
    assert_eq!(host_header(&u("http://[::1]:9000/")), "[::1]:9000");
    assert_eq!(host_header(&u("https://h:443/")), "h");
}

#[test]
fn bad_endpoints_are_setup_errors() {
    for bad in ["not a url", "ftp://h/", "file:///tmp"] {
        let config = ClientConfig {
            endpoint: Some(bad.to_string()),
            ..ClientConfig::default()
        };
        let err = ApiClient::new(config, fixed(ID, KEY, None), Arc::new(ManualClock::new()))
            .expect_err(bad);
        assert!(matches!(err, ApiError::Setup { .. }), "{bad}: {err:?}");
    }
    let c = ApiClient::new(
        ClientConfig::default(),
        fixed(ID, KEY, None),
        Arc::new(ManualClock::new()),
    )
    .expect("default");
    assert_eq!(
        c.endpoint(Service::Redis, Some("ap-guangzhou")),
        "https://redis.tencentcloudapi.com/"
    );
    assert_eq!(
        c.endpoint(Service::Postgres, None),
        "https://postgres.tencentcloudapi.com/"
    );
}

#[test]
fn the_site_and_a_financial_region_pick_the_host_unless_an_endpoint_overrides() {
    let client = |endpoint: Option<&str>, site: Site| {
        let config = ClientConfig {
            endpoint: endpoint.map(str::to_string),
            site,
            ..ClientConfig::default()
        };
        ApiClient::new(config, fixed(ID, KEY, None), Arc::new(ManualClock::new())).expect("client")
    };
    let intl = client(None, Site::Intl);
    assert_eq!(
        intl.endpoint(Service::Redis, Some("ap-singapore")),
        "https://redis.intl.tencentcloudapi.com/"
    );
    assert_eq!(
        intl.endpoint(Service::Postgres, Some("ap-shanghai-fsi")),
        "https://postgres.ap-shanghai-fsi.tencentcloudapi.com/"
    );
    let target = intl
        .target(Service::Postgres, Some("ap-shenzhen-fsi"))
        .expect("target");
    assert_eq!(target.host, "postgres.ap-shenzhen-fsi.tencentcloudapi.com");
    let china = client(None, Site::China);
    let target = china.target(Service::Redis, None).expect("target");
    assert_eq!(target.host, "redis.tencentcloudapi.com");
    assert_eq!(target.url.as_str(), "https://redis.tencentcloudapi.com/");
    // The endpoint overrides the site and the region, host and all.
    let pinned = client(Some("http://127.0.0.1:9000"), Site::Intl);
    for region in [None, Some("ap-shanghai-fsi")] {
        assert_eq!(
            pinned.endpoint(Service::Redis, region),
            "http://127.0.0.1:9000/"
        );
        let target = pinned.target(Service::Redis, region).expect("target");
        assert_eq!(target.host, "127.0.0.1:9000");
    }
}

#[test]
fn traced_answers_never_show_a_decryption_key() {
    let body = br#"{"Response":{"BackupId":"b","Encrypted":true,"DecryptKey" : "s3cr\"et-key","KmsKeyId":"kms-1","KeyAlgorithm":"AES-256-CBC"}}"#;
    let text = redact_body(body);
    assert!(!text.contains("s3cr") && !text.contains("et-key"), "{text}");
    assert!(text.contains("\"DecryptKey\" : \"REDACTED\""), "{text}");
    assert!(text.contains("\"KmsKeyId\":\"kms-1\""), "{text}");
    let none = redact_body(br#"{"Response":{"DecryptKey":null,"KmsKeyId":""}}"#);
    assert!(none.contains("\"DecryptKey\":null"), "{none}");
    let cut = redact_body(br#"{"Response":{"DecryptKey":"unterminated-secret"#);
    assert!(!cut.contains("unterminated"), "{cut}");
}

#[test]
fn traced_answers_have_every_url_signature_redacted() {
    let body = br#"{"Response":{"BackupInfos":[{"DownloadUrl":"https://b.cos.ap-guangzhou.myqcloud.com/x.rdb?q-sign-algorithm=sha1\u0026q-ak=AKID\u0026q-signature=c0ffee\u0026x-cos-security-token=tok123"}],"DownloadUrl":["https:\/\/h\/x?sign=q-signature%3Ddeadbeef"],"BackupDownloadURL":"https://h/p?q-signature=abcdef&q-key-time=1%3B2"}}"#;
    let text = redact_body(body);
    for secret in ["c0ffee", "tok123", "deadbeef", "abcdef"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("q-key-time=1%3B2"), "{text}");
}
