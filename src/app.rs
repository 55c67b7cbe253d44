//! The edge of the program: loads the configuration, sets up logging,
//! builds the client, store and downloader, runs the chosen mode and maps
//! the outcome to an exit code. The only module that uses `anyhow`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use crate::cli::{Cli, Command};
use tcbackup_signing::clock::{Clock, SystemClock};
use tcbackup_core::cloud::catalog::Catalog;
use tcbackup_core::cloud::client::{ApiClient, ClientConfig};
use tcbackup_core::cloud::credentials::{
    ChainConfig, ConfigCredentials, CredentialEnv, CredentialProvider, MetadataConfig,
};
use tcbackup_signing::times::ApiTimeZone;
use tcbackup_core::config::{Config, ConfigError};
use tcbackup_core::progress::{Progress, ProgressMode};
use crate::shutdown::Shutdown;
use tcbackup_core::store::Store;
use tcbackup_core::sync::SyncContext;
use tcbackup_core::transfer::{Downloader, TransferConfig};

/// Exit codes of the contract (design.md §2).
pub mod exit {
    /// Every due backup is published and verified, or nothing was new.
    pub const OK: u8 = 0;
    /// At least one backup failed.
    pub const FAILED: u8 = 1;
    /// Configuration or usage error; nothing was touched.
    pub const CONFIG: u8 = 2;
    /// Authentication or permission failure against the API.
    pub const AUTH: u8 = 3;
    /// Interrupted by SIGINT or SIGTERM.
    pub const INTERRUPTED: u8 = 130;
}

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
    /// The exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            SetupError::Api(e) if e.is_auth() => exit::AUTH,
            _ => exit::CONFIG,
        }
    }
}

/// Run the program for `cli`; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    crate::logging::init(cli.verbose, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tcbackup: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    ExitCode::from(code)
}

async fn dispatch(cli: Cli) -> u8 {
    match cli.command {
        Some(Command::Demo { dir }) => report(crate::demo::run(&dir).await),
        Some(Command::Emulator { listen }) => {
            let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let id = env("TENCENTCLOUD_SECRET_ID");
            let key = env("TENCENTCLOUD_SECRET_KEY");
            match tcbackup_emulator::run_standalone(listen, id, key).await {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("tcbackup: emulator: {e}");
                    exit::FAILED
                }
            }
        }
        command => {
            let config = match load_config(&cli.config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            match command {
                None if cli.now => crate::commands::now(config).await,
                None => crate::daemon::run(&cli.config, config).await,
                Some(Command::CheckConfig) => crate::commands::check_config(config).await,
                Some(Command::List { json, local }) => {
                    crate::commands::list(config, json, local).await
                }
                Some(Command::Verify) => crate::commands::verify(config).await,
                Some(Command::Prune { dry_run }) => crate::commands::prune(config, dry_run).await,
                Some(Command::Demo { .. } | Command::Emulator { .. }) => exit::CONFIG,
            }
        }
    }
}

fn report(result: anyhow::Result<u8>) -> u8 {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tcbackup: {e:#}");
            exit::FAILED
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

/// Load and validate the config, printing every problem; exit code 2 on failure.
pub fn load_config(path: &Path) -> Result<Config, u8> {
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
            Err(exit::CONFIG)
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
