//! Daemon mode: the sync cycle on a schedule (an interval with jitter, or a
//! daily time), never overlapping itself or a `--now` run (the store's
//! lock), with SIGTERM to stop, SIGHUP to reload the configuration, and
//! sd_notify readiness, status and watchdog messages.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveTime, TimeZone, Utc};
use rand::Rng;
use tokio::sync::mpsc;

use crate::app::{self, exit};
use crate::clock::Clock;
use crate::config::{Config, Schedule, ScheduleWhen};
use crate::progress::{Progress, ProgressMode};
use crate::service::healthcheck::{HealthCheck, Ping};
use crate::service::metrics::{self, InstanceMetrics};
use crate::service::notify::Notifier;
use crate::shutdown::Shutdown;
use crate::sync::{CycleReport, SyncContext};

/// When the next cycle starts: `jitter` is the random delay drawn for it.
pub fn next_run(
    schedule: &Schedule,
    time_zone: FixedOffset,
    last_start: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: Duration,
) -> DateTime<Utc> {
    let jitter = chrono::Duration::from_std(jitter).unwrap_or_default();
    match schedule.when {
        ScheduleWhen::Every(interval) => {
            let interval =
                chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::hours(6));
            let next = last_start + interval;
            next.max(now) + jitter
        }
        ScheduleWhen::DailyAt(at) => next_daily(at, time_zone, now) + jitter,
    }
}

fn next_daily(at: NaiveTime, tz: FixedOffset, now: DateTime<Utc>) -> DateTime<Utc> {
    let local_now = now.with_timezone(&tz);
    let today = local_now.date_naive().and_time(at);
    let candidate = tz
        .from_local_datetime(&today)
        .single()
        .map(|t| t.with_timezone(&Utc));
    match candidate {
        Some(t) if t > now => t,
        Some(t) => t + chrono::Duration::days(1),
        // A fixed offset has no gaps or folds.
        None => now + chrono::Duration::days(1),
    }
}

/// What the daemon keeps between cycles for the metrics file.
#[derive(Debug, Default)]
struct History {
    instances: BTreeMap<String, InstanceMetrics>,
}

impl History {
    fn record(&mut self, report: &CycleReport) {
        let at = report.started.timestamp();
        for i in &report.instances {
            let m = self.instances.entry(i.instance_id.clone()).or_default();
            m.service = i.service.to_string();
            m.last_run_unix = at;
            m.last_run_ok = i.ok();
            if i.ok() {
                m.last_success_unix = Some(at);
            }
            m.bytes_downloaded = i.bytes();
            m.sets_published = i.published.len() as u64;
            m.sets_failed = i.failures.len() as u64;
            m.failures_total += i.failures.len() as u64;
            m.sets_on_disk = i.sets_on_disk as u64;
            m.bytes_on_disk = i.bytes_on_disk;
        }
    }
}

/// Run as a daemon until SIGTERM/SIGINT. Returns the exit code.
pub async fn run(config_path: &Path, config: Config) -> u8 {
    let shutdown = match app::shutdown_on_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tcbackup: {e:#}");
            return exit::FAILED;
        }
    };
    let reloads = match crate::shutdown::reload_requests() {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("tcbackup: cannot listen for SIGHUP: {e}");
            return exit::FAILED;
        }
    };
    let daemon = Daemon {
        config_path: config_path.to_path_buf(),
        clock: app::system_clock(),
        notifier: Notifier::from_env(),
        shutdown,
    };
    daemon.run(config, reloads).await
}

/// The daemon's wiring, injectable for tests.
pub struct Daemon {
    /// Where SIGHUP reloads the configuration from.
    pub config_path: std::path::PathBuf,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// sd_notify target.
    pub notifier: Notifier,
    /// The stop signal.
    pub shutdown: Shutdown,
}

impl Daemon {
    /// Loop: cycle, wait for the next run (or a reload, or stop), repeat.
    pub async fn run(self, config: Config, mut reloads: mpsc::Receiver<()>) -> u8 {
        let mut config = Arc::new(config);
        let mut ctx = match self.context(config.clone()).await {
            Ok(ctx) => ctx,
            Err(code) => return code,
        };
        let token = self.shutdown.token();
        let watchdog = self.notifier.watchdog_interval().map(|every| {
            let notifier = self.notifier.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = tick.tick() => notifier.watchdog(),
                        _ = token.cancelled() => break,
                    }
                }
            })
        });
        self.notifier.ready(&format!(
            "watching {} instance(s); first cycle starting",
            config.instances.len()
        ));
        tracing::info!(instances = config.instances.len(), "daemon started");
        let mut history = History::default();
        let mut next = self.clock.now();
        loop {
            // Wait for the next run, a reload, or the stop signal.
            loop {
                let wait = (next - self.clock.now()).to_std().unwrap_or_default();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => break,
                    _ = token.cancelled() => break,
                    Some(()) = reloads.recv() => {
                        self.notifier.reloading();
                        match Config::load(&self.config_path) {
                            Ok(new) => match self.context(Arc::new(new)).await {
                                Ok(new_ctx) => {
                                    config = new_ctx.config.clone();
                                    ctx = new_ctx;
                                    tracing::info!(path = %self.config_path.display(), "configuration reloaded");
                                    self.notifier.ready(&format!("configuration reloaded; next run {}", next.format("%Y-%m-%d %H:%M:%S UTC")));
                                }
                                Err(_) => {
                                    tracing::error!("new configuration not usable; keeping the old one");
                                    self.notifier.ready("reload failed; running with the previous configuration");
                                }
                            },
                            Err(e) => {
                                tracing::error!("configuration reload failed, keeping the old one:\n{e}");
                                self.notifier.ready("reload failed; running with the previous configuration");
                            }
                        }
                    }
                }
            }
            if token.is_cancelled() {
                break;
            }
            let started = self.clock.now();
            self.notifier.status(&format!(
                "cycle running since {}",
                started.format("%H:%M:%S UTC")
            ));
            let report = self.cycle(&ctx, &config).await;
            history.record(&report);
            if let Some(path) = &config.metrics_file {
                let text = metrics::render(&history.instances);
                if let Err(e) = metrics::write_atomically(path, &text) {
                    tracing::warn!(path = %path.display(), "metrics file not written: {e}");
                }
            }
            if token.is_cancelled() {
                break;
            }
            let jitter = draw_jitter(config.schedule.jitter);
            next = next_run(
                &config.schedule,
                config.time_zone,
                started,
                self.clock.now(),
                jitter,
            );
            self.notifier.status(&format!(
                "last run {}: {}; next run {}",
                started.format("%Y-%m-%d %H:%M UTC"),
                report.summary(),
                next.format("%Y-%m-%d %H:%M UTC")
            ));
            tracing::info!(next = %next.format("%Y-%m-%d %H:%M:%S UTC"), "next cycle scheduled");
        }
        self.notifier
            .stopping("stopping: partial downloads are kept for resume");
        if let Some(w) = watchdog {
            w.abort();
        }
        tracing::info!("daemon stopped");
        exit::OK
    }

    async fn context(&self, config: Arc<Config>) -> Result<SyncContext, u8> {
        let progress = Progress::new(ProgressMode::Log {
            interval: Duration::from_secs(60),
        });
        app::build_context(config, self.clock.clone(), progress)
            .await
            .map_err(|e| {
                tracing::error!("{e}");
                e.exit_code()
            })
    }

    async fn cycle(&self, ctx: &SyncContext, config: &Config) -> CycleReport {
        let ping = config
            .healthcheck_url
            .as_ref()
            .map(|u| HealthCheck::new(u.to_string(), reqwest::Client::new()));
        if let Some(p) = &ping {
            p.ping(Ping::Start, "cycle started").await;
        }
        let report = match ctx.store.lock() {
            Ok(_lock) => ctx.run_cycle(&self.shutdown.token()).await,
            Err(e) => {
                tracing::warn!("cycle skipped: {e}");
                CycleReport {
                    started: self.clock.now(),
                    elapsed: Duration::ZERO,
                    instances: Vec::new(),
                    interrupted: false,
                }
            }
        };
        tracing::info!("{}", report.summary());
        if let Some(p) = &ping {
            let kind = if report.exit_code() == exit::OK {
                Ping::Success
            } else {
                Ping::Fail
            };
            p.ping(kind, &report.summary()).await;
        }
        report
    }
}

fn draw_jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_millis(
        rand::thread_rng().gen_range(0..=max.as_millis().min(u128::from(u64::MAX)) as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn interval_schedule_counts_from_the_last_start() {
        let s = Schedule {
            when: ScheduleWhen::Every(Duration::from_secs(3600)),
            jitter: Duration::ZERO,
        };
        let tz = FixedOffset::east_opt(8 * 3600).unwrap();
        let next = next_run(
            &s,
            tz,
            at("2026-11-26T00:00:00Z"),
            at("2026-11-26T00:10:00Z"),
            Duration::from_secs(30),
        );
        assert_eq!(next, at("2026-11-26T01:00:30Z"));
        // A cycle longer than the interval: the next one starts right away.
        let next = next_run(
            &s,
            tz,
            at("2026-11-26T00:00:00Z"),
            at("2026-11-26T02:00:00Z"),
            Duration::ZERO,
        );
        assert_eq!(next, at("2026-11-26T02:00:00Z"));
    }

    #[test]
    fn daily_schedule_uses_the_configured_zone() {
        let s = Schedule {
            when: ScheduleWhen::DailyAt(NaiveTime::from_hms_opt(3, 30, 0).unwrap()),
            jitter: Duration::ZERO,
        };
        let tz = FixedOffset::east_opt(8 * 3600).unwrap();
        // 03:30 at UTC+8 is 19:30 UTC the day before.
        assert_eq!(
            next_run(
                &s,
                tz,
                at("2026-11-26T00:00:00Z"),
                at("2026-11-26T10:00:00Z"),
                Duration::ZERO
            ),
            at("2026-11-26T19:30:00Z")
        );
        assert_eq!(
            next_run(
                &s,
                tz,
                at("2026-11-26T00:00:00Z"),
                at("2026-11-26T19:30:00Z"),
                Duration::ZERO
            ),
            at("2026-11-27T19:30:00Z")
        );
    }
}
