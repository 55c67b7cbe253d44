//! The validate stage: turns the [`RawConfig`] into a typed [`Config`],
//! applying defaults and cross-field rules, and collecting every problem
//! (with its line, key and fix) instead of stopping at the first.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use chrono::FixedOffset;
use toml::Spanned;
use url::Url;

use super::raw::{self, LineIndex, RawConfig, RawRetention, RawSchedule, RawTransfer, TableLines};
use super::units::{format_size, parse_bandwidth, parse_offset, parse_size, parse_time_of_day};
use super::{
    ApiConfig, Config, ConfigError, InstanceConfig, Problem, Schedule, ScheduleWhen,
    StaticCredentials, TransferConfig,
};
use crate::duration::{format_duration, parse_duration};
use crate::model::{BackupKind, Network, Service};
use crate::retention::{Policy, CHINA_STANDARD_TIME};
use tcbackup_signing::secret::Secret;
use tcbackup_signing::service::Site;

const DEFAULT_LOOKBACK: Duration = Duration::from_secs(7 * 86_400);
const DEFAULT_PARTIAL_GRACE: Duration = Duration::from_secs(7 * 86_400);
const MAX_CONCURRENCY: i64 = 64;
const MAX_SEGMENTS: i64 = 16;
const MAX_URL_LIFETIME_HOURS: i64 = 36;
const MIN_SEGMENT_THRESHOLD: u64 = 1 << 20;
/// The shortest `[schedule] interval` an operator may set. A cycle lists
/// every instance's backups, so anything shorter only spends API quota;
/// the daemon's own tests run hours in virtual time instead of needing
/// seconds here.
const MIN_INTERVAL: Duration = Duration::from_secs(60);
const RETENTION_KEYS: &str = "keep_last, keep_daily, keep_weekly, keep_monthly, keep_within";

/// Parse `text` (the file `path`) and validate it.
pub(super) fn parse_and_validate(
    text: &str,
    path: &Path,
    cwd: Option<&Path>,
) -> Result<Config, ConfigError> {
    let lines = LineIndex::new(text);
    let invalid = |mut problems: Vec<Problem>| {
        problems.sort_by_key(|problem| problem.line.unwrap_or(0));
        ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        }
    };
    let document = match toml_edit::ImDocument::parse(text.to_string()) {
        Ok(document) => document,
        Err(err) => {
            return Err(invalid(vec![Problem::new(
                lines.line_of(err.span()),
                "",
                format!("not valid TOML: {}", err.message().trim_end()),
            )]))
        }
    };
    let mut problems = Vec::new();
    let mut table = document.into_table();
    let table_lines = raw::lint(&mut table, &lines, &mut problems);
    let raw: RawConfig = match toml_edit::de::from_document(toml_edit::DocumentMut::from(table)) {
        Ok(raw) => raw,
        Err(err) => {
            // The lint removed every key serde could refuse; this is a
            // safety net that still names the place.
            problems.push(Problem::new(
                lines.line_of(err.span()),
                "",
                err.message().trim_end().to_string(),
            ));
            return Err(invalid(problems));
        }
    };
    let mut validator = Validator {
        lines: &lines,
        table_lines: &table_lines,
        cwd,
        problems,
        warnings: Vec::new(),
    };
    let config = validator.config(&raw, path);
    if validator.problems.is_empty() {
        Ok(Config {
            warnings: validator.warnings,
            ..config
        })
    } else {
        Err(invalid(validator.problems))
    }
}

/// Where a key lives, for messages: its table's title and path.
#[derive(Clone, Copy)]
struct Place<'a> {
    /// `[transfer]`, `[[redis]]`, or empty for the top level.
    title: &'a str,
    /// `transfer`, `redis[0]`, or empty for the top level.
    path: &'a str,
}

impl Place<'_> {
    const TOP: Place<'static> = Place {
        title: "",
        path: "",
    };

    /// "`key` in \[table\]" (or "`key`" at the top level).
    fn name(&self, key: &str) -> String {
        if self.title.is_empty() {
            format!("`{key}`")
        } else {
            format!("`{key}` in {}", self.title)
        }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

struct Validator<'a> {
    lines: &'a LineIndex,
    table_lines: &'a TableLines,
    cwd: Option<&'a Path>,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Validator<'_> {
    fn line<T>(&self, value: &Spanned<T>) -> Option<usize> {
        Some(self.lines.line(value.span().start))
    }

    fn error<T>(&mut self, at: &Spanned<T>, place: Place<'_>, key: &str, message: String) {
        let line = self.line(at);
        self.problems
            .push(Problem::new(line, place.key_path(key), message));
    }

    fn error_at(&mut self, line: Option<usize>, key: impl Into<String>, message: String) {
        self.problems.push(Problem::new(line, key, message));
    }

    fn warn(&mut self, line: Option<usize>, key: impl Into<String>, message: String) {
        self.warnings.push(Problem::new(line, key, message));
    }

    fn config(&mut self, raw: &RawConfig, path: &Path) -> Config {
        let download_dir = match &raw.download_dir {
            Some(value) => self.local_path(value, Place::TOP, "download_dir"),
            None if self.table_lines.removed_meant("", "download_dir") => PathBuf::new(),
            None => {
                self.error_at(
                    None,
                    "download_dir",
                    "missing required key `download_dir` (where backups are copied to); add e.g. download_dir = \"/var/lib/tcbackup\" at the top of the file".to_string(),
                );
                PathBuf::new()
            }
        };
        let lookback = self.duration(
            &raw.lookback,
            Place::TOP,
            "lookback",
            DEFAULT_LOOKBACK,
            Duration::from_secs(1),
        );
        let partial_grace = self.duration(
            &raw.partial_grace,
            Place::TOP,
            "partial_grace",
            DEFAULT_PARTIAL_GRACE,
            Duration::ZERO,
        );
        let time_zone = self.time_zone(&raw.time_zone);
        let metrics_file = raw.metrics_file.as_ref().map(|value| {
            let file = self.local_path(value, Place::TOP, "metrics_file");
            if !download_dir.as_os_str().is_empty() && file.starts_with(&download_dir) {
                self.error(
                    value,
                    Place::TOP,
                    "metrics_file",
                    "`metrics_file` must lie outside `download_dir`, which holds only published backups".to_string(),
                );
            }
            file
        });
        let healthcheck_url = raw
            .healthcheck_url
            .as_ref()
            .and_then(|value| self.http_url(value, Place::TOP, "healthcheck_url", false));
        let group_readable = raw
            .group_readable
            .as_ref()
            .is_some_and(|value| *value.get_ref());
        let api = self.api(raw);
        let credentials = self.credentials(raw);
        let transfer = self.transfer(&raw.transfer);
        let schedule = self.schedule(raw.schedule.as_ref());
        let stale_after = self.duration(
            &raw.stale_after,
            Place::TOP,
            "stale_after",
            schedule.period() * 2,
            Duration::from_secs(1),
        );
        let retention = raw.retention.as_ref().and_then(|retention| {
            self.policy(
                retention,
                Place {
                    title: "[retention]",
                    path: "retention",
                },
                time_zone,
            )
        });
        let instances = self.instances(
            raw,
            &api,
            raw.retention.is_some(),
            retention.as_ref(),
            time_zone,
            transfer.network,
        );
        Config {
            source: path.to_path_buf(),
            download_dir,
            lookback,
            time_zone,
            partial_grace,
            metrics_file,
            healthcheck_url,
            group_readable,
            stale_after,
            api,
            credentials,
            transfer,
            schedule,
            retention,
            instances,
            warnings: Vec::new(),
        }
    }

    /// A local path: absolute as written, or relative resolved against the
    /// current directory (with a warning). Nothing on disk is touched.
    fn local_path(&mut self, value: &Spanned<String>, place: Place<'_>, key: &str) -> PathBuf {
        let text = value.get_ref();
        if text.trim().is_empty() {
            self.error(
                value,
                place,
                key,
                format!("{} is empty; give an absolute path", place.name(key)),
            );
            return PathBuf::new();
        }
        if text.starts_with('~') {
            self.error(
                value,
                place,
                key,
                format!(
                    "{} starts with `~`, which is not expanded; write the full path",
                    place.name(key)
                ),
            );
            return PathBuf::new();
        }
        let path = Path::new(text);
        if path.is_absolute() {
            return normalize(path);
        }
        match self.cwd {
            Some(cwd) => {
                let resolved = normalize(&cwd.join(path));
                self.warn(
                    self.line(value),
                    place.key_path(key),
                    format!(
                        "relative {} {text:?} is resolved against the current directory: {}; use an absolute path for a service",
                        place.name(key),
                        resolved.display()
                    ),
                );
                resolved
            }
            None => {
                self.error(
                    value,
                    place,
                    key,
                    format!(
                        "{} must be an absolute path, found {text:?}",
                        place.name(key)
                    ),
                );
                PathBuf::new()
            }
        }
    }

    fn duration(
        &mut self,
        value: &Option<Spanned<String>>,
        place: Place<'_>,
        key: &str,
        default: Duration,
        minimum: Duration,
    ) -> Duration {
        self.at_least(value, place, key, minimum, parse_duration, format_duration)
            .unwrap_or(default)
    }

    fn size(
        &mut self,
        value: &Option<Spanned<String>>,
        place: Place<'_>,
        key: &str,
        default: u64,
        minimum: u64,
    ) -> u64 {
        self.at_least(value, place, key, minimum, parse_size, format_size)
            .unwrap_or(default)
    }

    /// A value written as text (a duration, a size) that must be at least
    /// `minimum`; `None` when absent, and after reporting a bad or too small
    /// one (the caller then uses its default).
    fn at_least<T: Copy + PartialOrd, E: std::fmt::Display>(
        &mut self,
        value: &Option<Spanned<String>>,
        place: Place<'_>,
        key: &str,
        minimum: T,
        parse: impl Fn(&str) -> Result<T, E>,
        show: impl Fn(T) -> String,
    ) -> Option<T> {
        let value = value.as_ref()?;
        match parse(value.get_ref()) {
            Ok(parsed) if parsed < minimum => {
                self.error(
                    value,
                    place,
                    key,
                    format!(
                        "{} must be at least {}, found {:?}",
                        place.name(key),
                        show(minimum),
                        value.get_ref()
                    ),
                );
                None
            }
            Ok(parsed) => Some(parsed),
            Err(err) => {
                self.error(value, place, key, format!("bad {}: {err}", place.name(key)));
                None
            }
        }
    }

    fn integer_in(
        &mut self,
        value: &Option<Spanned<i64>>,
        place: Place<'_>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        why: &str,
    ) -> Option<i64> {
        let value = value.as_ref()?;
        let number = *value.get_ref();
        if range.contains(&number) {
            Some(number)
        } else {
            self.error(
                value,
                place,
                key,
                format!(
                    "{} must be between {} and {}{why}, found {number}",
                    place.name(key),
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }

    fn time_zone(&mut self, value: &Option<Spanned<String>>) -> FixedOffset {
        let default = CHINA_STANDARD_TIME;
        let Some(value) = value else {
            return default;
        };
        match parse_offset(value.get_ref()) {
            Ok(offset) => offset,
            Err(err) => {
                self.error(
                    value,
                    Place::TOP,
                    "time_zone",
                    format!("bad `time_zone`: {err}"),
                );
                default
            }
        }
    }

    /// An http(s) URL. `echo` says whether the value may appear in messages
    /// (a healthcheck URL carries its check's secret uuid).
    fn http_url(
        &mut self,
        value: &Spanned<String>,
        place: Place<'_>,
        key: &str,
        echo: bool,
    ) -> Option<Url> {
        let shown = if echo {
            format!(" {:?}", value.get_ref())
        } else {
            String::new()
        };
        let url = match Url::parse(value.get_ref().trim()) {
            Ok(url) => url,
            Err(err) => {
                self.error(
                    value,
                    place,
                    key,
                    format!(
                        "{}{shown} is not a URL ({err}); write it like \"https://host:port/path\"",
                        place.name(key)
                    ),
                );
                return None;
            }
        };
        let problem = if !matches!(url.scheme(), "http" | "https") {
            Some(format!("must use http or https, not `{}`", url.scheme()))
        } else if url.host_str().is_none_or(str::is_empty) {
            Some("has no host".to_string())
        } else if key != "healthcheck_url" && (url.query().is_some() || url.fragment().is_some()) {
            Some("must be a base URL without `?query` or `#fragment`".to_string())
        } else {
            None
        };
        match problem {
            Some(problem) => {
                self.error(
                    value,
                    place,
                    key,
                    format!("{}{shown} {problem}", place.name(key)),
                );
                None
            }
            None => Some(url),
        }
    }

    /// `site = "china" | "intl"`; anything else is an error naming both.
    fn site(&mut self, value: &Spanned<String>, place: Place<'_>) -> Site {
        if let Some(site) = Site::from_name(value.get_ref()) {
            return site;
        }
        let accepted = Site::ALL
            .iter()
            .map(|site| format!("\"{site}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        self.error(
            value,
            place,
            "site",
            format!(
                "{} {:?} is not a site; write {accepted} (\"china\" calls <service>.tencentcloudapi.com, \"intl\" <service>.intl.tencentcloudapi.com)",
                place.name("site"),
                value.get_ref()
            ),
        );
        Site::default()
    }

    /// `network = "public" | "intranet"`; anything else is an error naming both.
    fn network(&mut self, value: &Spanned<String>, place: Place<'_>) -> Network {
        if let Some(network) = Network::from_name(value.get_ref()) {
            return network;
        }
        self.error(
            value,
            place,
            "network",
            format!(
                "{} {:?} is not a network; write \"public\" (download over the internet) or \"intranet\" (InnerDownloadUrl, only from inside Tencent Cloud)",
                place.name("network"),
                value.get_ref()
            ),
        );
        Network::default()
    }

    fn region(&mut self, value: &Spanned<String>, place: Place<'_>) -> Option<String> {
        let region = value.get_ref().trim();
        let valid = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Some(region.to_string())
        } else {
            self.error(
                value,
                place,
                "region",
                format!(
                    "{} {:?} is not a region name; write it like \"ap-guangzhou\"",
                    place.name("region"),
                    value.get_ref()
                ),
            );
            None
        }
    }

    fn api(&mut self, raw: &RawConfig) -> ApiConfig {
        let place = Place {
            title: "[api]",
            path: "api",
        };
        let api = &raw.api;
        ApiConfig {
            endpoint: api
                .endpoint
                .as_ref()
                .and_then(|value| self.http_url(value, place, "endpoint", true)),
            site: api
                .site
                .as_ref()
                .map_or(Site::default(), |value| self.site(value, place)),
            allow_http_downloads: api
                .allow_http_downloads
                .as_ref()
                .is_some_and(|value| *value.get_ref()),
            region: api
                .region
                .as_ref()
                .and_then(|value| self.region(value, place)),
            metadata_url: api
                .metadata_url
                .as_ref()
                .and_then(|value| self.http_url(value, place, "metadata_url", true)),
        }
    }

    fn credentials(&mut self, raw: &RawConfig) -> Option<StaticCredentials> {
        let credentials = raw.credentials.as_ref()?;
        let place = Place {
            title: "[credentials]",
            path: "credentials",
        };
        let table_line = self.table_lines.get("credentials");
        let mut usable = true;
        for (key, value) in [
            ("secret_id", &credentials.secret_id),
            ("secret_key", &credentials.secret_key),
            ("token", &credentials.token),
        ] {
            let Some(value) = value else { continue };
            // The values are never echoed: the key and token are secrets.
            let text = value.get_ref();
            if text.is_empty() {
                self.error(value, place, key, format!("{} is empty", place.name(key)));
                usable = false;
            } else if text.trim() != text {
                self.error(
                    value,
                    place,
                    key,
                    format!(
                        "{} has leading or trailing whitespace (a copy-paste slip?)",
                        place.name(key)
                    ),
                );
                usable = false;
            }
        }
        match (&credentials.secret_id, &credentials.secret_key) {
            (Some(secret_id), Some(secret_key)) if usable => Some(StaticCredentials {
                secret_id: secret_id.get_ref().clone(),
                secret_key: Secret::new(secret_key.get_ref().clone()),
                token: credentials
                    .token
                    .as_ref()
                    .map(|token| Secret::new(token.get_ref().clone())),
            }),
            (Some(_), Some(_)) => None,
            (Some(_), None) => {
                self.error_at(
                    table_line,
                    "credentials.secret_key",
                    "[credentials] has `secret_id` but no `secret_key`; set both, or remove the table to use systemd credentials, the environment, the profile file or the instance role".to_string(),
                );
                None
            }
            (None, Some(_)) => {
                self.error_at(
                    table_line,
                    "credentials.secret_id",
                    "[credentials] has `secret_key` but no `secret_id`; set both, or remove the table to use systemd credentials, the environment, the profile file or the instance role".to_string(),
                );
                None
            }
            (None, None) => {
                if credentials.token.is_some() {
                    self.error_at(
                        table_line,
                        "credentials.token",
                        "[credentials] has a `token` but no `secret_id` and `secret_key`; a token only completes a temporary key pair".to_string(),
                    );
                }
                None
            }
        }
    }

    fn transfer(&mut self, raw: &RawTransfer) -> TransferConfig {
        let place = Place {
            title: "[transfer]",
            path: "transfer",
        };
        let defaults = TransferConfig::default();
        let concurrency = self
            .integer_in(
                &raw.concurrency,
                place,
                "concurrency",
                1..=MAX_CONCURRENCY,
                "",
            )
            .and_then(|n| usize::try_from(n).ok())
            .and_then(NonZeroUsize::new)
            .unwrap_or(defaults.concurrency);
        let segments = self
            .integer_in(&raw.segments, place, "segments", 1..=MAX_SEGMENTS, "")
            .and_then(|n| usize::try_from(n).ok())
            .and_then(NonZeroUsize::new)
            .unwrap_or(defaults.segments);
        let url_lifetime_hours = self
            .integer_in(
                &raw.url_lifetime_hours,
                place,
                "url_lifetime_hours",
                1..=MAX_URL_LIFETIME_HOURS,
                " (the PostgreSQL API's limit)",
            )
            .and_then(|n| u8::try_from(n).ok())
            .unwrap_or(defaults.url_lifetime_hours);
        let bandwidth_limit = raw
            .bandwidth_limit
            .as_ref()
            .and_then(|value| match parse_bandwidth(value.get_ref()) {
                Ok(bytes_per_second) => Some(bytes_per_second),
                Err(err) => {
                    self.error(
                        value,
                        place,
                        "bandwidth_limit",
                        format!("bad {}: {err}", place.name("bandwidth_limit")),
                    );
                    None
                }
            });
        TransferConfig {
            concurrency,
            bandwidth_limit,
            segments,
            segment_threshold: self.size(
                &raw.segment_threshold,
                place,
                "segment_threshold",
                defaults.segment_threshold,
                MIN_SEGMENT_THRESHOLD,
            ),
            url_lifetime_hours,
            free_space_margin: self.size(
                &raw.free_space_margin,
                place,
                "free_space_margin",
                defaults.free_space_margin,
                0,
            ),
            idle_timeout: self.duration(
                &raw.idle_timeout,
                place,
                "idle_timeout",
                defaults.idle_timeout,
                Duration::from_secs(1),
            ),
            network: raw
                .network
                .as_ref()
                .map_or(defaults.network, |value| self.network(value, place)),
        }
    }

    fn schedule(&mut self, raw: Option<&RawSchedule>) -> Schedule {
        let defaults = Schedule::default();
        let Some(raw) = raw else {
            return defaults;
        };
        let place = Place {
            title: "[schedule]",
            path: "schedule",
        };
        let when = match (&raw.interval, &raw.daily_at) {
            (Some(_), Some(daily_at)) => {
                self.error(
                    daily_at,
                    place,
                    "daily_at",
                    "[schedule] sets both `interval` and `daily_at`; keep one of them".to_string(),
                );
                defaults.when
            }
            (Some(_), None) => {
                let default_interval = match defaults.when {
                    ScheduleWhen::Every(interval) => interval,
                    ScheduleWhen::DailyAt(_) => MIN_INTERVAL,
                };
                let interval = self.duration(
                    &raw.interval,
                    place,
                    "interval",
                    default_interval,
                    MIN_INTERVAL,
                );
                ScheduleWhen::Every(interval)
            }
            (None, Some(daily_at)) => match parse_time_of_day(daily_at.get_ref()) {
                Ok(time) => ScheduleWhen::DailyAt(time),
                Err(err) => {
                    self.error(
                        daily_at,
                        place,
                        "daily_at",
                        format!("bad {}: {err}", place.name("daily_at")),
                    );
                    defaults.when
                }
            },
            (None, None) => defaults.when,
        };
        let jitter = self.duration(
            &raw.jitter,
            place,
            "jitter",
            defaults.jitter,
            Duration::ZERO,
        );
        let period = Schedule { when, jitter }.period();
        if let Some(value) = &raw.jitter {
            if jitter >= period {
                self.error(
                    value,
                    place,
                    "jitter",
                    format!(
                        "`jitter` in [schedule] ({}) must be shorter than the time between runs ({})",
                        format_duration(jitter),
                        format_duration(period)
                    ),
                );
            }
        }
        Schedule { when, jitter }
    }

    /// A retention table as a policy; `None` (with an error) when it is
    /// empty or a value is bad.
    fn policy(
        &mut self,
        raw: &RawRetention,
        place: Place<'_>,
        time_zone: FixedOffset,
    ) -> Option<Policy> {
        let problems_before = self.problems.len();
        let keep_last = self.keep_count(&raw.keep_last, place, "keep_last");
        let keep_daily = self.keep_count(&raw.keep_daily, place, "keep_daily");
        let keep_weekly = self.keep_count(&raw.keep_weekly, place, "keep_weekly");
        let keep_monthly = self.keep_count(&raw.keep_monthly, place, "keep_monthly");
        let keep_within = self.keep_within(&raw.keep_within, place);
        let ok = self.problems.len() == problems_before;
        let written_empty = raw.keep_last.is_none()
            && raw.keep_daily.is_none()
            && raw.keep_weekly.is_none()
            && raw.keep_monthly.is_none()
            && raw.keep_within.is_none();
        if written_empty && self.table_lines.removed_any(place.path) {
            // The lint already reported the keys that were meant as rules.
            return None;
        }
        if written_empty {
            self.error_at(
                self.table_lines.get(place.path),
                place.path.to_string(),
                format!(
                    "{} has no keep rule, so retention would not know what to keep; add at least one of {RETENTION_KEYS} (e.g. keep_last = 7)",
                    place.title
                ),
            );
            return None;
        }
        ok.then_some(Policy {
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_within,
            keep_manual: raw
                .keep_manual
                .as_ref()
                .is_some_and(|value| *value.get_ref()),
            time_zone,
        })
    }

    /// A `keep_*` count: a positive integer (0 would silently keep nothing).
    fn keep_count(
        &mut self,
        value: &Option<Spanned<i64>>,
        place: Place<'_>,
        key: &str,
    ) -> Option<u32> {
        let value = value.as_ref()?;
        let number = *value.get_ref();
        let message = match u32::try_from(number) {
            Ok(0) => format!(
                "{} = 0 keeps nothing by this rule; remove the key or use at least 1",
                place.name(key)
            ),
            Ok(count) => return Some(count),
            Err(_) if number < 0 => format!(
                "{} must be a positive count, found {number}",
                place.name(key)
            ),
            Err(_) => format!("{} is too large, found {number}", place.name(key)),
        };
        self.error(value, place, key, message);
        None
    }

    /// `keep_within`: a non-zero duration.
    fn keep_within(
        &mut self,
        value: &Option<Spanned<String>>,
        place: Place<'_>,
    ) -> Option<Duration> {
        let value = value.as_ref()?;
        let message = match parse_duration(value.get_ref()) {
            Ok(duration) if !duration.is_zero() => return Some(duration),
            Ok(_) => format!(
                "{} = {:?} keeps nothing by this rule; remove the key or give a window like \"14d\"",
                place.name("keep_within"),
                value.get_ref()
            ),
            Err(err) => format!("bad {}: {err}", place.name("keep_within")),
        };
        self.error(value, place, "keep_within", message);
        None
    }

    fn instance_id(
        &mut self,
        value: &Spanned<String>,
        place: Place<'_>,
        service: Service,
        seen: &mut HashMap<String, Option<usize>>,
    ) -> Option<String> {
        let id = value.get_ref().as_str();
        let line = self.line(value);
        if id.is_empty() {
            self.error(
                value,
                place,
                "instance_id",
                format!("{} is empty", place.name("instance_id")),
            );
            return None;
        }
        let plain = !id.starts_with('.')
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !plain {
            self.error(
                value,
                place,
                "instance_id",
                format!(
                    "{} {id:?} may only hold letters, digits, `.`, `_` and `-` and must not start with `.` (it names a directory)",
                    place.name("instance_id")
                ),
            );
            return None;
        }
        if let Some(first_line) = seen.get(id) {
            let first =
                first_line.map_or_else(String::new, |line| format!(" (first at line {line})"));
            self.error(
                value,
                place,
                "instance_id",
                format!("instance `{id}` is configured twice{first}"),
            );
            return None;
        }
        seen.insert(id.to_string(), line);
        let (own, other, other_title) = match service {
            Service::Redis => ("crs-", "postgres-", "[[postgres]]"),
            Service::Postgres => ("postgres-", "crs-", "[[redis]]"),
        };
        if id.starts_with(other) {
            self.error(
                value,
                place,
                "instance_id",
                format!(
                    "instance `{id}` looks like a {} instance (`{other}` prefix) but is listed under {}; move it to {other_title}",
                    match service {
                        Service::Redis => "PostgreSQL",
                        Service::Postgres => "Redis",
                    },
                    place.title
                ),
            );
            return None;
        }
        if !id.starts_with(own) {
            self.warn(
                line,
                place.key_path("instance_id"),
                format!(
                    "instance `{id}` under {} does not start with `{own}` like Tencent Cloud's {service} ids; check the id",
                    place.title
                ),
            );
        }
        Some(id.to_string())
    }

    fn backup_kinds(
        &mut self,
        value: &Option<Spanned<Vec<Spanned<String>>>>,
        place: Place<'_>,
    ) -> Vec<BackupKind> {
        let Some(value) = value else {
            return vec![BackupKind::PgBase, BackupKind::PgLog];
        };
        if value.get_ref().is_empty() {
            self.error(
                value,
                place,
                "backup_types",
                "`backup_types` in [[postgres]] is empty; use [\"base\", \"log\"], [\"base\"] or [\"log\"]".to_string(),
            );
            return Vec::new();
        }
        let mut kinds = Vec::new();
        for item in value.get_ref() {
            let kind = match item.get_ref().as_str() {
                "base" => BackupKind::PgBase,
                "log" => BackupKind::PgLog,
                other => {
                    self.error(
                        item,
                        place,
                        "backup_types",
                        format!("unknown backup type {other:?} in `backup_types`; expected \"base\" or \"log\""),
                    );
                    continue;
                }
            };
            if kinds.contains(&kind) {
                self.error(
                    item,
                    place,
                    "backup_types",
                    format!(
                        "backup type {:?} is listed twice in `backup_types`",
                        item.get_ref()
                    ),
                );
                continue;
            }
            kinds.push(kind);
        }
        kinds.sort();
        kinds
    }

    fn instances(
        &mut self,
        raw: &RawConfig,
        api: &ApiConfig,
        has_global_table: bool,
        global: Option<&Policy>,
        time_zone: FixedOffset,
        default_network: Network,
    ) -> Vec<InstanceConfig> {
        struct Entry<'r> {
            service: Service,
            index: usize,
            instance_id: &'r Option<Spanned<String>>,
            region: &'r Option<Spanned<String>>,
            network: &'r Option<Spanned<String>>,
            retention: Option<&'r RawRetention>,
            backup_types: Option<&'r Option<Spanned<Vec<Spanned<String>>>>>,
        }
        let entries = raw
            .redis
            .iter()
            .enumerate()
            .map(|(index, redis)| Entry {
                service: Service::Redis,
                index,
                instance_id: &redis.instance_id,
                region: &redis.region,
                network: &redis.network,
                retention: redis.retention.as_ref(),
                backup_types: None,
            })
            .chain(
                raw.postgres
                    .iter()
                    .enumerate()
                    .map(|(index, postgres)| Entry {
                        service: Service::Postgres,
                        index,
                        instance_id: &postgres.instance_id,
                        region: &postgres.region,
                        network: &postgres.network,
                        retention: postgres.retention.as_ref(),
                        backup_types: Some(&postgres.backup_types),
                    }),
            );
        let mut seen = HashMap::new();
        let mut instances = Vec::new();
        let mut without_policy = Vec::new();
        for entry in entries {
            let (title, name) = match entry.service {
                Service::Redis => ("[[redis]]", "redis"),
                Service::Postgres => ("[[postgres]]", "postgres"),
            };
            let path = format!("{name}[{}]", entry.index);
            let place = Place { title, path: &path };
            let table_line = self.table_lines.get(&path);
            let instance_id = match entry.instance_id {
                Some(value) => self.instance_id(value, place, entry.service, &mut seen),
                None if self.table_lines.removed_meant(&path, "instance_id") => None,
                None => {
                    self.error_at(
                        table_line,
                        place.key_path("instance_id"),
                        format!(
                            "{title} table without `instance_id`; add e.g. instance_id = \"{}\"",
                            match entry.service {
                                Service::Redis => "crs-4y9t57vt",
                                Service::Postgres => "postgres-oamgybor",
                            }
                        ),
                    );
                    None
                }
            };
            let shown_id = instance_id.clone().unwrap_or_else(|| "?".to_string());
            let region = match entry.region {
                Some(value) => self.region(value, place),
                None => match &api.region {
                    Some(region) => Some(region.clone()),
                    None if self.table_lines.removed_meant(&path, "region") => None,
                    None => {
                        self.error_at(
                            table_line,
                            place.key_path("region"),
                            format!("no region for instance `{shown_id}`: set `region` in this {title} table or a default `region` in [api]"),
                        );
                        None
                    }
                },
            };
            let network = entry
                .network
                .as_ref()
                .map_or(default_network, |value| self.network(value, place));
            let kinds = match entry.backup_types {
                None => vec![BackupKind::Redis],
                Some(types) => {
                    let kinds = self.backup_kinds(types, place);
                    if kinds == [BackupKind::PgLog] {
                        self.warn(
                            table_line,
                            place.key_path("backup_types"),
                            format!("instance `{shown_id}` fetches log backups without base backups, so its log backups are never pruned (logs follow the oldest kept base backup)"),
                        );
                    }
                    kinds
                }
            };
            let retention_path = format!("{path}.retention");
            let retention_title = format!("[{name}.retention] of `{shown_id}`");
            let retention = match entry.retention {
                Some(own) => self.policy(
                    own,
                    Place {
                        title: &retention_title,
                        path: &retention_path,
                    },
                    time_zone,
                ),
                None => {
                    if !has_global_table {
                        without_policy.push(shown_id.clone());
                    }
                    global.cloned()
                }
            };
            if let (Some(instance_id), Some(region), Some(retention)) =
                (instance_id, region, retention)
            {
                if !kinds.is_empty() {
                    instances.push(InstanceConfig {
                        instance_id,
                        service: entry.service,
                        region,
                        network,
                        kinds,
                        retention,
                    });
                }
            }
        }
        if raw.redis.is_empty() && raw.postgres.is_empty() {
            self.error_at(
                None,
                "redis",
                "no instance configured; add a [[redis]] or [[postgres]] table with an instance_id"
                    .to_string(),
            );
        }
        if !without_policy.is_empty() && !self.table_lines.removed_meant("", "retention") {
            let ids = without_policy
                .iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let (noun, verb) = if without_policy.len() == 1 {
                ("instance", "has")
            } else {
                ("instances", "have")
            };
            self.error_at(
                None,
                "retention",
                format!(
                    "no [retention] table, and {noun} {ids} {verb} no retention table of {}; add [retention] with at least one of {RETENTION_KEYS} (e.g. keep_last = 7)",
                    if without_policy.len() == 1 { "its own" } else { "their own" }
                ),
            );
        }
        instances
    }
}

/// Remove `.` components and trailing slashes; `..` is kept as written
/// (resolving it lexically could change what a symlinked path means).
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|component| !matches!(component, Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests;
