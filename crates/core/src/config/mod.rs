//! The configuration: the TOML file of design.md §2 read in two stages,
//! `raw` (the file as written, with spans) and `validate` (typed values),
//! into a [`Config`] that is passed explicitly to whoever needs it.
//!
//! Loading touches nothing on disk but the file itself: no directory is
//! created and no path is probed. Every problem is reported at once, each
//! with the file, the line, the key and the fix ([`ConfigError`]).
//!
//! Decisions a user can rely on:
//! - Unknown keys are errors, with the closest valid key suggested.
//! - A relative `download_dir` (or `metrics_file`) is resolved against the
//!   current directory at load time, with a warning; the demo config uses
//!   `"./tcbackup-demo"`. Production configs should use absolute paths.
//! - An instance id with the other service's prefix (`crs-` under
//!   `[[postgres]]`, `postgres-` under `[[redis]]`) is refused; an id with
//!   neither prefix is accepted with a warning (emulators and future id
//!   formats).
//! - Files and directories tcbackup creates are owner-only (0600/0700)
//!   whatever the umask; `group_readable = true` makes them 0640/0750
//!   ([`Config::file_modes`]). `download_dir` itself is the operator's: a
//!   mode that lets others in is warned about ([`Config::exposed_download_dir`]).
//! - `[transfer] network` ("public", the default, or "intranet") says where
//!   backups are downloaded from; a `network` key in a `[[redis]]` or
//!   `[[postgres]]` table overrides it for that instance.
//! - `[retention]` must hold at least one `keep_*` rule; a per-instance
//!   `[redis.retention]` / `[postgres.retention]` table replaces it for that
//!   instance as a whole (keys are not merged). An empty policy is an error,
//!   never "delete everything".

mod raw;
pub mod units;
mod validate;

use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveTime, TimeZone, Utc};
use url::Url;

use crate::model::{BackupKind, Network, Service};
use crate::private_files::FileModes;
use crate::retention::Policy;
use tcbackup_signing::secret::Secret;
pub use tcbackup_signing::service::Site;

/// Where the daemon looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tcbackup/tcbackup.toml";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from (for messages and the permission check).
    pub source: PathBuf,
    /// Where published backups go; absolute.
    pub download_dir: PathBuf,
    /// How far back a backup's start may lie to be due (`lookback`, default 7d).
    pub lookback: Duration,
    /// How the API's zone-less times and retention's calendar days are read
    /// (`time_zone`, default `+08:00`).
    pub time_zone: FixedOffset,
    /// How long partial downloads of a backup the API no longer lists are
    /// kept before they are removed (`partial_grace`, default 7d).
    pub partial_grace: Duration,
    /// Where to write Prometheus textfile metrics, if anywhere; absolute.
    pub metrics_file: Option<PathBuf>,
    /// A URL to ping at the start, success and failure of each cycle.
    pub healthcheck_url: Option<Url>,
    /// Whether what tcbackup creates is readable by its group
    /// (`group_readable`, default false: owner only).
    pub group_readable: bool,
    /// How old an instance's newest local set may be before `tcbackup
    /// status` calls it stale (`stale_after`, default twice the time
    /// between scheduled runs: 12h for the default 6h interval, 2 days for
    /// `daily_at`).
    pub stale_after: Duration,
    /// `[api]`.
    pub api: ApiConfig,
    /// `[credentials]`, when the file holds a key pair (first link of the chain).
    pub credentials: Option<StaticCredentials>,
    /// `[transfer]`.
    pub transfer: TransferConfig,
    /// `[schedule]` for daemon mode.
    pub schedule: Schedule,
    /// `[retention]`, the policy of instances without their own.
    pub retention: Option<Policy>,
    /// Every configured instance, Redis first, in file order.
    pub instances: Vec<InstanceConfig>,
    /// Things that are allowed but probably not meant (shown by
    /// `check-config` and logged at startup).
    pub warnings: Vec<Problem>,
}

/// `[api]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiConfig {
    /// Base URL for every API call instead of the site's or region's host;
    /// overrides `site`.
    pub endpoint: Option<Url>,
    /// The site whose API hosts serve the account (default China).
    pub site: Site,
    /// Accept `http://` download URLs (emulators only).
    pub allow_http_downloads: bool,
    /// Region of instances that name none.
    pub region: Option<String>,
    /// Base URL of the CVM metadata service for instance-role credentials,
    /// when not the default.
    pub metadata_url: Option<Url>,
}

/// A key pair written in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// `secret_id` (`AKID…`); not secret on its own.
    pub secret_id: String,
    /// `secret_key`; prints redacted.
    pub secret_key: Secret,
    /// `token` for temporary credentials; prints redacted.
    pub token: Option<Secret>,
}

/// `[transfer]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferConfig {
    /// Files in flight at once (`concurrency`, default 4, at most 64).
    pub concurrency: NonZeroUsize,
    /// Whole-process download limit in bytes per second; `None` = unlimited.
    pub bandwidth_limit: Option<u64>,
    /// The most connections for one large file (`segments`, default 16, at
    /// most 16); how many it really uses is found while it downloads.
    pub segments: NonZeroUsize,
    /// Files at least this large are downloaded in segments (default 64 MiB).
    pub segment_threshold: u64,
    /// Lifetime asked for PostgreSQL download URLs (`url_lifetime_hours`,
    /// default 12, 1..=36 as the API allows).
    pub url_lifetime_hours: u8,
    /// Free space to leave on the download filesystem beyond the pending
    /// downloads (default 1 GiB).
    pub free_space_margin: u64,
    /// A download that receives nothing for this long is retried (default 60s).
    pub idle_timeout: Duration,
    /// Where instances without their own `network` download from
    /// (`network`, default public).
    pub network: Network,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            concurrency: NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN),
            bandwidth_limit: None,
            segments: NonZeroUsize::new(16).unwrap_or(NonZeroUsize::MIN),
            segment_threshold: 64 << 20,
            url_lifetime_hours: 12,
            free_space_margin: 1 << 30,
            idle_timeout: Duration::from_secs(60),
            network: Network::Public,
        }
    }
}

/// `[schedule]`: when the daemon runs a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// The base rhythm.
    pub when: ScheduleWhen,
    /// A random delay in `0..=jitter` added to each run (default 10m), so
    /// many hosts do not hit the API at the same second.
    pub jitter: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            when: ScheduleWhen::Every(Duration::from_secs(6 * 3600)),
            jitter: Duration::from_secs(600),
        }
    }
}

impl Schedule {
    /// The time between two runs: the interval, or a day for `daily_at`.
    pub fn period(&self) -> Duration {
        match self.when {
            ScheduleWhen::Every(interval) => interval,
            ScheduleWhen::DailyAt(_) => Duration::from_secs(86_400),
        }
    }

    /// When the run after one that started at `last_start` is due, before
    /// its jitter (the daemon adds a random `0..=jitter`): `last_start` plus
    /// the interval, or the next `daily_at` in `time_zone` after `now`.
    /// `None` for an interval schedule that has no last start to count from.
    pub fn next_after(
        &self,
        time_zone: FixedOffset,
        last_start: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match self.when {
            ScheduleWhen::Every(interval) => {
                let interval = chrono::Duration::from_std(interval).ok()?;
                last_start.map(|last| last + interval)
            }
            ScheduleWhen::DailyAt(at) => Some(next_daily(at, time_zone, now)),
        }
    }
}

/// The first `at` in `time_zone` strictly after `now`.
pub fn next_daily(at: NaiveTime, time_zone: FixedOffset, now: DateTime<Utc>) -> DateTime<Utc> {
    let local_now = now.with_timezone(&time_zone);
    let today = local_now.date_naive().and_time(at);
    match time_zone.from_local_datetime(&today).single() {
        Some(t) if t.with_timezone(&Utc) > now => t.with_timezone(&Utc),
        Some(t) => t.with_timezone(&Utc) + chrono::Duration::days(1),
        // A fixed offset has no gaps or folds.
        None => now + chrono::Duration::days(1),
    }
}

/// The base rhythm of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleWhen {
    /// Every `interval` (default 6h), the first run at startup.
    Every(Duration),
    /// Once a day at this time in the configured `time_zone`.
    DailyAt(NaiveTime),
}

/// One `[[redis]]` or `[[postgres]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// The instance id (`crs-…`, `postgres-…`); safe as a directory name.
    pub instance_id: String,
    /// Redis or PostgreSQL.
    pub service: Service,
    /// The instance's region, or `[api] region`.
    pub region: String,
    /// Where its backups are downloaded from: its own `network`, or
    /// `[transfer] network`.
    pub network: Network,
    /// What to fetch: `[Redis]`, or PostgreSQL `backup_types` in the order
    /// base then log.
    pub kinds: Vec<BackupKind>,
    /// The instance's own retention table, or `[retention]`.
    pub retention: Policy,
}

/// One problem (or warning) found in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, when the problem has a place.
    pub line: Option<usize>,
    /// Where in the document: `retention.keep_lst`, `redis[1].instance_id`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(line: Option<usize>, key: impl Into<String>, message: String) -> Self {
        Self {
            line,
            key: key.into(),
            message,
        }
    }

    /// The problem as a `file:line: message` line.
    pub fn located(&self, file: &Path) -> String {
        match self.line {
            Some(line) => format!("{}:{line}: {}", file.display(), self.message),
            None => format!("{}: {}", file.display(), self.message),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is not a valid config; one problem per line.
    #[error("{}", problems.iter().map(|p| p.located(path)).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Every problem found, in line order.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Every problem found (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

impl Config {
    /// Read and validate the config file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_str(&text, path)
    }

    /// Validate config `text`; `path` names it in messages. A relative
    /// `download_dir` is resolved against the process's current directory.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str, path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        // Without a current directory, relative paths are reported as errors
        // by the validator instead of being resolved.
        let cwd = std::env::current_dir().ok();
        Config::from_str_in(text, path, cwd.as_deref())
    }

    /// [`Config::from_str`] with the directory that relative paths are
    /// resolved against given explicitly (`None` refuses relative paths).
    pub fn from_str_in(
        text: &str,
        path: impl AsRef<Path>,
        cwd: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        validate::parse_and_validate(text, path.as_ref(), cwd)
    }

    /// When the file holds a `secret_key` or `token` and its group or others
    /// may read it, a warning naming the file and the `chmod 600` that fixes
    /// it. Only the file's metadata is read.
    pub fn exposed_secret(&self) -> Option<ExposedSecret> {
        self.credentials.as_ref()?;
        exposed_secret_file(&self.source)
    }

    /// The modes of the files and directories tcbackup creates.
    pub fn file_modes(&self) -> FileModes {
        FileModes::new(self.group_readable)
    }

    /// When `download_dir` exists and others (beyond owner and group) may
    /// read or list it, a warning naming it and the `chmod` that fixes it.
    /// Only its metadata is read.
    pub fn exposed_download_dir(&self) -> Option<ExposedDownloadDir> {
        let access = crate::private_files::other_access(&self.download_dir)?;
        Some(ExposedDownloadDir {
            path: access.path,
            mode: access.mode,
            group_readable: self.group_readable,
        })
    }

    /// The instance with this id, if configured.
    pub fn instance(&self, instance_id: &str) -> Option<&InstanceConfig> {
        self.instances
            .iter()
            .find(|instance| instance.instance_id == instance_id)
    }
}

/// A config file that holds a secret and is readable beyond its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposedSecret {
    /// The file.
    pub path: PathBuf,
    /// Its permission bits (`0o644`).
    pub mode: u32,
}

impl fmt::Display for ExposedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config file {} holds a secret key and is readable by group or others (mode {:04o}); run `chmod 600 {}` or move the key to systemd credentials",
            self.path.display(),
            self.mode & 0o7777,
            self.path.display()
        )
    }
}

/// Whether `path` is readable by group or others (`mode & 0o077`). Returns
/// `None` when it is private or its metadata cannot be read.
pub fn exposed_secret_file(path: &Path) -> Option<ExposedSecret> {
    let access = crate::private_files::group_or_other_access(path)?;
    Some(ExposedSecret {
        path: access.path,
        mode: access.mode,
    })
}

/// A `download_dir` that others may read or list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposedDownloadDir {
    /// The directory.
    pub path: PathBuf,
    /// Its permission bits (`0o755`).
    pub mode: u32,
    /// Whether the config asks for group-readable backups (then 0750 is
    /// the fix, else 0700).
    pub group_readable: bool,
}

impl fmt::Display for ExposedDownloadDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (fix, other) = if self.group_readable {
            ("0750", "`chmod 0700` for owner only")
        } else {
            ("0700", "`chmod 0750` to let its group read")
        };
        write!(
            f,
            "download_dir {} is readable or listable by others (mode {:04o}), so any local user may read the backups in it; run `chmod {fix} {}` (or {other})",
            self.path.display(),
            self.mode & 0o7777,
            self.path.display()
        )
    }
}
