//! What every mode needs before it can work, built in one place: the
//! validated config (with its warnings logged), the credential chain, the
//! API client, store and downloader of a sync cycle, signal handling, the
//! wall clock and the progress display. Used by `main`, the commands, the
//! daemon and the demo; it imports none of them.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::shutdown::Shutdown;
use tcbackup_core::cloud::catalog::Catalog;
use tcbackup_core::cloud::client::{ApiClient, ClientConfig};
use tcbackup_core::cloud::credentials::{
    ChainConfig, ConfigCredentials, CredentialEnv, CredentialProvider, MetadataConfig,
};
use tcbackup_core::config::{Config, ConfigError};
use tcbackup_core::exit::Exit;
use tcbackup_core::progress::{Progress, ProgressMode};
use tcbackup_core::store::Store;
use tcbackup_core::sync::SyncContext;
use tcbackup_core::transfer::{Downloader, TransferConfig};
use tcbackup_signing::clock::{Clock, SystemClock};
use tcbackup_signing::times::ApiTimeZone;

/// Why the program could not get to work.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No usable credentials.
    #[error(transparent)]
    Credentials(#[from] tcbackup_core::cloud::credentials::CredentialsError),
    /// The API client could not be built.
    #[error(transparent)]
    Api(#[from] tcbackup_core::cloud::error::ApiError),
    /// The transfer engine could not be built.
    #[error(transparent)]
    Transfer(#[from] tcbackup_core::transfer::TransferError),
}

impl SetupError {
    /// How a run that failed this way ends.
    pub fn exit(&self) -> Exit {
        match self {
            SetupError::Api(e) if e.is_auth() => Exit::Auth,
            _ => Exit::Config,
        }
    }
}

/// Log the config's warnings and, when it holds a secret and is readable by
/// group or others, the warning that names the file and the `chmod 600`;
/// when `download_dir` is open to others, the warning that names it and
/// the `chmod` that closes it. Called at every load: startup and each
/// daemon reload.
pub fn log_config_warnings(config: &Config) {
    for warning in &config.warnings {
        tracing::warn!("{}", warning.located(&config.source));
    }
    if let Some(exposed) = config.exposed_secret() {
        tracing::warn!("{exposed}");
    }
    if let Some(exposed) = config.exposed_download_dir() {
        tracing::warn!("{exposed}");
    }
}

/// Load and validate the config, printing every problem; a configuration
/// error on failure.
pub fn load_config(path: &Path) -> Result<Config, Exit> {
    match Config::load(path) {
        Ok(config) => {
            log_config_warnings(&config);
            Ok(config)
        }
        Err(e) => {
            eprintln!("tcbackup: invalid configuration:\n{e}");
            if matches!(e, ConfigError::Read { .. }) {
                eprintln!(
                    "hint: pass --config PATH, or create {} (see config/tcbackup.example.toml)",
                    path.display()
                );
            }
            Err(Exit::Config)
        }
    }
}

/// The credential chain's inputs for `config`.
pub fn chain_config(config: &Config) -> ChainConfig {
    let explicit = match &config.credentials {
        Some(c) => ConfigCredentials {
            secret_id: Some(c.secret_id.clone()),
            secret_key: Some(c.secret_key.clone()),
            token: c.token.clone(),
        },
        None => ConfigCredentials::default(),
    };
    let mut metadata = MetadataConfig::default();
    if let Some(url) = &config.api.metadata_url {
        metadata.base_url = url.to_string();
    }
    ChainConfig {
        explicit,
        env: CredentialEnv::from_process(),
        metadata,
    }
}

/// Build everything a sync cycle needs. Touches nothing on disk.
pub async fn build_context(
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    progress: Progress,
) -> Result<SyncContext, SetupError> {
    let credentials = CredentialProvider::from_chain(&chain_config(&config), clock.clone()).await?;
    let client_config = ClientConfig {
        endpoint: config.api.endpoint.as_ref().map(|u| u.to_string()),
        site: config.api.site,
        ..ClientConfig::default()
    };
    let client = ApiClient::new(client_config, credentials, clock.clone())?;
    let catalog = Catalog::new(client, ApiTimeZone::from_offset(config.time_zone));
    let t = &config.transfer;
    let transfer = TransferConfig {
        segments: t.segments.get(),
        segment_threshold: t.segment_threshold,
        max_files: t.concurrency.get(),
        max_connections: t.concurrency.get() * t.segments.get(),
        free_space_margin: t.free_space_margin,
        idle_timeout: t.idle_timeout,
        allow_http: config.api.allow_http_downloads,
        bandwidth_limit: t.bandwidth_limit.and_then(std::num::NonZeroU64::new),
        modes: config.file_modes(),
        ..TransferConfig::default()
    };
    let downloader = Downloader::new(transfer, clock.clone())?;
    let store =
        Store::open(config.download_dir.clone(), clock.clone()).with_modes(config.file_modes());
    Ok(SyncContext {
        config,
        catalog,
        store: Arc::new(store),
        downloader: Arc::new(downloader),
        clock,
        progress,
    })
}

/// The wall clock, shared.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Install SIGINT/SIGTERM handling.
pub fn shutdown_on_signals() -> anyhow::Result<Shutdown> {
    let shutdown = Shutdown::new();
    shutdown
        .install_signal_handlers()
        .context("cannot install signal handlers")?;
    Ok(shutdown)
}

/// Pick bars or log lines for `--now` and the demo.
pub fn progress_for_terminal() -> Progress {
    Progress::new(ProgressMode::detect())
}
