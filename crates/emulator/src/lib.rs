//! The built-in emulator of Tencent Cloud: the API 3.0 services (Redis
//! 2018-04-12, PostgreSQL 2017-03-12), COS and the CVM metadata service
//! (`reference/tencentcloud-api.md` §10), all on one local address, for
//! tests, `tcbackup demo` and `tcbackup emulator`.
//!
//! Routing on that address: `/` is the API ([`api`]), `/latest/meta-data/…`
//! the metadata service ([`metadata`]), every other path a COS object
//! ([`cos`]). A second address on the same IP is the intranet COS host
//! ([`Emulator::intranet_endpoint`]): `InnerDownloadUrl`s and PostgreSQL's
//! `INTRANET` URLs point there. Tests reach the state through
//! [`Emulator::state`] and change it between calls.

mod api;
pub mod cos;
pub mod metadata;
pub mod sample;
pub mod state;

use std::future::IntoFuture;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use rand::distributions::Alphanumeric;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use self::api::faults::ApiFault;
pub use self::cos::{CosNetwork, CosStore, ObjectBody, ObjectOptions, UrlShape};
pub use self::metadata::{IssuedCredentials, MetadataHandle};
pub use self::sample::SampleInfo;
pub use self::state::{
    format_api_time, parse_api_time, redis_status, BackupFile, EmulatorState, FileSpec, PgBackup,
    PgBackupKind, PgBackupSpec, PgInstance, PgRestriction, RedisBackup, RedisBackupSpec,
    RedisEncryptionSpec, RedisInstance, RedisRestriction, StateError,
};
use tcbackup_signing::clock::{Clock, SystemClock};
use tcbackup_signing::secret::Secret;

/// SecretId accepted by default (tests and `tcbackup demo`).
pub const DEFAULT_SECRET_ID: &str = "AKIDtcbackupEmulator000000000000EXAMPLE";
/// SecretKey accepted by default.
pub const DEFAULT_SECRET_KEY: &str = "tcbackupEmulatorSecretKey0000EXAMPLE";

/// How long `shutdown` lets open connections finish before cutting them.
const SHUTDOWN_GRACE: StdDuration = StdDuration::from_secs(5);

/// How to start an emulator.
#[derive(Clone)]
pub struct EmulatorOptions {
    /// The SecretId the API accepts.
    pub secret_id: String,
    /// Its SecretKey.
    pub secret_key: String,
    /// The clock for signature windows, URL expiry, backup times.
    pub clock: Arc<dyn Clock>,
    /// Load the demo data ([`sample::load`]).
    pub sample: bool,
    /// Enforce the documented per-second API limits (on by default).
    pub rate_limiting: bool,
}

impl std::fmt::Debug for EmulatorOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorOptions")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &"******")
            .field("clock", &self.clock)
            .field("sample", &self.sample)
            .field("rate_limiting", &self.rate_limiting)
            .finish()
    }
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            secret_id: DEFAULT_SECRET_ID.to_string(),
            secret_key: DEFAULT_SECRET_KEY.to_string(),
            clock: Arc::new(SystemClock),
            sample: false,
            rate_limiting: true,
        }
    }
}

impl EmulatorOptions {
    /// The defaults: default key pair, system clock, no sample data, rate limits on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accept this key pair.
    pub fn keys(mut self, secret_id: impl Into<String>, secret_key: impl Into<String>) -> Self {
        self.secret_id = secret_id.into();
        self.secret_key = secret_key.into();
        self
    }

    /// Use this clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Load the demo data or not.
    pub fn sample(mut self, sample: bool) -> Self {
        self.sample = sample;
        self
    }

    /// Enforce API rate limits or not.
    pub fn rate_limiting(mut self, enabled: bool) -> Self {
        self.rate_limiting = enabled;
        self
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    endpoint: String,
    intranet_endpoint: String,
    state: EmulatorState,
    metadata: MetadataHandle,
    sample: Option<SampleInfo>,
    secret_id: String,
    secret_key: Secret,
    cancel: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("endpoint", &self.endpoint)
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

fn random_string(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The address clients should use for `local`: a wildcard bind is reached
/// over loopback.
fn reachable(local: SocketAddr) -> SocketAddr {
    match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), local.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), local.port())
        }
        _ => local,
    }
}

impl Emulator {
    /// Start on `127.0.0.1` with a free port.
    pub async fn start(opts: EmulatorOptions) -> io::Result<Emulator> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Self::start_on(listener, opts).await
    }

    /// Start on an already bound listener.
    pub async fn start_on(listener: TcpListener, opts: EmulatorOptions) -> io::Result<Emulator> {
        let addr = reachable(listener.local_addr()?);
        let endpoint = format!("http://{addr}");
        let intranet_listener = TcpListener::bind((listener.local_addr()?.ip(), 0)).await?;
        let intranet_endpoint = format!("http://{}", reachable(intranet_listener.local_addr()?));
        // COS URLs are signed with a service-side key of their own, as the
        // real services sign with theirs; clients never see it.
        let cos_id = format!("AKIDcos{}", random_string(29));
        let cos_key = random_string(32);
        let store = CosStore::new(opts.clock.clone(), &cos_id, &cos_key);
        let state = EmulatorState::new(store.clone(), opts.clock.clone());
        state.add_credential(&opts.secret_id, &opts.secret_key);
        state.set_rate_limiting(opts.rate_limiting);
        let sample = if opts.sample {
            let loading = state.clone();
            let loaded = tokio::task::spawn_blocking(move || sample::load(&loading))
                .await
                .map_err(io::Error::other)?
                .map_err(io::Error::other)?;
            Some(loaded)
        } else {
            None
        };
        let metadata = MetadataHandle::new(state.clone(), sample::SAMPLE_REGION);
        let app = api::router(api::ApiContext {
            state: state.clone(),
            base_url: Arc::from(endpoint.as_str()),
            intranet_base_url: Arc::from(intranet_endpoint.as_str()),
        })
        .merge(metadata::router(metadata.clone()))
        .merge(cos::router(store.clone()));
        let cancel = CancellationToken::new();
        let server =
            axum::serve(listener, app).with_graceful_shutdown(cancel.clone().cancelled_owned());
        let intranet_server = axum::serve(intranet_listener, cos::intranet_router(store))
            .with_graceful_shutdown(cancel.clone().cancelled_owned());
        let task = tokio::spawn(async move {
            tokio::try_join!(server.into_future(), intranet_server.into_future()).map(|_| ())
        });
        tracing::debug!(endpoint = %endpoint, intranet = %intranet_endpoint, "emulator listening");
        Ok(Emulator {
            addr,
            endpoint,
            intranet_endpoint,
            state,
            metadata,
            sample,
            secret_id: opts.secret_id,
            secret_key: Secret::new(opts.secret_key),
            cancel,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`: the API endpoint (both services), the COS
    /// host and the metadata host.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// `http://127.0.0.1:PORT2`: the intranet COS host, a listener of its
    /// own that serves the objects (also URLs restricted to the intranet)
    /// and nothing else.
    pub fn intranet_endpoint(&self) -> String {
        self.intranet_endpoint.clone()
    }

    /// The address the server answers on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the metadata service (`…/latest/meta-data/`).
    pub fn metadata_url(&self) -> String {
        format!("{}{}", self.endpoint, metadata::METADATA_PREFIX)
    }

    /// The mutable state: instances, backups, credentials, faults, limits.
    pub fn state(&self) -> &EmulatorState {
        &self.state
    }

    /// The COS object store (objects, COS faults, statistics).
    pub fn cos(&self) -> &Arc<CosStore> {
        self.state.cos()
    }

    /// The metadata service's settings.
    pub fn metadata(&self) -> &MetadataHandle {
        &self.metadata
    }

    /// What the demo data holds, when it was loaded.
    pub fn sample(&self) -> Option<&SampleInfo> {
        self.sample.as_ref()
    }

    /// The SecretId accepted.
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The `[api]` and `[credentials]` tables that point tcbackup at this
    /// emulator with its key pair ([`client_tables`]).
    pub fn client_tables(&self) -> String {
        client_tables(
            &self.endpoint,
            Some((&self.secret_id, self.secret_key.expose())),
        )
    }

    /// The SecretKey accepted (never log it).
    pub fn secret_key(&self) -> &Secret {
        &self.secret_key
    }

    /// The emulator's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        self.state.clock()
    }

    /// Stop accepting, let open requests finish (at most a few seconds), stop.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.cancel.cancel();
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(joined) => joined.map_err(io::Error::other)?,
            Err(_) => {
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The `[api]` and `[credentials]` tables of a tcbackup configuration that
/// points at an emulator on `endpoint`; `credentials` is written in when
/// given. The one place that knows what a client of the emulator must set
/// (the demo, `tcbackup emulator` and the tests build on it).
pub fn client_tables(endpoint: &str, credentials: Option<(&str, &str)>) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut text = format!(
        "[api]\nendpoint = {}\nallow_http_downloads = true\nregion = {}\n\n",
        quote(endpoint),
        quote(sample::SAMPLE_REGION)
    );
    match credentials {
        Some((id, key)) => text.push_str(&format!(
            "[credentials]\nsecret_id = {}\nsecret_key = {}\n\n",
            quote(id),
            quote(key)
        )),
        None => text.push_str(
            "# credentials: taken from TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY\n\n",
        ),
    }
    text
}

/// A tcbackup configuration that points at an emulator on `endpoint`, with
/// the sample instances; `credentials` is written in when given.
pub fn standalone_config(endpoint: &str, credentials: Option<(&str, &str)>) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut text = String::new();
    text.push_str("download_dir = \"./tcbackup-emulator\"\n\n");
    text.push_str(&client_tables(endpoint, credentials));
    text.push_str("[retention]\nkeep_last = 7\n\n");
    text.push_str(&format!(
        "[[redis]]\ninstance_id = {}\nregion = {}\n\n",
        quote(sample::SAMPLE_REDIS_INSTANCE),
        quote(sample::SAMPLE_REGION)
    ));
    text.push_str(&format!(
        "# encrypted backups: published with their key (DECRYPT-KEY)\n[[redis]]\ninstance_id = {}\nregion = {}\n\n",
        quote(sample::SAMPLE_REDIS_ENCRYPTED_INSTANCE),
        quote(sample::SAMPLE_REGION)
    ));
    text.push_str(&format!(
        "[[postgres]]\ninstance_id = {}\nregion = {}\n",
        quote(sample::SAMPLE_PG_INSTANCE),
        quote(sample::SAMPLE_REGION)
    ));
    text
}

/// Why the standalone emulator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// Only one half of the key pair was given.
    #[error("TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY must be set together")]
    HalfKeyPair,
    /// The address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Starting or running the server failed.
    #[error("emulator server failed")]
    Server(#[source] io::Error),
}

impl From<StandaloneError> for io::Error {
    fn from(err: StandaloneError) -> Self {
        let kind = match &err {
            StandaloneError::HalfKeyPair => io::ErrorKind::InvalidInput,
            StandaloneError::Bind { source, .. } | StandaloneError::Server(source) => source.kind(),
        };
        io::Error::new(kind, err)
    }
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serve the emulator with the demo data on `listen` until Ctrl-C or
/// SIGTERM (`tcbackup emulator --listen ADDR`). With both halves of the key
/// pair given it accepts that pair; with neither it generates one and prints
/// it. It prints a tcbackup configuration that points at it.
pub async fn run_standalone(
    listen: SocketAddr,
    secret_id: Option<String>,
    secret_key: Option<String>,
) -> io::Result<()> {
    let (secret_id, secret_key, generated) = match (secret_id, secret_key) {
        (Some(id), Some(key)) if !id.is_empty() && !key.is_empty() => (id, key, false),
        (None, None) => (
            format!("AKIDemu{}", random_string(29)),
            random_string(32),
            true,
        ),
        _ => return Err(StandaloneError::HalfKeyPair.into()),
    };
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StandaloneError::Bind {
            addr: listen,
            source,
        })?;
    let opts = EmulatorOptions::new()
        .keys(secret_id.clone(), secret_key.clone())
        .sample(true);
    let emulator = Emulator::start_on(listener, opts)
        .await
        .map_err(StandaloneError::Server)?;
    let endpoint = emulator.endpoint();
    let mut out = String::new();
    out.push_str(&format!(
        "tcbackup emulator listening on {endpoint}\n  API: Redis 2018-04-12 and PostgreSQL 2017-03-12 at {endpoint}/\n  COS objects and CVM metadata ({}) on the same address\n  intranet COS host (InnerDownloadUrl) at {}\n",
        emulator.metadata_url(),
        emulator.intranet_endpoint()
    ));
    if generated {
        out.push_str(&format!(
            "It accepts this generated key pair:\n  TENCENTCLOUD_SECRET_ID={secret_id}\n  TENCENTCLOUD_SECRET_KEY={secret_key}\n"
        ));
    } else {
        out.push_str(&format!(
            "It accepts the key pair from the environment (SecretId {secret_id}).\n"
        ));
    }
    out.push_str("\n# tcbackup configuration for this emulator:\n");
    let credentials = generated.then_some((secret_id.as_str(), secret_key.as_str()));
    out.push_str(&standalone_config(&endpoint, credentials));
    out.push_str("\n# Press Ctrl-C to stop.\n");
    {
        use std::io::Write;
        let stdout = io::stdout();
        let mut lock = stdout.lock();
        lock.write_all(out.as_bytes())?;
        lock.flush()?;
    }
    terminated().await;
    emulator.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_config_is_valid_toml_with_the_contract_keys() {
        let text = standalone_config("http://127.0.0.1:9000", Some(("AKIDx", "k\"ey")));
        let value: toml::Value = toml::from_str(&text).expect("valid TOML");
        assert_eq!(
            value["api"]["endpoint"].as_str(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(value["api"]["allow_http_downloads"].as_bool(), Some(true));
        assert_eq!(value["credentials"]["secret_key"].as_str(), Some("k\"ey"));
        assert_eq!(
            value["redis"][0]["instance_id"].as_str(),
            Some(sample::SAMPLE_REDIS_INSTANCE)
        );
        assert_eq!(
            value["redis"][1]["instance_id"].as_str(),
            Some(sample::SAMPLE_REDIS_ENCRYPTED_INSTANCE)
        );
        assert_eq!(
            value["postgres"][0]["instance_id"].as_str(),
            Some(sample::SAMPLE_PG_INSTANCE)
        );
        assert!(value["download_dir"].as_str().is_some());
        let text = standalone_config("http://127.0.0.1:9000", None);
        let value: toml::Value = toml::from_str(&text).expect("valid TOML");
        assert!(value.get("credentials").is_none());
    }

    #[test]
    fn wildcard_binds_are_reached_over_loopback() {
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        assert_eq!(reachable(any).to_string(), "127.0.0.1:8080");
        let lo: SocketAddr = "127.0.0.2:1".parse().expect("addr");
        assert_eq!(reachable(lo), lo);
    }
}
