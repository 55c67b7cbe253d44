//! Daemon mode: the sync cycle on a schedule (an interval with jitter, or a
//! daily time), under systemd or not. The schedule maths are `schedule`,
//! putting a configuration to use (the startup credential check) is
//! `startup`; this file is the event loop.
//!
//! - **Schedule.** An interval is counted on the monotonic clock (and also
//!   fires when the wall clock reaches it, for time spent suspended); a
//!   daily time is a wall-clock time looked at again every minute. So a
//!   wall clock that NTP steps back never stalls the schedule ([`NextRun`]).
//! - **Readiness.** `READY=1` is sent once the configuration is valid and
//!   the credentials were checked against the API (every configured instance
//!   is looked up; credentials the API refuses for all of them stop the
//!   daemon with exit 3; an unreachable API is only a warning, the cycle
//!   retries).
//! - **No overlap.** A cycle runs under the download directory's lock
//!   (`Store::lock`), the same one `tcbackup --now` takes. A cycle that
//!   cannot take it is skipped with a warning and tried again at the next run.
//! - **SIGTERM/SIGINT** stop scheduling and cancel the running cycle:
//!   transfers stop at a chunk boundary and keep their `.part` file and
//!   sidecar for resume. `STOPPING=1` is sent at once; the process exits 0
//!   when the cycle has wound down, or 1 after [`STOP_GRACE`] if it has not.
//! - **SIGHUP** reloads the configuration file. A new configuration is put to
//!   use only when it is valid and its credentials pass the check; otherwise
//!   the error is logged and the old one is kept. A reload never interrupts a
//!   running cycle: it is checked at once and takes effect when the cycle ends.
//! - **sd_notify.** `STATUS=` shows the running cycle (bytes so far) or the
//!   last and next run; `WATCHDOG=1` every half `WatchdogSec` from a task of
//!   its own, so a long cycle keeps the watchdog fed while a wedged runtime
//!   does not.
//! - **After each cycle**: the metrics file (seeded at startup from the
//!   previous file, so the last success time survives a restart) and the
//!   health-check pings (start, success, fail; none for an interrupted cycle).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{LocalBoxFuture, OptionFuture};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::context;
use crate::shutdown::Shutdown;
use tcbackup_core::config::Config;
use tcbackup_core::exit::Exit;
use tcbackup_core::progress::{Progress, ProgressMode};
use tcbackup_core::service::healthcheck::{HealthCheck, Ping};
use tcbackup_core::service::history::History;
use tcbackup_core::service::notify::Notifier;
use tcbackup_core::store::StoreError;
use tcbackup_core::sync::{CycleReport, SyncContext};
use tcbackup_signing::clock::Clock;

mod schedule;
mod startup;

use schedule::{draw_jitter, stamp};
use schedule::{until_due, NextRun, Started};
use startup::check_credentials;
pub use startup::PrepareError;

/// How long a stop waits for the running cycle to wind down before the
/// process exits anyway. Below the unit's `TimeoutStopSec=90s`, so systemd
/// never has to SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(60);

/// How often `STATUS=` is refreshed while a cycle runs.
pub const STATUS_EVERY: Duration = Duration::from_secs(15);

/// How often a running cycle logs a progress line.
const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(60);

/// A configuration put to use: the cycle's context and the pinger.
struct Active {
    ctx: SyncContext,
    health: Option<HealthCheck>,
}

impl Active {
    fn config(&self) -> &Config {
        &self.ctx.config
    }
}

/// How a scheduled cycle went.
enum Outcome {
    /// It ran (possibly interrupted).
    Ran(CycleReport),
    /// Another tcbackup held the lock.
    Skipped(String),
    /// It could not start (the lock could not be taken for another reason).
    Failed(String),
    /// SIGTERM came and the cycle did not wind down within the grace period.
    Abandoned,
}

/// Run as a daemon until SIGTERM/SIGINT. Returns the exit code.
pub async fn run(config_path: &Path, config: Config) -> Exit {
    let shutdown = match context::shutdown_on_signals() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e:#}");
            return Exit::Failed;
        }
    };
    let reloads = match crate::shutdown::reload_requests() {
        Ok(rx) => rx,
        Err(e) => {
            tracing::error!("cannot listen for SIGHUP: {e}");
            return Exit::Failed;
        }
    };
    let daemon = Daemon::new(
        config_path.to_path_buf(),
        context::system_clock(),
        Notifier::from_env(),
        shutdown,
    );
    daemon.run(config, reloads).await
}

/// The daemon's wiring, injectable for tests.
pub struct Daemon {
    /// Where SIGHUP reloads the configuration from.
    pub config_path: PathBuf,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// sd_notify target.
    pub notifier: Notifier,
    /// The stop signal.
    pub shutdown: Shutdown,
    /// How long a stop waits for the running cycle ([`STOP_GRACE`]).
    pub stop_grace: Duration,
    /// How often `STATUS=` is refreshed during a cycle ([`STATUS_EVERY`]).
    pub status_every: Duration,
    /// The HTTP client for health-check pings.
    pub http: reqwest::Client,
    stopping_sent: AtomicBool,
}

impl Daemon {
    /// A daemon with the default grace and status periods.
    pub fn new(
        config_path: PathBuf,
        clock: Arc<dyn Clock>,
        notifier: Notifier,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            config_path,
            clock,
            notifier,
            shutdown,
            stop_grace: STOP_GRACE,
            status_every: STATUS_EVERY,
            http: reqwest::Client::new(),
            stopping_sent: AtomicBool::new(false),
        }
    }

    /// Check `config`, report READY, then loop: wait for the next run (serving
    /// reloads), run a cycle, repeat; until the stop signal. Returns the exit code.
    pub async fn run(self, config: Config, mut reloads: mpsc::Receiver<()>) -> Exit {
        let token = self.shutdown.token();
        let mut active = match self.prepare(Arc::new(config)).await {
            Ok(active) => active,
            Err(PrepareError::Cancelled) => {
                self.stopping("stopped before the first cycle");
                return Exit::Ok;
            }
            Err(e) => {
                tracing::error!("{e}");
                return e.exit();
            }
        };
        let mut history = History::seeded(active.config().metrics_file.as_deref());
        let mut last_start: Option<Started> = None;
        let mut next = self.schedule_after(active.config(), last_start);
        self.notifier.ready(&format!(
            "watching {} instance(s); first cycle {}",
            active.config().instances.len(),
            stamp(next.at())
        ));
        // systemd starts the watchdog clock at READY.
        let watchdog = self.spawn_watchdog();
        tracing::info!(
            instances = active.config().instances.len(),
            first_cycle = %stamp(next.at()),
            "daemon started"
        );
        let code = 'run: loop {
            // Wait for the next run, serving reloads.
            loop {
                tokio::select! {
                    _ = until_due(&mut next, self.clock.as_ref()) => break,
                    _ = token.cancelled() => break 'run Exit::Ok,
                    Some(()) = reloads.recv() => {
                        if let Some(new) = self.reload().await {
                            active = new;
                            history.retain_configured(active.config());
                            next = self.schedule_after(active.config(), last_start);
                            self.notifier.ready(&format!(
                                "configuration reloaded; next run {}",
                                stamp(next.at())
                            ));
                        }
                    }
                }
            }
            if token.is_cancelled() {
                break Exit::Ok;
            }

            let started = self.clock.now();
            last_start = Some(Started {
                wall: started,
                mono: Instant::now(),
            });
            let mut pending = None;
            let outcome = self.cycle(&active, &mut reloads, &mut pending).await;
            if let Some(new) = pending {
                active = new;
                history.retain_configured(active.config());
                tracing::info!("the reloaded configuration is now in use");
            }
            let last = match &outcome {
                Outcome::Abandoned => break Exit::Failed,
                Outcome::Ran(report) if report.interrupted => {
                    format!("cycle of {} interrupted", stamp(started))
                }
                Outcome::Ran(report) => {
                    history.record(report);
                    history.retain_configured(active.config());
                    history.write(active.config()).await;
                    format!("last run {}: {}", stamp(started), report.summary())
                }
                Outcome::Skipped(why) => format!("last run skipped at {}: {why}", stamp(started)),
                Outcome::Failed(why) => format!("last run failed at {}: {why}", stamp(started)),
            };
            if token.is_cancelled() {
                break Exit::Ok;
            }
            next = self.schedule_after(active.config(), last_start);
            self.notifier
                .status(&format!("{last}; next run {}", stamp(next.at())));
            tracing::info!(next = %stamp(next.at()), "next cycle scheduled");
        };
        self.stopping("stopping: partial downloads are kept for resume");
        if let Some(w) = watchdog {
            w.abort();
        }
        tracing::info!("daemon stopped");
        code
    }

    /// When the next cycle starts, under `config`'s schedule.
    fn schedule_after(&self, config: &Config, last_start: Option<Started>) -> NextRun {
        NextRun::plan(
            &config.schedule,
            config.time_zone,
            last_start,
            self.clock.now(),
            Instant::now(),
            draw_jitter(config.schedule.jitter),
        )
    }

    /// STOPPING=1, once.
    fn stopping(&self, status: &str) {
        if !self.stopping_sent.swap(true, Ordering::SeqCst) {
            self.notifier.stopping(status);
        }
    }

    fn spawn_watchdog(&self) -> Option<JoinHandle<()>> {
        let every = self.notifier.watchdog_interval()?;
        let notifier = self.notifier.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                notifier.watchdog();
            }
        }))
    }

    /// Build everything a cycle needs for `config` and check its
    /// credentials; gives up when the stop signal comes.
    async fn prepare(&self, config: Arc<Config>) -> Result<Active, PrepareError> {
        let token = self.shutdown.token();
        let work = async {
            // Each cycle gets its own progress; this one is never shown.
            let progress = Progress::new(ProgressMode::Quiet);
            let ctx = context::build_context(config.clone(), self.clock.clone(), progress).await?;
            check_credentials(&ctx).await?;
            Ok::<_, PrepareError>(ctx)
        };
        let ctx = tokio::select! {
            ctx = work => ctx?,
            _ = token.cancelled() => return Err(PrepareError::Cancelled),
        };
        let health = config
            .healthcheck_url
            .clone()
            .map(|url| HealthCheck::new(url, self.http.clone()));
        Ok(Active { ctx, health })
    }

    /// Read the configuration file again and put it to use, or report why
    /// not and return `None` (the caller keeps the old one).
    async fn reload(&self) -> Option<Active> {
        self.notifier.reloading();
        tracing::info!(path = %self.config_path.display(), "SIGHUP: reloading the configuration");
        let failed = |why: &str| {
            tracing::error!(
                "configuration reload failed, keeping the previous configuration: {why}"
            );
        };
        let config = match Config::load(&self.config_path) {
            Ok(config) => config,
            Err(e) => {
                // One line per problem: the journal shows each with its priority.
                for line in e.to_string().lines() {
                    failed(line);
                }
                self.notifier
                    .ready("reload failed (see the log); running with the previous configuration");
                return None;
            }
        };
        crate::context::log_config_warnings(&config);
        match self.prepare(Arc::new(config)).await {
            Ok(active) => {
                tracing::info!(path = %self.config_path.display(), "configuration reloaded");
                Some(active)
            }
            Err(PrepareError::Cancelled) => None,
            Err(e) => {
                failed(&e.to_string());
                self.notifier
                    .ready("reload failed (see the log); running with the previous configuration");
                None
            }
        }
    }

    /// Send a health-check ping, unless none is configured; gives up when
    /// the stop signal comes.
    async fn ping(&self, active: &Active, ping: Ping, body: &str) {
        let Some(health) = &active.health else {
            return;
        };
        let token = self.shutdown.token();
        tokio::select! {
            biased;
            _ = token.cancelled() => {}
            _ = health.ping(ping, body) => {}
        }
    }

    /// A cycle that could not start: logged, and a fail ping sent.
    async fn not_started(&self, active: &Active, why: String) -> Outcome {
        tracing::error!("cycle not started: {why}");
        self.ping(active, Ping::Fail, &format!("cycle not started: {why}"))
            .await;
        Outcome::Failed(why)
    }

    /// One scheduled cycle under the lock, with STATUS updates, reloads
    /// checked on the side (a good one lands in `pending`) and the stop
    /// signal's grace period.
    async fn cycle(
        &self,
        active: &Active,
        reloads: &mut mpsc::Receiver<()>,
        pending: &mut Option<Active>,
    ) -> Outcome {
        let token = self.shutdown.token();
        let store = active.ctx.store.clone();
        let locked = tokio::task::spawn_blocking(move || store.lock())
            .await
            .map_err(|lost| lost.to_string());
        let lock = match locked {
            Ok(Ok(lock)) => lock,
            Ok(Err(e @ StoreError::Locked { .. })) => {
                tracing::warn!("cycle skipped: {e}; it is tried again at the next run");
                return Outcome::Skipped(e.to_string());
            }
            // Either way no cycle runs: the health check hears of it.
            Ok(Err(e)) => return self.not_started(active, e.to_string()).await,
            Err(lost) => return self.not_started(active, lost).await,
        };
        let started = self.clock.now();
        tracing::info!("cycle started");
        self.notifier
            .status(&format!("cycle running since {}", stamp(started)));
        // The start ping goes out beside the cycle: a slow health-check
        // server must not delay the backup.
        let mut start_ping: Option<LocalBoxFuture<'_, ()>> =
            Some(Box::pin(self.ping(active, Ping::Start, "cycle started")));

        let mut ctx = active.ctx.clone();
        ctx.progress = Progress::new(ProgressMode::Log {
            interval: PROGRESS_LOG_EVERY,
        });
        let progress = ctx.progress.clone();
        // Boxed rather than pinned on the stack, so it can be dropped (and
        // its borrow of the lock end) before the lock is released.
        let mut run = Box::pin(ctx.run_cycle(&lock, &token));
        let mut status =
            tokio::time::interval_at(Instant::now() + self.status_every, self.status_every);
        status.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let grace = tokio::time::sleep(Duration::MAX);
        tokio::pin!(grace);
        let mut stopping = false;
        let mut reloading: Option<LocalBoxFuture<'_, Option<Active>>> = None;
        let report = loop {
            tokio::select! {
                report = &mut run => break Some(report),
                _ = token.cancelled(), if !stopping => {
                    stopping = true;
                    grace.as_mut().reset(Instant::now() + self.stop_grace);
                    self.stopping("stopping: transfers are saving their resume state");
                }
                _ = &mut grace, if stopping => break None,
                _ = status.tick() => {
                    let (done, total) = progress.totals();
                    self.notifier.status(&format!(
                        "cycle running since {}: {} of {} downloaded",
                        stamp(started),
                        tcbackup_core::progress::human_bytes(done),
                        tcbackup_core::progress::human_bytes(total)
                    ));
                }
                Some(()) = OptionFuture::from(start_ping.as_mut()), if start_ping.is_some() => {
                    start_ping = None;
                }
                Some(()) = reloads.recv(), if reloading.is_none() && !stopping => {
                    reloading = Some(Box::pin(self.reload()));
                }
                Some(checked) = OptionFuture::from(reloading.as_mut()), if reloading.is_some() => {
                    reloading = None;
                    if let Some(new) = checked {
                        *pending = Some(new);
                        self.notifier.ready(
                            "configuration reloaded; it takes effect when the running cycle ends",
                        );
                    }
                }
            }
        };
        // A reload still being checked is finished, not dropped.
        if let Some(checking) = reloading.take() {
            if !token.is_cancelled() {
                if let Some(new) = checking.await {
                    *pending = Some(new);
                    self.notifier
                        .ready("configuration reloaded; it takes effect now");
                }
            }
        }
        let Some(report) = report else {
            tracing::error!(
                "the cycle did not stop within {}s of the stop signal; exiting anyway (downloads resume from their last saved state)",
                self.stop_grace.as_secs()
            );
            return Outcome::Abandoned;
        };
        drop(run);
        drop(lock);
        // The start ping must be done before the success or fail ping.
        if let Some(ping) = start_ping.take() {
            ping.await;
        }
        if report.interrupted {
            tracing::info!("cycle interrupted: {}", report.summary());
        } else {
            tracing::info!("cycle finished: {}", report.summary());
            let ping = if report.exit() == Exit::Ok {
                Ping::Success
            } else {
                Ping::Fail
            };
            self.ping(active, ping, &report.summary()).await;
        }
        Outcome::Ran(report)
    }
}

#[cfg(test)]
mod tests;
