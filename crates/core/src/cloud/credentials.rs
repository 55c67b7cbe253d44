//! Where the API key comes from: the credential chain of design.md §2 and the
//! provider the client asks for a (SecretId, SecretKey, Token) triple at
//! signing time.
//!
//! Chain order, first hit wins: `[credentials]` in the config file; systemd
//! credentials (`$CREDENTIALS_DIRECTORY/secret_id`, `secret_key`); the
//! environment (`TENCENTCLOUD_SECRET_ID`, `TENCENTCLOUD_SECRET_KEY`, optional
//! `TENCENTCLOUD_TOKEN`); the profile file `~/.tencentcloud/credentials`
//! (`TENCENTCLOUD_CREDENTIALS_FILE` overrides the path); the CVM instance role
//! from the metadata service (temporary keys, refreshed before expiry).
//! A profile file that group or others may read is used, with a warning
//! that names it and the `chmod 600` (as for the config file).
//!
//! The process environment is read in exactly one place,
//! `CredentialEnv::from_process`; everything else takes a `CredentialEnv`, so
//! tests never touch the real environment. No value of a key or token ever
//! reaches a log line or an error message.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use tcbackup_signing::clock::Clock;
use tcbackup_signing::secret::{redact_url, Secret};

/// Default base URL of the CVM metadata service.
pub const DEFAULT_METADATA_URL: &str = "http://metadata.tencentyun.com/latest/meta-data/";

/// Temporary credentials are refreshed when they expire within this margin
/// (the official SDKs use 300 s: the server's timestamp tolerance).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// One consistent set of credentials, read as a whole at signing time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The SecretId (`AKID…`); not secret, it appears in the Authorization header.
    pub secret_id: String,
    /// The SecretKey.
    pub secret_key: Secret,
    /// The session token of temporary credentials (sent as `X-TC-Token`).
    pub token: Option<Secret>,
    /// When temporary credentials expire.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Credentials {
    /// Permanent credentials (no token, no expiry).
    pub fn permanent(secret_id: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            secret_id: secret_id.into(),
            secret_key: Secret::new(secret_key),
            token: None,
            expires_at: None,
        }
    }
}

/// Which step of the chain supplied the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `[credentials]` in the config file.
    Config,
    /// systemd credentials in this directory.
    Systemd {
        /// `$CREDENTIALS_DIRECTORY`.
        dir: PathBuf,
    },
    /// `TENCENTCLOUD_SECRET_ID` / `TENCENTCLOUD_SECRET_KEY` (and maybe a token).
    Environment,
    /// The profile file.
    Profile {
        /// The file read.
        path: PathBuf,
    },
    /// The CVM instance role, through the metadata service.
    CvmRole {
        /// The role name.
        role: String,
        /// The metadata base URL.
        metadata_url: String,
    },
    /// Given directly by the embedding program (tests, the demo).
    Fixed {
        /// Who supplied them.
        label: String,
    },
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Config => f.write_str("[credentials] in the config file"),
            CredentialSource::Systemd { dir } => {
                write!(f, "systemd credentials in {}", dir.display())
            }
            CredentialSource::Environment => {
                f.write_str("environment variables TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY")
            }
            CredentialSource::Profile { path } => write!(f, "profile file {}", path.display()),
            CredentialSource::CvmRole { role, metadata_url } => {
                write!(
                    f,
                    "cvm role {role} from the metadata service at {metadata_url}"
                )
            }
            CredentialSource::Fixed { label } => f.write_str(label),
        }
    }
}

/// Why no credentials could be produced.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// One half of a key pair is given without the other.
    #[error("{origin} gives {present} but not {missing}: {fix}")]
    Incomplete {
        /// Where (e.g. `the environment`).
        origin: String,
        /// What is there.
        present: &'static str,
        /// What is missing.
        missing: &'static str,
        /// How to fix it.
        fix: &'static str,
    },
    /// A value is set but empty.
    #[error("{name} is set but empty: {fix}")]
    Empty {
        /// The variable, key or file.
        name: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// A credential file could not be read.
    #[error("cannot read credentials file {path}: {error}; {fix}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
        /// How to fix it.
        fix: &'static str,
    },
    /// The profile file is not the expected INI.
    #[error("profile file {path}: {reason}; it needs a [default] section with secret_id = … and secret_key = …")]
    Profile {
        /// The file.
        path: PathBuf,
        /// What is wrong (line number included when known).
        reason: String,
    },
    /// The metadata service could not give role credentials (transient).
    #[error("cvm role credentials from {url}: {reason}")]
    Metadata {
        /// The metadata URL asked (no secrets in it).
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Nothing in the chain had credentials.
    #[error("no api credentials found (tried: {tried}); set secret_id and secret_key under [credentials] in the config, or TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY in the environment, or write ~/.tencentcloud/credentials, or run on a CVM with a role bound")]
    NotFound {
        /// The sources looked at.
        tried: String,
    },
}

impl CredentialsError {
    /// Whether asking again later may succeed (metadata service hiccups).
    pub fn is_transient(&self) -> bool {
        matches!(self, CredentialsError::Metadata { .. })
    }
}

/// `[credentials]` values from the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigCredentials {
    /// `secret_id`.
    pub secret_id: Option<String>,
    /// `secret_key`.
    pub secret_key: Option<Secret>,
    /// An optional session token for temporary keys.
    pub token: Option<Secret>,
}

/// The parts of the process environment the chain reads. Built once by
/// `from_process`, or by hand in tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialEnv {
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`).
    pub credentials_directory: Option<PathBuf>,
    /// `$TENCENTCLOUD_SECRET_ID`.
    pub secret_id: Option<String>,
    /// `$TENCENTCLOUD_SECRET_KEY`.
    pub secret_key: Option<Secret>,
    /// `$TENCENTCLOUD_TOKEN`.
    pub token: Option<Secret>,
    /// `$TENCENTCLOUD_CREDENTIALS_FILE`.
    pub credentials_file: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
}

impl CredentialEnv {
    /// Read the variables from the process environment.
    pub fn from_process() -> Self {
        let text = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        let path = |name: &str| std::env::var_os(name).map(PathBuf::from);
        Self {
            credentials_directory: path("CREDENTIALS_DIRECTORY"),
            secret_id: text("TENCENTCLOUD_SECRET_ID"),
            secret_key: text("TENCENTCLOUD_SECRET_KEY").map(Secret::new),
            token: text("TENCENTCLOUD_TOKEN").map(Secret::new),
            credentials_file: path("TENCENTCLOUD_CREDENTIALS_FILE"),
            home: path("HOME"),
        }
    }
}

/// How to reach the CVM metadata service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataConfig {
    /// Whether the chain asks the metadata service at all.
    pub enabled: bool,
    /// Base URL, ending in `/latest/meta-data/` on a real CVM.
    pub base_url: String,
    /// Whole-request timeout; short, so that a machine off Tencent Cloud
    /// fails fast.
    pub timeout: Duration,
    /// Refresh temporary keys that expire within this margin.
    pub refresh_margin: Duration,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: DEFAULT_METADATA_URL.to_string(),
            timeout: Duration::from_secs(2),
            refresh_margin: REFRESH_MARGIN,
        }
    }
}

/// Everything the chain looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainConfig {
    /// `[credentials]` from the config file.
    pub explicit: ConfigCredentials,
    /// The environment.
    pub env: CredentialEnv,
    /// The metadata service.
    pub metadata: MetadataConfig,
}

/// Supplies credentials to the client: fixed ones, or CVM role credentials
/// that it refreshes. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct CredentialProvider {
    inner: Arc<ProviderInner>,
}

#[derive(Debug)]
struct ProviderInner {
    source: CredentialSource,
    kind: ProviderKind,
}

#[derive(Debug)]
enum ProviderKind {
    Fixed(Credentials),
    Role(RoleProvider),
}

impl CredentialProvider {
    /// A provider that always returns `credentials`.
    pub fn fixed(source: CredentialSource, credentials: Credentials) -> Self {
        Self {
            inner: Arc::new(ProviderInner {
                source,
                kind: ProviderKind::Fixed(credentials),
            }),
        }
    }

    /// Walk the chain and return a provider for the first source that has
    /// credentials. A source that is present but broken (half a key pair,
    /// an empty variable, an unreadable file) is an error, not a skip: the
    /// user meant it.
    pub async fn from_chain(
        config: &ChainConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CredentialsError> {
        let mut tried = Vec::new();

        tried.push("config");
        if let Some(creds) = from_config(&config.explicit)? {
            return Ok(Self::found(CredentialSource::Config, creds));
        }

        if let Some(dir) = &config.env.credentials_directory {
            tried.push("systemd credentials");
            if let Some(creds) = from_systemd_dir(dir).await? {
                let source = CredentialSource::Systemd { dir: dir.clone() };
                return Ok(Self::found(source, creds));
            }
        }

        tried.push("environment");
        if let Some(creds) = from_env(&config.env)? {
            return Ok(Self::found(CredentialSource::Environment, creds));
        }

        tried.push("profile file");
        if let Some((path, creds)) = from_profile(&config.env).await? {
            if let Some(open) = crate::private_files::group_or_other_access(&path) {
                tracing::warn!(
                    "profile file {} holds a secret key and is readable by group or others (mode {:04o}); run `chmod 600 {}`",
                    open.path.display(),
                    open.mode,
                    open.path.display()
                );
            }
            return Ok(Self::found(CredentialSource::Profile { path }, creds));
        }

        if config.metadata.enabled {
            tried.push("cvm role");
            if let Some(provider) = Self::cvm_role(&config.metadata, clock).await? {
                tracing::info!(source = %provider.inner.source, "using api credentials");
                return Ok(provider);
            }
        }

        Err(CredentialsError::NotFound {
            tried: tried.join(", "),
        })
    }

    fn found(source: CredentialSource, credentials: Credentials) -> Self {
        tracing::info!(%source, secret_id = %mask_id(&credentials.secret_id), "using api credentials");
        Self::fixed(source, credentials)
    }

    /// A provider for the CVM role bound to this machine, or `None` when the
    /// metadata service is unreachable or no role is bound. Fetches the first
    /// set of temporary keys before returning.
    pub async fn cvm_role(
        metadata: &MetadataConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, CredentialsError> {
        let role = RoleProvider::discover(metadata, clock).await?;
        let Some(role) = role else {
            return Ok(None);
        };
        let source = CredentialSource::CvmRole {
            role: role.role.clone(),
            metadata_url: metadata.base_url.clone(),
        };
        let provider = Self {
            inner: Arc::new(ProviderInner {
                source,
                kind: ProviderKind::Role(role),
            }),
        };
        provider.credentials().await?;
        Ok(Some(provider))
    }

    /// The credentials to sign the next request with, refreshed first when
    /// they are temporary and expire within the margin.
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        match &self.inner.kind {
            ProviderKind::Fixed(creds) => Ok(creds.clone()),
            ProviderKind::Role(role) => role.current(None).await,
        }
    }

    /// Force a refresh after the server rejected `stale` (TokenFailure).
    /// Returns `None` when these credentials cannot be refreshed (fixed
    /// ones). If another caller already refreshed, returns the newer set
    /// without asking again.
    pub async fn refresh(
        &self,
        stale: &Credentials,
    ) -> Result<Option<Credentials>, CredentialsError> {
        match &self.inner.kind {
            ProviderKind::Fixed(_) => Ok(None),
            ProviderKind::Role(role) => role.current(Some(stale)).await.map(Some),
        }
    }

    /// Whether `refresh` can produce new credentials.
    pub fn is_refreshable(&self) -> bool {
        matches!(self.inner.kind, ProviderKind::Role(_))
    }

    /// The source these credentials come from.
    pub fn source(&self) -> &CredentialSource {
        &self.inner.source
    }

    /// One line for logs and `check-config`: the source and, for fixed keys,
    /// the SecretId with its middle masked. Never the key.
    pub fn describe(&self) -> String {
        match &self.inner.kind {
            ProviderKind::Fixed(creds) => {
                let token = if creds.token.is_some() {
                    " with a session token"
                } else {
                    ""
                };
                format!(
                    "{} (SecretId {}{token})",
                    self.inner.source,
                    mask_id(&creds.secret_id)
                )
            }
            ProviderKind::Role(_) => format!(
                "{} (temporary keys, refreshed before expiry)",
                self.inner.source
            ),
        }
    }
}

/// `AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE` → `AKID…MPLE`.
pub fn mask_id(secret_id: &str) -> String {
    let chars: Vec<char> = secret_id.chars().collect();
    if chars.len() <= 8 {
        return "…".to_string();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

fn from_config(explicit: &ConfigCredentials) -> Result<Option<Credentials>, CredentialsError> {
    let names = PairNames {
        origin: "[credentials] in the config file".into(),
        secret_id: "secret_id",
        secret_key: "secret_key",
        token: Some(("token", "secret_id and secret_key")),
        fix: "set both secret_id and secret_key under [credentials], or remove both",
    };
    let Some((id, key)) = names.pair(
        explicit.secret_id.as_deref(),
        explicit.secret_key.as_ref(),
        explicit.token.is_some(),
    )?
    else {
        return Ok(None);
    };
    let fix = "put the value from the CAM console, or remove the key";
    let secret_id = non_empty(id, "[credentials] secret_id", fix)?;
    let secret_key = non_empty(key.expose(), "[credentials] secret_key", fix)?;
    let token = explicit
        .token
        .as_ref()
        .map(|t| non_empty(t.expose(), "[credentials] token", fix).map(Secret::new))
        .transpose()?;
    Ok(Some(Credentials {
        secret_id,
        secret_key: Secret::new(secret_key),
        token,
        expires_at: None,
    }))
}

/// How one source names the parts of a key pair, for `Incomplete` errors.
struct PairNames {
    origin: String,
    secret_id: &'static str,
    secret_key: &'static str,
    /// The token's name and what a token given alone lacks; `None` for a
    /// source without tokens.
    token: Option<(&'static str, &'static str)>,
    fix: &'static str,
}

impl PairNames {
    /// Both halves of the pair, or `None` when neither (nor a token) is
    /// given; one half alone, or a token alone, is `Incomplete`.
    fn pair<I, K>(
        self,
        id: Option<I>,
        key: Option<K>,
        token_given: bool,
    ) -> Result<Option<(I, K)>, CredentialsError> {
        let (present, missing) = match (id, key) {
            (Some(id), Some(key)) => return Ok(Some((id, key))),
            (Some(_), None) => (self.secret_id, self.secret_key),
            (None, Some(_)) => (self.secret_key, self.secret_id),
            (None, None) => match self.token {
                Some((token, both)) if token_given => (token, both),
                _ => return Ok(None),
            },
        };
        Err(CredentialsError::Incomplete {
            origin: self.origin,
            present,
            missing,
            fix: self.fix,
        })
    }
}

/// Trimmed value, or `Empty` naming where it came from.
fn non_empty(value: &str, name: &str, fix: &'static str) -> Result<String, CredentialsError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(CredentialsError::Empty {
            name: name.to_string(),
            fix,
        });
    }
    Ok(trimmed.to_string())
}

async fn from_systemd_dir(dir: &Path) -> Result<Option<Credentials>, CredentialsError> {
    const FIX: &str =
        "pass both with LoadCredential=secret_id:… and LoadCredential=secret_key:… in the unit";
    let id = read_optional(&dir.join("secret_id"), FIX).await?;
    let key = read_optional(&dir.join("secret_key"), FIX).await?;
    // The units' `SetCredential=secret_id:` and `secret_key:` are empty
    // defaults, there so that a unit starts when the files of its
    // `LoadCredential=` lines do not exist (the key is elsewhere in the
    // chain): both empty means systemd passed no key. One empty is half a
    // pair, an error below.
    let blank = |s: &Option<Secret>| s.as_ref().is_some_and(|s| s.expose().trim().is_empty());
    if blank(&id) && blank(&key) {
        return Ok(None);
    }
    let names = PairNames {
        origin: format!("systemd credentials directory {}", dir.display()),
        secret_id: "secret_id",
        secret_key: "secret_key",
        token: None,
        fix: FIX,
    };
    let Some((id, key)) = names.pair(id, key, false)? else {
        return Ok(None);
    };
    let id_name = dir.join("secret_id").display().to_string();
    let key_name = dir.join("secret_key").display().to_string();
    Ok(Some(Credentials {
        secret_id: non_empty(id.expose(), &id_name, FIX)?,
        secret_key: Secret::new(non_empty(key.expose(), &key_name, FIX)?),
        token: None,
        expires_at: None,
    }))
}

/// The file's contents as a secret, `None` when it does not exist.
async fn read_optional(path: &Path, fix: &'static str) -> Result<Option<Secret>, CredentialsError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok(Some(Secret::new(text))),
            Err(_) => Err(CredentialsError::Read {
                path: path.to_path_buf(),
                error: std::io::Error::new(std::io::ErrorKind::InvalidData, "not utf-8"),
                fix,
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(CredentialsError::Read {
            path: path.to_path_buf(),
            error,
            fix,
        }),
    }
}

fn from_env(env: &CredentialEnv) -> Result<Option<Credentials>, CredentialsError> {
    const EMPTY_FIX: &str = "give it a value or unset it";
    let names = PairNames {
        origin: "the environment".into(),
        secret_id: "TENCENTCLOUD_SECRET_ID",
        secret_key: "TENCENTCLOUD_SECRET_KEY",
        token: Some((
            "TENCENTCLOUD_TOKEN",
            "TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY",
        )),
        fix: "set both TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY, or unset both",
    };
    let Some((id, key)) = names.pair(
        env.secret_id.as_ref(),
        env.secret_key.as_ref(),
        env.token.is_some(),
    )?
    else {
        return Ok(None);
    };
    let secret_id = non_empty(id, "TENCENTCLOUD_SECRET_ID", EMPTY_FIX)?;
    let secret_key = non_empty(key.expose(), "TENCENTCLOUD_SECRET_KEY", EMPTY_FIX)?;
    let token = env
        .token
        .as_ref()
        .map(|t| non_empty(t.expose(), "TENCENTCLOUD_TOKEN", EMPTY_FIX).map(Secret::new))
        .transpose()?;
    Ok(Some(Credentials {
        secret_id,
        secret_key: Secret::new(secret_key),
        token,
        expires_at: None,
    }))
}

async fn from_profile(
    env: &CredentialEnv,
) -> Result<Option<(PathBuf, Credentials)>, CredentialsError> {
    const FIX: &str = "fix TENCENTCLOUD_CREDENTIALS_FILE or unset it";
    let (path, required) = match (&env.credentials_file, &env.home) {
        (Some(path), _) => (path.clone(), true),
        (None, Some(home)) => (home.join(".tencentcloud").join("credentials"), false),
        (None, None) => return Ok(None),
    };
    let text = match read_optional(&path, FIX).await? {
        Some(text) => text,
        None if required => {
            return Err(CredentialsError::Read {
                path,
                error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                fix: FIX,
            })
        }
        None => return Ok(None),
    };
    let creds = parse_profile(text.expose(), &path)?;
    Ok(Some((path, creds)))
}

/// Parse the INI profile file: `[default]` with `secret_id` and `secret_key`
/// (`#` and `;` start comments; other sections are ignored).
pub fn parse_profile(text: &str, path: &Path) -> Result<Credentials, CredentialsError> {
    let bad = |reason: String| CredentialsError::Profile {
        path: path.to_path_buf(),
        reason,
    };
    let mut section: Option<String> = None;
    let mut id = None;
    let mut key = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(bad(format!("line {line_no}: unclosed section header")));
            };
            section = Some(name.trim().to_string());
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            // Never echo the line: it may hold a key.
            return Err(bad(format!("line {line_no}: expected name = value")));
        };
        if section.as_deref() != Some("default") {
            continue;
        }
        match name.trim() {
            "secret_id" => id = Some(value.trim().to_string()),
            "secret_key" => key = Some(value.trim().to_string()),
            _ => {}
        }
    }
    match (id, key) {
        (Some(id), Some(key)) if !id.is_empty() && !key.is_empty() => Ok(Credentials {
            secret_id: id,
            secret_key: Secret::new(key),
            token: None,
            expires_at: None,
        }),
        (Some(id), Some(_)) if id.is_empty() => Err(bad("secret_id is empty".into())),
        (Some(_), Some(_)) => Err(bad("secret_key is empty".into())),
        (Some(_), None) => Err(bad("[default] has secret_id but no secret_key".into())),
        (None, Some(_)) => Err(bad("[default] has secret_key but no secret_id".into())),
        (None, None) => Err(bad("no secret_id/secret_key in a [default] section".into())),
    }
}

/// Temporary credentials of the CVM role, cached and refreshed.
#[derive(Debug)]
struct RoleProvider {
    http: reqwest::Client,
    role: String,
    url: url::Url,
    clock: Arc<dyn Clock>,
    refresh_margin: chrono::Duration,
    current: tokio::sync::Mutex<Option<Credentials>>,
}

/// The metadata service's credential document.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleDocument {
    tmp_secret_id: String,
    tmp_secret_key: String,
    token: String,
    expired_time: i64,
    code: String,
}

impl RoleProvider {
    /// Ask for the bound role name. `None` when unreachable or no role.
    async fn discover(
        metadata: &MetadataConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, CredentialsError> {
        let base_text = if metadata.base_url.ends_with('/') {
            metadata.base_url.clone()
        } else {
            format!("{}/", metadata.base_url)
        };
        let meta_err = |url: &str, reason: String| CredentialsError::Metadata {
            url: redact_url(url),
            reason,
        };
        let base = url::Url::parse(&base_text)
            .map_err(|e| meta_err(&base_text, format!("invalid url: {e}")))?;
        let list_url = base
            .join("cam/security-credentials/")
            .map_err(|e| meta_err(&base_text, format!("invalid url: {e}")))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(metadata.timeout)
            .timeout(metadata.timeout)
            .build()
            .map_err(|e| meta_err(list_url.as_str(), format!("cannot build http client: {e}")))?;
        let response = match http.get(list_url.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                // Off Tencent Cloud the name does not resolve or nothing
                // answers: that is "no role here", not an error.
                tracing::debug!(url = %list_url, error = %redact_url(&e.to_string()), "no metadata service");
                return Ok(None);
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            tracing::debug!(url = %list_url, "metadata service has no role bound");
            return Ok(None);
        }
        if !status.is_success() {
            return Err(meta_err(list_url.as_str(), format!("http status {status}")));
        }
        let body = response
            .text()
            .await
            .map_err(|e| meta_err(list_url.as_str(), redact_url(&e.to_string())))?;
        let role = body
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        if role.is_empty() {
            return Ok(None);
        }
        if role.contains('/') || role.chars().any(char::is_control) {
            return Err(meta_err(
                list_url.as_str(),
                "role name is not a plain name".into(),
            ));
        }
        let mut url = list_url.clone();
        url.path_segments_mut()
            .map_err(|()| meta_err(list_url.as_str(), "base url cannot take a path".into()))?
            .pop_if_empty()
            .push(role);
        let refresh_margin = chrono::Duration::from_std(metadata.refresh_margin)
            .unwrap_or_else(|_| chrono::Duration::seconds(300));
        Ok(Some(Self {
            http,
            role: role.to_string(),
            url,
            clock,
            refresh_margin,
            current: tokio::sync::Mutex::new(None),
        }))
    }

    /// The cached credentials, fetched anew when absent, about to expire, or
    /// equal to `stale` (rejected by the server).
    async fn current(&self, stale: Option<&Credentials>) -> Result<Credentials, CredentialsError> {
        let mut current = self.current.lock().await;
        let now = self.clock.now();
        if let Some(creds) = current.as_ref() {
            let rejected = stale.is_some_and(|s| s == creds);
            let fresh = creds
                .expires_at
                .is_some_and(|at| at - now > self.refresh_margin);
            if !rejected && (fresh || stale.is_some()) {
                // Either still fresh, or someone refreshed since `stale` was read.
                return Ok(creds.clone());
            }
        }
        match self.fetch().await {
            Ok(creds) => {
                tracing::debug!(role = %self.role, secret_id = %mask_id(&creds.secret_id), expires_at = ?creds.expires_at, "fetched cvm role credentials");
                *current = Some(creds.clone());
                Ok(creds)
            }
            Err(err) => match current.as_ref() {
                // Refresh failed, but the old keys have not expired yet and
                // were not rejected: keep working and try again next call.
                Some(creds) if stale.is_none() && creds.expires_at.is_some_and(|at| at > now) => {
                    tracing::warn!(error = %err, "cannot refresh cvm role credentials; using the current ones until they expire");
                    Ok(creds.clone())
                }
                _ => Err(err),
            },
        }
    }

    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let err = |reason: String| CredentialsError::Metadata {
            url: self.url.to_string(),
            reason,
        };
        let response = self
            .http
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| err(redact_url(&e.to_string())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(err(format!("http status {status}")));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| err(redact_url(&e.to_string())))?;
        // serde's messages can quote values; report only the position.
        let doc: RoleDocument = serde_json::from_slice(&body).map_err(|e| {
            err(format!(
                "not the documented credentials json (line {} column {})",
                e.line(),
                e.column()
            ))
        })?;
        if doc.code != "Success" {
            return Err(err(format!("Code is {:?}, not \"Success\"", doc.code)));
        }
        let expires_at = DateTime::from_timestamp(doc.expired_time, 0).ok_or_else(|| {
            err(format!(
                "ExpiredTime {} is not a valid time",
                doc.expired_time
            ))
        })?;
        if doc.tmp_secret_id.is_empty() || doc.tmp_secret_key.is_empty() || doc.token.is_empty() {
            return Err(err("TmpSecretId, TmpSecretKey or Token is empty".into()));
        }
        Ok(Credentials {
            secret_id: doc.tmp_secret_id,
            secret_key: Secret::new(doc.tmp_secret_key),
            token: Some(Secret::new(doc.token)),
            expires_at: Some(expires_at),
        })
    }
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
