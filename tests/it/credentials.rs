//! Every step of the credential chain, end to end: the chain picks a
//! source, the client signs with what it found, and the emulator accepts
//! (or refuses) it. Includes a CVM role whose temporary keys expire while
//! the test runs, so the client must refresh and keep working.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Span;
use rand::rngs::StdRng;
use rand::SeedableRng;

use tcbackup_core::cloud::credentials::{
    ChainConfig, ConfigCredentials, CredentialEnv, CredentialSource, MetadataConfig,
};
use tcbackup_core::cloud::retry::RetryConfig;
use tcbackup_core::cloud::{
    ApiClient, ApiError, ApiTimeZone, Catalog, ClientConfig, CredentialProvider, CredentialsError,
};
use tcbackup_core::model::Service;
use tcbackup_emulator::{Emulator, EmulatorOptions, RedisInstance};
use tcbackup_signing::clock::{Clock, ManualClock, SystemClock};
use tcbackup_signing::secret::Secret;

const REGION: &str = "ap-guangzhou";
const REDIS: &str = "crs-credtest";

async fn emulator(clock: Arc<dyn Clock>) -> Emulator {
    let emu = Emulator::start(EmulatorOptions::new().clock(clock))
        .await
        .expect("emulator");
    let now = emu.clock().now();
    emu.state()
        .add_redis_instance(RedisInstance::new(REDIS, REGION, now))
        .expect("instance");
    emu
}

fn catalog(emu: &Emulator, creds: CredentialProvider, clock: Arc<dyn Clock>) -> Catalog {
    let config = ClientConfig {
        endpoint: Some(emu.endpoint()),
        retry: RetryConfig {
            max_attempts: 3,
            base: Duration::from_millis(5),
            cap: Duration::from_millis(20),
            slow_base: Duration::from_millis(5),
        },
        ..ClientConfig::default()
    };
    let client = ApiClient::with_rng(config, creds, clock, Box::new(StdRng::seed_from_u64(5)))
        .expect("client");
    Catalog::new(client, ApiTimeZone::default())
}

/// Only the metadata service of `emu`, or none at all.
fn metadata(emu: Option<&Emulator>) -> MetadataConfig {
    match emu {
        Some(emu) => MetadataConfig {
            base_url: emu.metadata_url(),
            ..MetadataConfig::default()
        },
        None => MetadataConfig {
            enabled: false,
            ..MetadataConfig::default()
        },
    }
}

async fn works(emu: &Emulator, creds: CredentialProvider) -> Result<(), ApiError> {
    catalog(emu, creds, Arc::new(SystemClock))
        .check_instance(Service::Redis, REDIS, Some(REGION))
        .await
        .map(drop)
}

async fn chain(config: &ChainConfig) -> Result<CredentialProvider, CredentialsError> {
    CredentialProvider::from_chain(config, Arc::new(SystemClock)).await
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[tokio::test]
async fn config_values_come_first_and_work() {
    let emu = emulator(Arc::new(SystemClock)).await;
    let config = ChainConfig {
        explicit: ConfigCredentials {
            secret_id: Some(emu.secret_id().to_string()),
            secret_key: Some(emu.secret_key().clone()),
            token: None,
        },
        // A wrong pair further down the chain is never looked at.
        env: CredentialEnv {
            secret_id: Some("AKIDwrongEXAMPLE".into()),
            secret_key: Some(Secret::new("wrong")),
            ..CredentialEnv::default()
        },
        metadata: metadata(Some(&emu)),
    };
    let creds = chain(&config).await.expect("chain");
    assert_eq!(creds.source(), &CredentialSource::Config);
    works(&emu, creds).await.expect("accepted");
    assert_eq!(
        emu.metadata().issued(),
        0,
        "the metadata service was not asked"
    );
}

#[tokio::test]
async fn systemd_credential_files_are_trimmed_and_work() {
    let emu = emulator(Arc::new(SystemClock)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("secret_id"),
        &format!("{}\n", emu.secret_id()),
    );
    write(
        &dir.path().join("secret_key"),
        &format!("{}\n", emu.secret_key().expose()),
    );
    let config = ChainConfig {
        env: CredentialEnv {
            credentials_directory: Some(dir.path().to_path_buf()),
            ..CredentialEnv::default()
        },
        metadata: metadata(None),
        ..ChainConfig::default()
    };
    let creds = chain(&config).await.expect("chain");
    assert!(matches!(creds.source(), CredentialSource::Systemd { .. }));
    works(&emu, creds).await.expect("accepted");
}

#[tokio::test]
async fn environment_keys_work_and_a_wrong_key_is_signature_failure() {
    let emu = emulator(Arc::new(SystemClock)).await;
    let env = |key: &str| ChainConfig {
        env: CredentialEnv {
            secret_id: Some(emu.secret_id().to_string()),
            secret_key: Some(Secret::new(key)),
            ..CredentialEnv::default()
        },
        metadata: metadata(None),
        ..ChainConfig::default()
    };
    let creds = chain(&env(emu.secret_key().expose())).await.expect("chain");
    assert_eq!(creds.source(), &CredentialSource::Environment);
    works(&emu, creds).await.expect("accepted");

    let creds = chain(&env("not-the-key")).await.expect("chain");
    let err = works(&emu, creds).await.expect_err("refused");
    assert!(err.is_auth());
    assert_eq!(err.code(), Some("AuthFailure.SignatureFailure"));
}

#[tokio::test]
async fn environment_token_is_sent_and_a_stale_one_is_refused() {
    let emu = emulator(Arc::new(SystemClock)).await;
    let expires = emu.clock().now() + Span::hours(1);
    emu.state().add_temporary_credential(
        "AKIDsessionEXAMPLE",
        "session-key",
        "session-token",
        expires,
    );
    let with_token = |token: &str| ChainConfig {
        env: CredentialEnv {
            secret_id: Some("AKIDsessionEXAMPLE".into()),
            secret_key: Some(Secret::new("session-key")),
            token: Some(Secret::new(token)),
            ..CredentialEnv::default()
        },
        metadata: metadata(None),
        ..ChainConfig::default()
    };
    works(
        &emu,
        chain(&with_token("session-token")).await.expect("chain"),
    )
    .await
    .expect("accepted with the token");
    let before = emu.state().total_requests();
    let err = works(&emu, chain(&with_token("old-token")).await.expect("chain"))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Some("AuthFailure.TokenFailure"));
    assert!(err.is_auth());
    assert_eq!(
        emu.state().total_requests() - before,
        1,
        "a token from the environment cannot be refreshed: no retry"
    );
}

#[tokio::test]
async fn the_profile_file_in_home_or_named_by_the_variable_works() {
    let emu = emulator(Arc::new(SystemClock)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    write(
        &home.join(".tencentcloud/credentials"),
        &format!(
            "# written by tccli\n[default]\nsecret_id = {}\nsecret_key = {}\n",
            emu.secret_id(),
            emu.secret_key().expose()
        ),
    );
    let mut config = ChainConfig {
        env: CredentialEnv {
            home: Some(home.clone()),
            ..CredentialEnv::default()
        },
        metadata: metadata(None),
        ..ChainConfig::default()
    };
    let creds = chain(&config).await.expect("chain");
    assert_eq!(
        creds.source(),
        &CredentialSource::Profile {
            path: home.join(".tencentcloud/credentials")
        }
    );
    works(&emu, creds).await.expect("accepted");

    let custom = dir.path().join("elsewhere.ini");
    write(
        &custom,
        "[default]\nsecret_id = AKIDwrongEXAMPLE\nsecret_key = wrong\n",
    );
    config.env.credentials_file = Some(custom.clone());
    let creds = chain(&config).await.expect("chain");
    assert_eq!(creds.source(), &CredentialSource::Profile { path: custom });
    let err = works(&emu, creds)
        .await
        .expect_err("the variable's file wins");
    assert_eq!(err.code(), Some("AuthFailure.SecretIdNotFound"));
}

#[tokio::test]
async fn no_source_at_all_names_every_fix() {
    let emu = emulator(Arc::new(SystemClock)).await;
    emu.metadata().set_role(None);
    let config = ChainConfig {
        metadata: metadata(Some(&emu)),
        ..ChainConfig::default()
    };
    let err = chain(&config).await.expect_err("nothing");
    assert!(matches!(err, CredentialsError::NotFound { .. }), "{err:?}");
    let text = err.to_string();
    for fix in [
        "[credentials]",
        "TENCENTCLOUD_SECRET_ID",
        "~/.tencentcloud/credentials",
        "cvm",
    ] {
        assert!(text.contains(fix), "{fix:?} missing from {text}");
    }
}

#[tokio::test]
async fn cvm_role_keys_that_expire_mid_test_are_refreshed_and_keep_working() {
    // One clock for the emulator (token expiry, signature window) and the
    // client (refresh decision), moved by the test.
    let clock = ManualClock::new();
    let emu = emulator(Arc::new(clock.clone())).await;
    emu.metadata().set_lifetime(Span::seconds(600));
    let config = ChainConfig {
        metadata: metadata(Some(&emu)),
        ..ChainConfig::default()
    };
    let creds = CredentialProvider::from_chain(&config, Arc::new(clock.clone()))
        .await
        .expect("chain");
    assert!(matches!(creds.source(), CredentialSource::CvmRole { .. }));
    assert!(creds.is_refreshable());
    assert!(!creds.describe().contains(
        &creds
            .credentials()
            .await
            .expect("c")
            .secret_key
            .expose()
            .to_string()
    ));
    let catalog = catalog(&emu, creds.clone(), Arc::new(clock.clone()));
    let check = || catalog.check_instance(Service::Redis, REDIS, Some(REGION));

    check().await.expect("first keys work");
    assert_eq!(emu.metadata().issued(), 1);

    // 299 s left: refreshed before use.
    clock.advance(Span::seconds(301));
    check().await.expect("refreshed keys work");
    assert_eq!(emu.metadata().issued(), 2);

    // Still fresh: no new fetch.
    clock.advance(Span::seconds(60));
    check().await.expect("cached keys work");
    assert_eq!(emu.metadata().issued(), 2);

    // Well past the second set's expiry: refreshed again, still working.
    clock.advance(Span::seconds(1200));
    check().await.expect("third keys work");
    assert_eq!(emu.metadata().issued(), 3);
}

#[tokio::test]
async fn a_token_the_server_rejects_early_is_refreshed_on_demand() {
    // The client refreshes only at expiry (no margin) and its clock runs
    // 100 s behind the emulator's: the server sees the token expire first
    // and answers TokenFailure; the client must fetch new keys and retry.
    let server_clock = ManualClock::new();
    let client_clock = ManualClock::new();
    client_clock.advance(Span::seconds(-100));
    let emu = emulator(Arc::new(server_clock.clone())).await;
    emu.metadata().set_lifetime(Span::seconds(600));
    let creds = CredentialProvider::cvm_role(
        &MetadataConfig {
            base_url: emu.metadata_url(),
            refresh_margin: Duration::ZERO,
            ..MetadataConfig::default()
        },
        Arc::new(client_clock.clone()),
    )
    .await
    .expect("metadata")
    .expect("role");
    let catalog = catalog(&emu, creds, Arc::new(client_clock.clone()));
    catalog
        .check_instance(Service::Redis, REDIS, Some(REGION))
        .await
        .expect("first keys");
    server_clock.advance(Span::seconds(650));
    client_clock.advance(Span::seconds(650));
    let before = emu.state().total_requests();
    catalog
        .check_instance(Service::Redis, REDIS, Some(REGION))
        .await
        .expect("works after an on-demand refresh");
    assert_eq!(emu.metadata().issued(), 2);
    assert_eq!(
        emu.state().total_requests() - before,
        2,
        "TokenFailure, then success"
    );
}
