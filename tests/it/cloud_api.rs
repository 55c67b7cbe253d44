//! The real cloud client (`tcbackup_core::cloud`) against the built-in emulator
//! over loopback: paging of both services, finished-only selection,
//! resolution to working URLs, authentication failures, clock skew, rate
//! limits and injected faults, and logs free of secrets.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;

use tcbackup_core::cloud::credentials::{CredentialSource, MetadataConfig};
use tcbackup_core::cloud::retry::RetryConfig;
use tcbackup_core::cloud::{
    ApiClient, ApiError, ApiTimeZone, Catalog, ClientConfig, CredentialProvider, Credentials,
};
use tcbackup_core::model::{BackupKind, Network, RemoteBackup, Service};
use tcbackup_emulator::{
    ApiFault, Emulator, EmulatorOptions, ObjectBody, PgBackupKind, PgBackupSpec, PgInstance,
    RedisBackupSpec, RedisInstance,
};
use tcbackup_signing::clock::{Clock, ManualClock, SystemClock};

const REGION: &str = "ap-guangzhou";
const REDIS: &str = "crs-pagetest";
const PG: &str = "postgres-pagetest";

fn retry() -> RetryConfig {
    RetryConfig {
        max_attempts: 8,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(400),
        slow_base: Duration::from_millis(50),
    }
}

fn client_with(emu: &Emulator, creds: CredentialProvider, clock: Arc<dyn Clock>) -> ApiClient {
    let config = ClientConfig {
        endpoint: Some(emu.endpoint()),
        retry: retry(),
        ..ClientConfig::default()
    };
    ApiClient::with_rng(config, creds, clock, Box::new(StdRng::seed_from_u64(9))).expect("client")
}

fn keys(id: &str, key: &str) -> CredentialProvider {
    CredentialProvider::fixed(
        CredentialSource::Fixed {
            label: "test keys".into(),
        },
        Credentials::permanent(id, key),
    )
}

fn client(emu: &Emulator) -> ApiClient {
    client_with(
        emu,
        keys(emu.secret_id(), emu.secret_key().expose()),
        Arc::new(SystemClock),
    )
}

async fn emulator() -> Emulator {
    Emulator::start(EmulatorOptions::new())
        .await
        .expect("emulator")
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

/// The finished backups of the test's Redis instance from the last `days` days.
async fn finished_redis_backups(catalog: &Catalog, days: i64) -> Vec<RemoteBackup> {
    catalog
        .list_finished_backups(
            Service::Redis,
            REDIS,
            Some(REGION),
            now() - Span::days(days),
            now(),
            &[],
        )
        .await
        .expect("list")
}

fn body(n: usize) -> ObjectBody {
    ObjectBody::Bytes(format!("REDIS0009-backup-{n}").into_bytes().into())
}

/// A Redis instance with 45 finished backups (one an hour over two days)
/// and two in progress, in the emulator.
fn add_redis_backups(emu: &Emulator) {
    let state = emu.state();
    state
        .add_redis_instance(RedisInstance::new(REDIS, REGION, now()))
        .expect("instance");
    for i in 0..45 {
        let start = now() - Span::hours(50) + Span::hours(i);
        let spec = RedisBackupSpec::finished(format!("rb-{i:02}"), start)
            .file(format!("rb-{i:02}.rdb"), body(i as usize));
        state.add_redis_backup(REDIS, spec).expect("backup");
    }
    for i in 0..2 {
        let start = now() - Span::minutes(10 + i);
        let spec = RedisBackupSpec::in_progress(format!("rb-running-{i}"), start);
        state.add_redis_backup(REDIS, spec).expect("backup");
    }
}

#[tokio::test]
async fn redis_pages_through_45_backups_and_keeps_only_finished_ones() {
    let emu = emulator().await;
    add_redis_backups(&emu);
    // Pages of 20, the API's default size: 45 backups take three pages.
    let catalog = Catalog::new(client(&emu), ApiTimeZone::default()).with_page_sizes(20, 10);
    let since = now() - Span::days(7);
    let all = catalog
        .list_backups(Service::Redis, REDIS, Some(REGION), since, now(), &[])
        .await
        .expect("list");
    assert_eq!(all.len(), 47);
    assert_eq!(all.iter().filter(|b| !b.finished).count(), 2);
    assert!(emu.state().request_count("DescribeInstanceBackups") >= 3);

    let finished = catalog
        .list_finished_backups(Service::Redis, REDIS, Some(REGION), since, now(), &[])
        .await
        .expect("list");
    assert_eq!(finished.len(), 45);
    assert!(finished
        .iter()
        .all(|b| b.backup_id.starts_with("rb-") && !b.backup_id.contains("running")));
    let mut ids: Vec<&str> = finished.iter().map(|b| b.backup_id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 45, "oldest first, each once");
    assert_eq!(finished[0].backup_id, "rb-00");
    // API times are read at UTC+8 and come back as the instants stored.
    let stored = emu.state().redis_backups(REDIS).expect("backups");
    let first = stored
        .iter()
        .find(|b| b.backup_id == "rb-00")
        .expect("stored");
    assert_eq!(finished[0].start.timestamp(), first.start.timestamp());
}

#[tokio::test]
async fn a_lookback_beyond_30_days_is_asked_in_windows_the_emulator_accepts() {
    let emu = emulator().await;
    add_redis_backups(&emu);
    let catalog = Catalog::new(client(&emu), ApiTimeZone::default());
    // The emulator refuses any window over 30 days; 75 days must be split.
    let all = catalog
        .list_backups(
            Service::Redis,
            REDIS,
            Some(REGION),
            now() - Span::days(75),
            now(),
            &[],
        )
        .await
        .expect("list in windows");
    assert_eq!(all.len(), 47);
    assert_eq!(emu.state().request_count("DescribeInstanceBackups"), 3);
}

#[tokio::test]
async fn postgres_pages_through_25_base_backups_and_lists_logs() {
    let emu = emulator().await;
    let state = emu.state();
    state
        .add_pg_instance(PgInstance::new(PG, REGION, now()))
        .expect("instance");
    for i in 0..25 {
        let start = now() - Span::hours(30) + Span::hours(i);
        let spec = PgBackupSpec::finished(
            PgBackupKind::Base,
            format!("base-{i:02}"),
            start,
            format!("base-{i:02}.tar.gz"),
            body(i as usize),
        );
        state.add_pg_backup(PG, spec).expect("backup");
    }
    let running = PgBackupSpec::running(
        PgBackupKind::Base,
        "base-running",
        now() - Span::minutes(5),
        "base-running.tar.gz",
        body(99),
    );
    state.add_pg_backup(PG, running).expect("backup");
    for i in 0..3 {
        let spec = PgBackupSpec::finished(
            PgBackupKind::Log,
            format!("log-{i}"),
            now() - Span::hours(3) + Span::hours(i),
            format!("log-{i}.xlog.tar.gz"),
            body(100 + i as usize),
        );
        state.add_pg_backup(PG, spec).expect("backup");
    }
    let catalog = Catalog::new(client(&emu), ApiTimeZone::default()).with_page_sizes(20, 10);
    let since = now() - Span::days(7);
    let finished = catalog
        .list_finished_backups(
            Service::Postgres,
            PG,
            Some(REGION),
            since,
            now(),
            &[BackupKind::PgBase, BackupKind::PgLog],
        )
        .await
        .expect("list");
    let bases: Vec<_> = finished
        .iter()
        .filter(|b| b.kind == BackupKind::PgBase)
        .collect();
    let logs: Vec<_> = finished
        .iter()
        .filter(|b| b.kind == BackupKind::PgLog)
        .collect();
    assert_eq!(bases.len(), 25, "the running base backup is excluded");
    assert_eq!(logs.len(), 3);
    assert!(
        emu.state().request_count("DescribeBaseBackups") >= 3,
        "25 in pages of 10"
    );
    let b = bases
        .iter()
        .find(|b| b.backup_id == "base-07")
        .expect("listed");
    assert_eq!(b.files.len(), 1);
    assert_eq!(b.files[0].name, "base-07.tar.gz");
    assert_eq!(b.files[0].expected_size, "REDIS0009-backup-7".len() as u64);

    // The resolved URL is presigned by the emulator's COS and serves the bytes.
    let files = catalog
        .resolve(b, 2, Network::Public)
        .await
        .expect("resolve");
    assert_eq!(files.len(), 1);
    let got = reqwest::get(files[0].url.expose())
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    assert_eq!(&got[..], b"REDIS0009-backup-7");
}

#[tokio::test]
async fn redis_cluster_backups_resolve_to_one_working_url_per_shard() {
    let emu = emulator().await;
    let state = emu.state();
    state
        .add_redis_instance(RedisInstance::new(REDIS, REGION, now()).cluster(3))
        .expect("instance");
    let mut spec = RedisBackupSpec::finished("cluster-1", now() - Span::hours(1));
    for shard in 0..3 {
        spec = spec.file(format!("cluster-1-shard-{shard}.rdb"), body(shard));
    }
    state.add_redis_backup(REDIS, spec).expect("backup");
    let catalog = Catalog::new(client(&emu), ApiTimeZone::default());
    catalog
        .check_instance(Service::Redis, REDIS, Some(REGION))
        .await
        .expect("instance exists");
    let backups = finished_redis_backups(&catalog, 1).await;
    assert_eq!(backups.len(), 1);
    let files = catalog
        .resolve(&backups[0], 12, Network::Public)
        .await
        .expect("resolve");
    assert_eq!(files.len(), 3);
    for (shard, file) in files.iter().enumerate() {
        assert_eq!(file.name, format!("cluster-1-shard-{shard}.rdb"));
        let got = reqwest::get(file.url.expose())
            .await
            .expect("GET")
            .bytes()
            .await
            .expect("body");
        assert_eq!(got.len() as u64, file.expected_size);
        let shown = format!("{}", file.url);
        assert!(
            shown.contains("REDACTED"),
            "displayed URLs are redacted: {shown}"
        );
    }

    // A shard the API reports with size 0 fails the whole backup.
    state
        .set_redis_file_size(REDIS, "cluster-1", 1, 0)
        .expect("size");
    let err = catalog
        .resolve(&backups[0], 12, Network::Public)
        .await
        .expect_err("invalid shard");
    assert!(err.to_string().contains("FileSize 0"), "{err}");
}

#[tokio::test]
async fn unknown_instances_are_reported_by_name() {
    let emu = emulator().await;
    let catalog = Catalog::new(client(&emu), ApiTimeZone::default());
    for (service, id) in [
        (Service::Redis, "crs-missing"),
        (Service::Postgres, "postgres-missing"),
    ] {
        let err = catalog
            .check_instance(service, id, Some(REGION))
            .await
            .expect_err("unknown");
        assert!(matches!(err, ApiError::InstanceNotFound { .. }), "{err:?}");
        assert!(err.to_string().contains(id), "{err}");
    }
    // Listing Redis backups of an unknown instance names it too; PostgreSQL
    // lists through a filter, so an unknown instance simply has no backups
    // (which is why the sync cycle calls check_instance first).
    let err = catalog
        .list_backups(
            Service::Redis,
            "crs-missing",
            Some(REGION),
            now() - Span::days(1),
            now(),
            &[],
        )
        .await
        .expect_err("unknown");
    assert!(matches!(err, ApiError::InstanceNotFound { .. }), "{err:?}");
    let none = catalog
        .list_backups(
            Service::Postgres,
            "postgres-missing",
            Some(REGION),
            now() - Span::days(1),
            now(),
            &[BackupKind::PgBase],
        )
        .await
        .expect("empty listing");
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_wrong_secret_key_is_an_auth_error_naming_signature_failure() {
    let emu = emulator().await;
    add_redis_backups(&emu);
    let wrong = client_with(
        &emu,
        keys(emu.secret_id(), "not-the-key"),
        Arc::new(SystemClock),
    );
    let catalog = Catalog::new(wrong, ApiTimeZone::default());
    let err = catalog
        .check_instance(Service::Redis, REDIS, Some(REGION))
        .await
        .expect_err("refused");
    assert!(err.is_auth(), "{err:?}");
    assert_eq!(err.code(), Some("AuthFailure.SignatureFailure"));
    assert!(
        err.to_string().contains("AuthFailure.SignatureFailure"),
        "{err}"
    );
    assert_eq!(
        emu.state().total_requests(),
        1,
        "auth failures are not retried"
    );

    let unknown = client_with(&emu, keys("AKIDunknownEXAMPLE", "k"), Arc::new(SystemClock));
    let err = Catalog::new(unknown, ApiTimeZone::default())
        .check_instance(Service::Redis, REDIS, Some(REGION))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Some("AuthFailure.SecretIdNotFound"));
    assert!(err.is_auth());
}

/// A client clock shifted `offset` from the emulator's.
fn skewed(offset: i64) -> Arc<dyn Clock> {
    let clock = ManualClock::new();
    clock.advance(Span::seconds(offset));
    Arc::new(clock)
}

#[tokio::test]
async fn clock_skew_within_300_seconds_is_accepted_beyond_it_is_signature_expire() {
    let emu = emulator().await;
    add_redis_backups(&emu);
    let creds = || keys(emu.secret_id(), emu.secret_key().expose());
    for offset in [-299, 299] {
        let c = client_with(&emu, creds(), skewed(offset));
        Catalog::new(c, ApiTimeZone::default())
            .check_instance(Service::Redis, REDIS, Some(REGION))
            .await
            .unwrap_or_else(|e| panic!("skew {offset}s must pass: {e}"));
    }
    for offset in [-330, 330] {
        let before = emu.state().total_requests();
        let c = client_with(&emu, creds(), skewed(offset));
        let err = Catalog::new(c, ApiTimeZone::default())
            .check_instance(Service::Redis, REDIS, Some(REGION))
            .await
            .expect_err("too far off");
        assert_eq!(err.code(), Some("AuthFailure.SignatureExpire"), "{err}");
        assert!(err.is_auth());
        assert!(
            err.to_string().contains("clock"),
            "the message says what to fix: {err}"
        );
        assert_eq!(
            emu.state().total_requests() - before,
            2,
            "re-signed once, then surfaced"
        );
    }
}

/// A clock that is 10 minutes behind on its first reading only, as after a
/// suspend before NTP catches up.
#[derive(Debug)]
struct StepClock {
    stepped: AtomicBool,
}

impl Clock for StepClock {
    fn now(&self) -> DateTime<Utc> {
        if self.stepped.swap(true, Ordering::SeqCst) {
            Utc::now()
        } else {
            Utc::now() - Span::minutes(10)
        }
    }
}

#[tokio::test]
async fn a_signature_expired_once_is_re_signed_with_a_fresh_timestamp() {
    let emu = emulator().await;
    add_redis_backups(&emu);
    let clock = Arc::new(StepClock {
        stepped: AtomicBool::new(false),
    });
    let c = client_with(
        &emu,
        keys(emu.secret_id(), emu.secret_key().expose()),
        clock,
    );
    Catalog::new(c, ApiTimeZone::default())
        .check_instance(Service::Redis, REDIS, Some(REGION))
        .await
        .expect("the re-signed request passes");
    assert_eq!(emu.state().request_count("DescribeInstances"), 2);
}

#[tokio::test]
async fn rate_limit_bursts_are_absorbed_by_backoff() {
    let emu = emulator().await;
    add_redis_backups(&emu);
    // The server allows 3 calls a second, far below the documented 20 the
    // client paces itself at: the excess comes back as RequestLimitExceeded.
    emu.state()
        .set_rate_limit(Service::Redis, "DescribeBackupUrl", Some(3));
    let catalog = Catalog::new(client(&emu), ApiTimeZone::default());
    let backups = finished_redis_backups(&catalog, 7).await;
    let burst: Vec<_> = backups.iter().take(8).collect();
    let results = futures::future::join_all(
        burst
            .iter()
            .map(|b| catalog.resolve(b, 12, Network::Public)),
    )
    .await;
    for result in &results {
        let files = result
            .as_ref()
            .expect("every resolve succeeds after backoff");
        assert_eq!(files.len(), 1);
    }
    assert!(
        emu.state().request_count("DescribeBackupUrl") > 8,
        "some calls were limited and retried"
    );
}

#[tokio::test]
async fn injected_server_faults_are_retried() {
    let emu = emulator().await;
    add_redis_backups(&emu);
    let state = emu.state();
    state.inject_fault("DescribeInstances", ApiFault::InternalError, 1);
    state.inject_fault("DescribeInstances", ApiFault::Gateway(502), 1);
    state.inject_fault("DescribeInstances", ApiFault::SystemError, 1);
    state.inject_fault("DescribeInstances", ApiFault::RateLimit, 1);
    let catalog = Catalog::new(client(&emu), ApiTimeZone::default());
    catalog
        .check_instance(Service::Redis, REDIS, Some(REGION))
        .await
        .expect("succeeds after four transient failures");
    assert_eq!(state.request_count("DescribeInstances"), 5);

    // A permission denial is not retried and counts as an auth failure.
    state.inject_fault(
        "DescribeInstances",
        ApiFault::Code {
            code: "UnauthorizedOperation.NoCAMAuthed".into(),
            message: "no permission".into(),
        },
        1,
    );
    let err = catalog
        .check_instance(Service::Redis, REDIS, Some(REGION))
        .await
        .expect_err("denied");
    assert!(err.is_auth());
    assert_eq!(state.request_count("DescribeInstances"), 6);
}

/// Log lines of the current thread, captured by a process-wide TRACE
/// subscriber (a process-wide one avoids tracing's per-callsite interest
/// cache racing with other tests' threads).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    thread_local! {
        static SINK: std::cell::RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { std::cell::RefCell::new(None) };
    }
    struct ThreadSink;
    impl Write for ThreadSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            SINK.with(|sink| {
                if let Some(sink) = sink.borrow().as_ref() {
                    sink.lock().expect("lock").extend_from_slice(buf);
                }
            });
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| ThreadSink)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("first and only global subscriber");
    });
    let buffer = Arc::new(Mutex::new(Vec::new()));
    SINK.with(|sink| *sink.borrow_mut() = Some(Arc::clone(&buffer)));
    buffer
}

#[tokio::test]
async fn trace_logs_hold_no_key_token_or_signature() {
    let logs = captured_logs();
    let clock = ManualClock::new();
    let emu = Emulator::start(EmulatorOptions::new().clock(Arc::new(clock.clone())))
        .await
        .expect("emulator");
    add_redis_backups(&emu);
    emu.metadata().set_lifetime(Span::seconds(600));
    let creds = CredentialProvider::cvm_role(
        &MetadataConfig {
            base_url: emu.metadata_url(),
            ..MetadataConfig::default()
        },
        Arc::new(clock.clone()),
    )
    .await
    .expect("metadata")
    .expect("role");
    let first = creds.credentials().await.expect("creds");
    let catalog = Catalog::new(
        client_with(&emu, creds.clone(), Arc::new(clock.clone())),
        ApiTimeZone::default(),
    );
    let backups = finished_redis_backups(&catalog, 7).await;
    emu.state()
        .inject_fault("DescribeBackupUrl", ApiFault::InternalError, 1);
    let files = catalog
        .resolve(&backups[0], 12, Network::Public)
        .await
        .expect("resolve");
    // Force a token refresh: the server forgets the current token.
    emu.state().revoke_credential(&first.secret_id);
    catalog
        .resolve(&backups[1], 12, Network::Public)
        .await
        .expect("resolve after refresh");
    let second = creds.credentials().await.expect("creds");
    assert_ne!(first.secret_id, second.secret_id, "refreshed");

    let text = String::from_utf8(logs.lock().expect("lock").clone()).expect("utf-8");
    assert!(text.contains("DescribeBackupUrl"), "{text}");
    assert!(text.contains("InternalError"), "{text}");
    assert!(text.contains("request_id="), "{text}");
    let url = percent_encoding::percent_decode_str(files[0].url.expose())
        .decode_utf8()
        .expect("utf-8")
        .into_owned();
    let signature = url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("q-signature="))
        .expect("the URL carries a signature");
    assert!(signature.len() >= 20, "{signature}");
    for secret in [
        first.secret_key.expose(),
        second.secret_key.expose(),
        first.token.as_ref().expect("token").expose(),
        second.token.as_ref().expect("token").expose(),
        emu.secret_key().expose(),
        signature,
    ] {
        assert!(
            !text.contains(secret),
            "a secret leaked into the logs:\n{text}"
        );
    }
    assert!(!text.contains("Signature="), "{text}");
}

/// What a stand-in server saw: one entry per request, with its headers.
type Seen = Arc<Mutex<Vec<axum::http::HeaderMap>>>;

/// A server on `127.0.0.1:0` that records every request and answers each
/// with `answer` (status and headers). Returns its base URL.
async fn recording_server(seen: Seen, status: u16, headers: Vec<(&'static str, String)>) -> String {
    let app = axum::Router::new().fallback(move |request_headers: axum::http::HeaderMap| {
        let (seen, headers) = (seen.clone(), headers.clone());
        async move {
            seen.lock().expect("lock").push(request_headers);
            let mut response = axum::http::Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response
                .body(axum::body::Body::from(
                    r#"{"Response":{"RequestId":"r-elsewhere","TotalCount":0,"InstanceSet":[]}}"#,
                ))
                .expect("response")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}/")
}

#[tokio::test]
async fn an_api_redirect_is_an_error_naming_the_endpoint_and_nothing_reaches_its_target() {
    for status in [302u16, 307, 308] {
        let elsewhere: Seen = Arc::default();
        let target = recording_server(elsewhere.clone(), 200, Vec::new()).await;
        let redirecting: Seen = Arc::default();
        let endpoint = recording_server(
            redirecting.clone(),
            status,
            vec![("location", format!("{target}?from=api"))],
        )
        .await;
        let creds = CredentialProvider::fixed(
            CredentialSource::Fixed {
                label: "temporary test keys".into(),
            },
            Credentials {
                secret_id: "AKIDredirecttest".into(),
                secret_key: tcbackup_signing::secret::Secret::new("redirect-test-key"),
                token: Some(tcbackup_signing::secret::Secret::new("redirect-test-token")),
                expires_at: None,
            },
        );
        let config = ClientConfig {
            endpoint: Some(endpoint.clone()),
            retry: retry(),
            ..ClientConfig::default()
        };
        let client = ApiClient::with_rng(
            config,
            creds,
            Arc::new(SystemClock),
            Box::new(StdRng::seed_from_u64(3)),
        )
        .expect("client");
        let err = client
            .call::<_, serde_json::Value>(
                Service::Redis,
                "DescribeInstances",
                Some(REGION),
                &serde_json::json!({ "InstanceId": REDIS }),
            )
            .await
            .expect_err("a redirect must not be followed");
        assert!(
            matches!(err, ApiError::Redirect { status: s, .. } if s == status),
            "{status}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "the api endpoint {endpoint} answered with a redirect (http status {status}) to {target}?from=api"
            )),
            "{message}"
        );
        assert!(message.contains("never follow redirects"), "{message}");
        assert!(!err.is_retryable(), "{message}");
        assert_eq!(
            redirecting.lock().expect("lock").len(),
            1,
            "{status}: sent once, not retried"
        );
        let leaked = elsewhere.lock().expect("lock");
        assert!(
            leaked.is_empty(),
            "{status}: the redirect target received {} request(s), token header present: {:?}",
            leaked.len(),
            leaked
                .iter()
                .map(|h| h.contains_key("x-tc-token"))
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn an_endpoint_overrides_the_site_and_a_financial_regions_host() {
    use tcbackup_core::cloud::Site;
    let emu = emulator().await;
    let config = ClientConfig {
        endpoint: Some(emu.endpoint()),
        site: Site::Intl,
        retry: retry(),
        ..ClientConfig::default()
    };
    let client = ApiClient::with_rng(
        config,
        keys(emu.secret_id(), emu.secret_key().expose()),
        Arc::new(SystemClock),
        Box::new(StdRng::seed_from_u64(9)),
    )
    .expect("client");
    for region in ["ap-guangzhou", "ap-shanghai-fsi"] {
        assert_eq!(
            client.endpoint(Service::Redis, Some(region)),
            format!("{}/", emu.endpoint())
        );
        // Signed for, and sent to, the emulator's address: the emulator
        // answers every region there, as it would through a proxy.
        let answer: serde_json::Value = client
            .call(
                Service::Redis,
                "DescribeInstances",
                Some(region),
                &serde_json::json!({}),
            )
            .await
            .unwrap_or_else(|e| panic!("{region}: {e}"));
        assert_eq!(answer["TotalCount"], 0, "{region}: {answer}");
    }
}
