//! `tcbackup status [--json]`: per configured instance, the newest local
//! set and its age, the last cycle's result (from the metrics file) and the
//! next scheduled run, read from disk without calling the API. Exit 0 when
//! every instance is fresh, 1 when any is not, so it serves as a
//! Nagios/Icinga check.
//!
//! An instance is *not fresh* when it has no published set, when its newest
//! set started longer than `stale_after` ago, or when the metrics file says
//! its last cycle failed (a failing pull is worth a look before its sets go
//! stale). Without a `metrics_file` the last cycle is unknown and only the
//! age decides.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::context;
use tcbackup_core::config::{Config, InstanceConfig};
use tcbackup_core::exit::Exit;
use tcbackup_core::service::metrics::{self, LastRun};
use tcbackup_core::store::{LocalSet, Store};

/// `tcbackup status [--json]`.
pub async fn status(config: Config, json: bool) -> Exit {
    let now = context::system_clock().now();
    let store = Store::open(config.download_dir.clone(), context::system_clock());
    let runs = match config.metrics_file.as_deref() {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => metrics::read_last_runs(&text),
            // No cycle has written it yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => {
                eprintln!("tcbackup: cannot read {}: {e}", path.display());
                Default::default()
            }
        },
        None => Default::default(),
    };
    let mut report = Report {
        now: now.to_rfc3339(),
        stale_after_seconds: config.stale_after.as_secs(),
        fresh: true,
        instances: Vec::new(),
    };
    for instance in &config.instances {
        let newest = match store.list_sets(&instance.instance_id) {
            Ok(listing) => listing
                .sets
                .into_iter()
                .max_by_key(|set| set.manifest.start),
            Err(e) => {
                eprintln!("{}: {e}", instance.instance_id);
                None
            }
        };
        let status = assess(
            instance,
            newest.as_ref().map(|set| NewestSet::of(set, now)),
            runs.get(&instance.instance_id),
            &config,
            now,
        );
        report.fresh &= status.fresh;
        report.instances.push(status);
    }
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => crate::outln!("{text}"),
            Err(e) => {
                eprintln!("tcbackup: cannot encode the status: {e}");
                return Exit::Failed;
            }
        }
    } else {
        for line in report.lines() {
            crate::outln!("{line}");
        }
    }
    if report.fresh {
        Exit::Ok
    } else {
        Exit::Failed
    }
}

/// The whole answer, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    /// When it was taken (RFC 3339).
    now: String,
    /// `stale_after` in seconds.
    stale_after_seconds: u64,
    /// Whether every instance is fresh (the exit code).
    fresh: bool,
    instances: Vec<InstanceStatus>,
}

impl Report {
    /// One line per instance for a terminal.
    fn lines(&self) -> Vec<String> {
        self.instances.iter().map(InstanceStatus::line).collect()
    }
}

/// One instance's state.
#[derive(Debug, Serialize, PartialEq)]
struct InstanceStatus {
    instance_id: String,
    service: String,
    /// The newest published set, if any.
    newest_set: Option<NewestSet>,
    /// The last cycle, when the metrics file records one.
    last_cycle: Option<LastCycle>,
    /// When the daemon's next run is due (before its jitter), if known.
    next_run: Option<String>,
    /// Whether that time has passed: no daemon ran the cycle it planned.
    next_run_overdue: bool,
    /// Whether all is well (see the module doc).
    fresh: bool,
    /// Why not, when not.
    problem: Option<String>,
}

/// The newest published set of an instance.
#[derive(Debug, Serialize, PartialEq)]
struct NewestSet {
    /// Its directory.
    dir: String,
    kind: String,
    backup_id: String,
    /// When the backup started (RFC 3339).
    start: String,
    /// Seconds from its start to now.
    age_seconds: i64,
}

impl NewestSet {
    /// `set` as seen at `now`.
    fn of(set: &LocalSet, now: DateTime<Utc>) -> Self {
        NewestSet {
            dir: set.dir.display().to_string(),
            kind: set.manifest.kind.as_str().to_string(),
            backup_id: set.manifest.backup_id.clone(),
            start: set.manifest.start.to_rfc3339(),
            age_seconds: (now - set.manifest.start).num_seconds().max(0),
        }
    }
}

/// The last cycle for an instance.
#[derive(Debug, Serialize, PartialEq)]
struct LastCycle {
    /// When it started (RFC 3339).
    at: String,
    /// Whether the instance's pull succeeded.
    ok: bool,
    /// When it last succeeded, if ever (RFC 3339).
    last_success: Option<String>,
}

/// The state of `instance` at `now`, from its newest set and last cycle.
fn assess(
    instance: &InstanceConfig,
    newest_set: Option<NewestSet>,
    last_run: Option<&LastRun>,
    config: &Config,
    now: DateTime<Utc>,
) -> InstanceStatus {
    let unix = |t: i64| DateTime::<Utc>::from_timestamp(t, 0);
    let last_cycle = last_run.and_then(|run| {
        Some(LastCycle {
            at: unix(run.at_unix)?.to_rfc3339(),
            ok: run.ok,
            last_success: run.last_success_unix.and_then(unix).map(|t| t.to_rfc3339()),
        })
    });
    let last_start = last_run.and_then(|run| unix(run.at_unix));
    // No file records the daemon's plan: the next run follows from the
    // schedule and the last start (`None` for an interval and no start).
    let next = config
        .schedule
        .next_after(config.time_zone, last_start, now);
    let stale_after = config.stale_after.as_secs();
    let problem = match (&newest_set, last_run) {
        (None, _) => Some("no backup set on disk".to_string()),
        (Some(set), _) if set.age_seconds.unsigned_abs() > stale_after => Some(format!(
            "newest set is {} old, more than stale_after ({})",
            age(set.age_seconds),
            age(i64::try_from(stale_after).unwrap_or(i64::MAX))
        )),
        (Some(_), Some(run)) if !run.ok => Some("the last cycle failed".to_string()),
        (Some(_), _) => None,
    };
    InstanceStatus {
        instance_id: instance.instance_id.clone(),
        service: instance.service.to_string(),
        newest_set,
        last_cycle,
        next_run: next.map(|t| t.to_rfc3339()),
        next_run_overdue: next.is_some_and(|t| t < now),
        fresh: problem.is_none(),
        problem,
    }
}

impl InstanceStatus {
    /// `crs-1 (redis): OK, newest 2026-… (3h 5m old), last cycle ok at …, next run …`.
    fn line(&self) -> String {
        let verdict = match &self.problem {
            None => "OK".to_string(),
            Some(problem) => format!("NOT FRESH: {problem}"),
        };
        let newest = match &self.newest_set {
            Some(set) => format!(
                "newest {} {} ({} old)",
                set.kind,
                short_time(&set.start),
                age(set.age_seconds)
            ),
            None => "no set".to_string(),
        };
        let last = match &self.last_cycle {
            Some(c) => format!(
                "last cycle {} at {}",
                if c.ok { "ok" } else { "FAILED" },
                short_time(&c.at)
            ),
            None => "last cycle unknown".to_string(),
        };
        let next = match &self.next_run {
            Some(t) if self.next_run_overdue => format!(
                "next run was due {} (overdue: is the daemon running?)",
                short_time(t)
            ),
            Some(t) => format!("next run {}", short_time(t)),
            None => "next run unknown".to_string(),
        };
        format!(
            "{} ({}): {verdict}; {newest}; {last}; {next}",
            self.instance_id, self.service
        )
    }
}

/// An RFC 3339 time cut to the minute, with its offset: `2026-12-03T20:53+00:00`.
fn short_time(rfc3339: &str) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.format("%Y-%m-%d %H:%M %:z").to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

/// `3d 4h`, `5h 12m`, `7m`, `12s`.
fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CONFIG: &str = "download_dir = \"/srv/tcbackup\"\nstale_after = \"1d\"\n\
        [credentials]\nsecret_id = \"AKIDx\"\nsecret_key = \"y\"\n[retention]\nkeep_last = 7\n\
        [[redis]]\ninstance_id = \"crs-1\"\nregion = \"ap-guangzhou\"\n";

    fn config(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tcbackup.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn run(at_unix: i64, ok: bool) -> LastRun {
        LastRun {
            service: "redis".into(),
            at_unix,
            ok,
            last_success_unix: ok.then_some(at_unix),
        }
    }

    fn set(age_seconds: i64) -> NewestSet {
        NewestSet {
            dir: "/srv/tcbackup/crs-1/x".into(),
            kind: "redis".into(),
            backup_id: "b1".into(),
            start: "2026-12-03T00:00:00+00:00".into(),
            age_seconds,
        }
    }

    #[test]
    fn fresh_and_stale_are_decided_by_stale_after() {
        let config = config(CONFIG);
        let now = at("2026-12-03T12:00:00Z");
        let last = run(at("2026-12-03T10:00:00Z").timestamp(), true);
        let fresh = assess(
            &config.instances[0],
            Some(set(86_400)),
            Some(&last),
            &config,
            now,
        );
        assert!(fresh.fresh, "{fresh:?}");
        assert!(
            fresh.line().starts_with("crs-1 (redis): OK;"),
            "{}",
            fresh.line()
        );
        let stale = assess(
            &config.instances[0],
            Some(set(86_401)),
            Some(&last),
            &config,
            now,
        );
        assert!(!stale.fresh);
        assert_eq!(
            stale.problem.as_deref(),
            Some("newest set is 1d 0h old, more than stale_after (1d 0h)")
        );
        let unknown = assess(&config.instances[0], Some(set(60)), None, &config, now);
        assert!(unknown.fresh, "no metrics file: the age alone decides");
        assert!(unknown.line().contains("last cycle unknown"));
    }

    #[test]
    fn a_fresh_set_with_a_failed_last_cycle_is_not_fresh() {
        let config = config(CONFIG);
        let now = at("2026-12-03T12:00:00Z");
        let last = run(at("2026-12-03T10:00:00Z").timestamp(), false);
        let s = assess(
            &config.instances[0],
            Some(set(60)),
            Some(&last),
            &config,
            now,
        );
        assert!(!s.fresh);
        assert_eq!(s.problem.as_deref(), Some("the last cycle failed"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["last_cycle"]["ok"], false);
        assert_eq!(json["newest_set"]["age_seconds"], 60);
        assert_eq!(json["fresh"], false);
    }

    #[test]
    fn never_backed_up_is_not_fresh_and_next_run_is_unknown() {
        let config = config(CONFIG);
        let now = at("2026-12-03T12:00:00Z");
        let s = assess(&config.instances[0], None, None, &config, now);
        assert!(!s.fresh);
        assert_eq!(s.problem.as_deref(), Some("no backup set on disk"));
        assert_eq!(s.next_run, None, "interval schedule, no recorded cycle");
        assert!(s.line().contains("NOT FRESH"), "{}", s.line());
        assert!(s.line().contains("next run unknown"), "{}", s.line());
    }

    #[test]
    fn a_failed_last_cycle_is_reported_and_next_run_counts_from_it() {
        let config = config(CONFIG);
        let now = at("2026-12-03T12:00:00Z");
        let last = run(at("2026-12-03T10:00:00Z").timestamp(), false);
        let s = assess(&config.instances[0], None, Some(&last), &config, now);
        assert_eq!(
            s.next_run.as_deref(),
            Some("2026-12-03T16:00:00+00:00"),
            "default 6h interval"
        );
        assert!(!s.last_cycle.as_ref().unwrap().ok);
        assert!(s.line().contains("last cycle FAILED"), "{}", s.line());
    }

    #[test]
    fn a_next_run_that_has_passed_is_called_overdue() {
        let config = config(CONFIG);
        let last = run(at("2026-12-03T10:00:00Z").timestamp(), true);
        let due = assess(
            &config.instances[0],
            None,
            Some(&last),
            &config,
            at("2026-12-03T12:00:00Z"),
        );
        assert!(!due.next_run_overdue);
        assert!(!due.line().contains("overdue"), "{}", due.line());
        let late = assess(
            &config.instances[0],
            None,
            Some(&last),
            &config,
            at("2026-12-03T17:00:00Z"),
        );
        assert_eq!(late.next_run.as_deref(), Some("2026-12-03T16:00:00+00:00"));
        assert!(late.next_run_overdue);
        assert!(
            late.line().contains(
                "next run was due 2026-12-03 16:00 +00:00 (overdue: is the daemon running?)"
            ),
            "{}",
            late.line()
        );
    }

    #[test]
    fn daily_at_knows_the_next_run_without_a_recorded_cycle() {
        let config = config(&format!("{CONFIG}[schedule]\ndaily_at = \"03:30\"\n"));
        let s = assess(
            &config.instances[0],
            None,
            None,
            &config,
            at("2026-12-03T12:00:00Z"),
        );
        // 03:30 in UTC+8 is 19:30 UTC.
        assert_eq!(s.next_run.as_deref(), Some("2026-12-03T19:30:00+00:00"));
    }

    #[test]
    fn stale_after_defaults_to_two_periods() {
        let six_hourly = config(&CONFIG.replace("stale_after = \"1d\"\n", ""));
        assert_eq!(six_hourly.stale_after.as_secs(), 12 * 3600);
        let daily = config(&format!(
            "{}[schedule]\ndaily_at = \"03:30\"\n",
            CONFIG.replace("stale_after = \"1d\"\n", "")
        ));
        assert_eq!(daily.stale_after.as_secs(), 2 * 86_400);
        assert_eq!(config(CONFIG).stale_after.as_secs(), 86_400);
    }

    #[test]
    fn ages_read_like_a_human_wrote_them() {
        assert_eq!(age(12), "12s");
        assert_eq!(age(7 * 60 + 3), "7m");
        assert_eq!(age(5 * 3600 + 12 * 60), "5h 12m");
        assert_eq!(age(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
        assert_eq!(age(-5), "0s");
    }
}
