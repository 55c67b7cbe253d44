//! Unit tests of the credential chain and the CVM role provider.

use std::sync::atomic::{AtomicI64, Ordering};

use super::*;
use crate::cloud::testutil::FakeMetadata;
use tcbackup_signing::clock::ManualClock;

fn no_metadata() -> MetadataConfig {
    MetadataConfig {
        enabled: false,
        ..MetadataConfig::default()
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new())
}

async fn chain(config: &ChainConfig) -> Result<CredentialProvider, CredentialsError> {
    CredentialProvider::from_chain(config, clock()).await
}

fn env_pair(id: &str, key: &str) -> CredentialEnv {
    CredentialEnv {
        secret_id: Some(id.into()),
        secret_key: Some(Secret::new(key)),
        ..CredentialEnv::default()
    }
}

/// A directory with systemd credential files and a profile file.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).expect("mkdir");
        std::fs::write(creds.join("secret_id"), "AKIDsystemd\n").expect("write");
        std::fs::write(creds.join("secret_key"), "  key-systemd \n").expect("write");
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".tencentcloud")).expect("mkdir");
        std::fs::write(
            home.join(".tencentcloud/credentials"),
            "[default]\nsecret_id = AKIDprofile\nsecret_key = key-profile\n",
        )
        .expect("write");
        Self { dir }
    }

    fn creds_dir(&self) -> PathBuf {
        self.dir.path().join("creds")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
}

#[tokio::test]
async fn chain_order_first_hit_wins() {
    let fx = Fixture::new();
    let meta = FakeMetadata::start(Some("role"), || Utc::now().timestamp() + 3600).await;
    let mut config = ChainConfig {
        explicit: ConfigCredentials {
            secret_id: Some("AKIDconfig".into()),
            secret_key: Some(Secret::new("key-config")),
            token: None,
        },
        env: CredentialEnv {
            credentials_directory: Some(fx.creds_dir()),
            home: Some(fx.home()),
            ..env_pair("AKIDenv", "key-env")
        },
        metadata: MetadataConfig {
            base_url: meta.base_url.clone(),
            ..MetadataConfig::default()
        },
    };
    let expect = |p: &CredentialProvider, id: &str| {
        let p = p.clone();
        let id = id.to_string();
        async move {
            let c = p.credentials().await.expect("creds");
            assert_eq!(c.secret_id, id);
            p
        }
    };

    let p = expect(&chain(&config).await.expect("config"), "AKIDconfig").await;
    assert_eq!(p.source(), &CredentialSource::Config);

    config.explicit = ConfigCredentials::default();
    let p = expect(&chain(&config).await.expect("systemd"), "AKIDsystemd").await;
    assert!(matches!(p.source(), CredentialSource::Systemd { .. }));
    assert_eq!(
        p.credentials().await.expect("c").secret_key.expose(),
        "key-systemd",
        "trimmed"
    );

    config.env.credentials_directory = None;
    let p = expect(&chain(&config).await.expect("env"), "AKIDenv").await;
    assert_eq!(p.source(), &CredentialSource::Environment);

    config.env.secret_id = None;
    config.env.secret_key = None;
    let p = expect(&chain(&config).await.expect("profile"), "AKIDprofile").await;
    assert_eq!(
        p.source(),
        &CredentialSource::Profile {
            path: fx.home().join(".tencentcloud/credentials")
        }
    );

    config.env.home = None;
    let p = expect(&chain(&config).await.expect("role"), "tmp-id-1").await;
    assert!(matches!(p.source(), CredentialSource::CvmRole { role, .. } if role == "role"));
    assert!(p.is_refreshable());
    let c = p.credentials().await.expect("creds");
    assert_eq!(c.token.as_ref().map(Secret::expose), Some("tmp-token-1"));
    assert!(c.expires_at.is_some());

    config.metadata.enabled = false;
    let err = chain(&config).await.expect_err("nothing left");
    let text = err.to_string();
    assert!(text.contains("TENCENTCLOUD_SECRET_ID"), "{text}");
    assert!(text.contains("[credentials]"), "{text}");
    assert!(
        text.contains("tried: config, environment, profile file"),
        "{text}"
    );
}

#[tokio::test]
async fn half_or_empty_values_are_errors_naming_the_fix() {
    let cases: Vec<(ChainConfig, &str)> = vec![
        (
            ChainConfig {
                env: CredentialEnv {
                    secret_id: Some("AKID".into()),
                    ..CredentialEnv::default()
                },
                metadata: no_metadata(),
                ..ChainConfig::default()
            },
            "TENCENTCLOUD_SECRET_KEY",
        ),
        (
            ChainConfig {
                env: env_pair("", "key"),
                metadata: no_metadata(),
                ..ChainConfig::default()
            },
            "TENCENTCLOUD_SECRET_ID is set but empty",
        ),
        (
            ChainConfig {
                env: env_pair("AKID", "  "),
                metadata: no_metadata(),
                ..ChainConfig::default()
            },
            "TENCENTCLOUD_SECRET_KEY is set but empty",
        ),
        (
            ChainConfig {
                env: CredentialEnv {
                    token: Some(Secret::new("")),
                    ..env_pair("AKID", "key")
                },
                metadata: no_metadata(),
                ..ChainConfig::default()
            },
            "TENCENTCLOUD_TOKEN is set but empty",
        ),
        (
            ChainConfig {
                env: CredentialEnv {
                    token: Some(Secret::new("tok")),
                    ..CredentialEnv::default()
                },
                metadata: no_metadata(),
                ..ChainConfig::default()
            },
            "TENCENTCLOUD_TOKEN",
        ),
        (
            ChainConfig {
                explicit: ConfigCredentials {
                    secret_id: Some("AKID".into()),
                    ..ConfigCredentials::default()
                },
                metadata: no_metadata(),
                ..ChainConfig::default()
            },
            "[credentials] in the config file gives secret_id but not secret_key",
        ),
    ];
    for (config, expected) in cases {
        let err = chain(&config).await.expect_err(expected);
        let text = err.to_string();
        assert!(text.contains(expected), "{expected:?} not in {text:?}");
        assert!(!text.contains("key\""), "{text}");
    }
}

#[tokio::test]
async fn environment_with_token_gives_temporary_credentials() {
    let config = ChainConfig {
        env: CredentialEnv {
            token: Some(Secret::new("sess")),
            ..env_pair("AKIDtmpEXAMPLE", "key")
        },
        metadata: no_metadata(),
        ..ChainConfig::default()
    };
    let p = chain(&config).await.expect("env");
    let c = p.credentials().await.expect("c");
    assert_eq!(c.token.as_ref().map(Secret::expose), Some("sess"));
    assert!(!p.is_refreshable());
    let d = p.describe();
    assert!(d.contains("environment") && d.contains("AKID…"), "{d}");
    assert!(d.contains("session token"), "{d}");
    assert!(!d.contains("key-"), "{d}");
}

#[tokio::test]
async fn systemd_directory_with_one_file_is_an_error_and_without_files_is_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ChainConfig {
        env: CredentialEnv {
            credentials_directory: Some(dir.path().to_path_buf()),
            ..env_pair("AKIDenv", "key-env")
        },
        metadata: no_metadata(),
        ..ChainConfig::default()
    };
    // No files: systemd passes other credentials; fall through to env.
    let p = chain(&config).await.expect("env");
    assert_eq!(p.source(), &CredentialSource::Environment);
    std::fs::write(dir.path().join("secret_id"), "AKID").expect("write");
    let err = chain(&config).await.expect_err("half");
    assert!(err.to_string().contains("LoadCredential"), "{err}");
    std::fs::write(dir.path().join("secret_key"), "\n").expect("write");
    let err = chain(&config).await.expect_err("empty");
    assert!(err.to_string().contains("set but empty"), "{err}");
    // Both empty: the units' SetCredential= defaults, used when the
    // LoadCredential= files do not exist; the chain goes on.
    std::fs::write(dir.path().join("secret_id"), "").expect("write");
    let p = chain(&config).await.expect("env after empty defaults");
    assert_eq!(p.source(), &CredentialSource::Environment);
}

#[test]
fn profile_file_parsing() {
    let path = Path::new("/x/credentials");
    let c = parse_profile(
        "# comment\n; other comment\n[other]\nsecret_id = nope\nsecret_key = nope\n\n[default]\n  secret_id=AKIDp  \nsecret_key =  k=with=equals \nrole_arn = ignored\n",
        path,
    )
    .expect("parse");
    assert_eq!(c.secret_id, "AKIDp");
    assert_eq!(c.secret_key.expose(), "k=with=equals");
    assert_eq!(c.token, None);

    for (text, expected) in [
        ("[default]\nsecret_id = a\n", "no secret_key"),
        ("[default]\nsecret_key = supersecret\n", "no secret_id"),
        (
            "[other]\nsecret_id = a\nsecret_key = b\n",
            "no secret_id/secret_key",
        ),
        ("[default\nsecret_id = a\n", "line 1: unclosed"),
        (
            "[default]\nsecret_key supersecret\n",
            "line 2: expected name = value",
        ),
        (
            "[default]\nsecret_id =\nsecret_key = b\n",
            "secret_id is empty",
        ),
    ] {
        let err = parse_profile(text, path).expect_err(text);
        let msg = err.to_string();
        assert!(msg.contains(expected), "{expected:?} not in {msg:?}");
        assert!(msg.contains("/x/credentials"), "{msg}");
        assert!(!msg.contains("supersecret"), "{msg}");
    }
}

#[tokio::test]
async fn credentials_file_variable_overrides_home_and_must_exist() {
    let fx = Fixture::new();
    let custom = fx.dir.path().join("custom-credentials");
    std::fs::write(
        &custom,
        "[default]\nsecret_id = AKIDcustom\nsecret_key = k\n",
    )
    .expect("write");
    let mut config = ChainConfig {
        env: CredentialEnv {
            home: Some(fx.home()),
            credentials_file: Some(custom.clone()),
            ..CredentialEnv::default()
        },
        metadata: no_metadata(),
        ..ChainConfig::default()
    };
    let p = chain(&config).await.expect("custom");
    assert_eq!(p.credentials().await.expect("c").secret_id, "AKIDcustom");
    config.env.credentials_file = Some(fx.dir.path().join("missing"));
    let err = chain(&config)
        .await
        .expect_err("missing file named explicitly");
    assert!(err.to_string().contains("missing"), "{err}");
    // Without the variable a missing ~/.tencentcloud/credentials is skipped.
    config.env.credentials_file = None;
    config.env.home = Some(fx.dir.path().join("nohome"));
    assert!(matches!(
        chain(&config).await.expect_err("none"),
        CredentialsError::NotFound { .. }
    ));
}

#[tokio::test]
async fn metadata_without_role_or_unreachable_means_not_found() {
    let meta = FakeMetadata::start(None, || 0).await;
    let config = ChainConfig {
        metadata: MetadataConfig {
            base_url: meta.base_url.clone(),
            ..MetadataConfig::default()
        },
        ..ChainConfig::default()
    };
    let err = chain(&config).await.expect_err("404 = no role");
    assert!(matches!(err, CredentialsError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("cvm role"), "{err}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let config = ChainConfig {
        metadata: MetadataConfig {
            base_url: format!("http://{addr}/latest/meta-data/"),
            ..MetadataConfig::default()
        },
        ..ChainConfig::default()
    };
    let started = std::time::Instant::now();
    let err = chain(&config).await.expect_err("no metadata service");
    assert!(matches!(err, CredentialsError::NotFound { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "fails fast");
}

#[tokio::test]
async fn role_credentials_are_cached_then_refreshed_near_expiry() {
    let clock = ManualClock::fixed(DateTime::from_timestamp(1_800_000_000, 0).expect("t"));
    // Each document expires 400 s after the clock's time when served.
    let expiry = Arc::new(AtomicI64::new(1_800_000_400));
    let served = Arc::clone(&expiry);
    let meta = FakeMetadata::start(Some("role"), move || served.load(Ordering::SeqCst)).await;
    let p = meta.role_provider(Arc::new(clock.clone())).await;
    assert_eq!(meta.fetches(), 1);
    // 400 s left: still more than the 300 s margin, cached.
    assert_eq!(p.credentials().await.expect("c").secret_id, "tmp-id-1");
    assert_eq!(meta.fetches(), 1);
    // 299 s left: refreshed.
    clock.advance(chrono::Duration::seconds(101));
    expiry.store(1_800_000_101 + 3600, Ordering::SeqCst);
    let c = p.credentials().await.expect("c");
    assert_eq!(c.secret_id, "tmp-id-2");
    assert_eq!(c.secret_key.expose(), "tmp-key-2");
    assert_eq!(meta.fetches(), 2);
    // Fresh for an hour now.
    clock.advance(chrono::Duration::seconds(60));
    assert_eq!(p.credentials().await.expect("c").secret_id, "tmp-id-2");
    assert_eq!(meta.fetches(), 2);
    // A forced refresh after TokenFailure fetches anew once; a second caller
    // holding the same stale set gets the new one without another fetch.
    let fresh = p.refresh(&c).await.expect("refresh").expect("refreshable");
    assert_eq!(fresh.secret_id, "tmp-id-3");
    let again = p.refresh(&c).await.expect("refresh").expect("refreshable");
    assert_eq!(again.secret_id, "tmp-id-3");
    assert_eq!(meta.fetches(), 3);
    let d = p.describe();
    assert!(d.contains("cvm role role"), "{d}");
    assert!(!d.contains("tmp-key"), "{d}");
}

#[test]
fn masking_and_debug_never_show_keys() {
    assert_eq!(mask_id("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"), "AKID…MPLE");
    assert_eq!(mask_id("short"), "…");
    let c = Credentials {
        token: Some(Secret::new("the-token")),
        ..Credentials::permanent("AKIDx", "the-key")
    };
    let text = format!("{c:?}");
    assert!(
        !text.contains("the-key") && !text.contains("the-token"),
        "{text}"
    );
}

#[test]
fn a_half_pair_or_a_lone_token_names_what_is_missing() {
    let names = |token| PairNames {
        origin: "the environment".into(),
        secret_id: "ID",
        secret_key: "KEY",
        token,
        fix: "fix it",
    };
    let lone_token = Some(("TOKEN", "ID and KEY"));
    let message =
        |r: Result<Option<(&str, &str)>, CredentialsError>| r.expect_err("incomplete").to_string();
    assert_eq!(
        message(names(lone_token).pair(Some("a"), None, false)),
        "the environment gives ID but not KEY: fix it"
    );
    assert_eq!(
        message(names(lone_token).pair(None, Some("b"), true)),
        "the environment gives KEY but not ID: fix it"
    );
    assert_eq!(
        message(names(lone_token).pair(None, None, true)),
        "the environment gives TOKEN but not ID and KEY: fix it"
    );
    assert!(matches!(
        names(None).pair::<&str, &str>(None, None, true),
        Ok(None)
    ));
    assert!(matches!(
        names(lone_token).pair(Some("a"), Some("b"), true),
        Ok(Some(("a", "b")))
    ));
}
