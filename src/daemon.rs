//! Daemon mode: the sync cycle on a schedule (an interval with jitter, or a
//! daily time), under systemd or not.
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

use chrono::{DateTime, FixedOffset, NaiveTime, TimeZone, Utc};
use futures::future::{LocalBoxFuture, OptionFuture};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::context::{self, SetupError};
use crate::shutdown::Shutdown;
use tcbackup_core::cloud::error::ApiError;
use tcbackup_core::config::{Config, Schedule, ScheduleWhen};
use tcbackup_core::exit::Exit;
use tcbackup_core::progress::{Progress, ProgressMode};
use tcbackup_core::service::healthcheck::{HealthCheck, Ping};
use tcbackup_core::service::history::History;
use tcbackup_core::service::notify::Notifier;
use tcbackup_core::store::StoreError;
use tcbackup_core::sync::{CycleReport, SyncContext};
use tcbackup_signing::clock::Clock;

/// How long a stop waits for the running cycle to wind down before the
/// process exits anyway. Below the unit's `TimeoutStopSec=90s`, so systemd
/// never has to SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(60);

/// How often `STATUS=` is refreshed while a cycle runs.
pub const STATUS_EVERY: Duration = Duration::from_secs(15);

/// The longest single sleep while waiting for the next run.
const WAKE_EVERY: Duration = Duration::from_secs(60);

/// How often a running cycle logs a progress line.
const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(60);

/// When the next cycle starts after one that started at `last_start`:
/// `jitter` is the random delay drawn for it.
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

/// When the first cycle starts: at once for an interval, at the next daily
/// time (plus `jitter`) for `daily_at`.
pub fn first_run(
    schedule: &Schedule,
    time_zone: FixedOffset,
    now: DateTime<Utc>,
    jitter: Duration,
) -> DateTime<Utc> {
    match schedule.when {
        ScheduleWhen::Every(_) => now,
        ScheduleWhen::DailyAt(at) => {
            next_daily(at, time_zone, now) + chrono::Duration::from_std(jitter).unwrap_or_default()
        }
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

/// When a cycle started, on the wall clock and on the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    /// Wall-clock time: the daily schedule, logs and `STATUS=`.
    pub wall: DateTime<Utc>,
    /// Monotonic time: the interval schedule.
    pub mono: Instant,
}

/// When the next cycle is due, and how to tell.
///
/// - **Interval**: counted on the monotonic clock (tokio's `Instant`), so a
///   wall clock that NTP steps back does not delay the run by the size of
///   the step. The run is also due once the wall clock reaches the time
///   shown: the monotonic clock stands still while the machine is
///   suspended, the wall clock does not. The earlier of the two wins: a
///   cycle a little early costs nothing, a late one leaves backups unfetched.
/// - **Daily at a time**: a wall-clock time by definition, looked at again
///   at least every minute (`WAKE_EVERY`) so that a step either way is noticed. A
///   time more than a day (plus jitter) away can only come from a clock
///   stepped back; it is worked out again from the clock as it now reads.
#[derive(Debug, Clone)]
pub struct NextRun {
    /// The wall-clock time it is due, as shown.
    at: DateTime<Utc>,
    /// For an interval schedule, the monotonic deadline.
    deadline: Option<Instant>,
    /// For a daily schedule, what to work the time out from again.
    daily: Option<DailyAt>,
}

#[derive(Debug, Clone, Copy)]
struct DailyAt {
    at: NaiveTime,
    time_zone: FixedOffset,
    jitter: Duration,
}

impl NextRun {
    /// The run after one that started at `last` (or the first, for `None`),
    /// with `jitter` drawn for it; `wall_now` and `mono_now` are the two
    /// clocks now.
    pub fn plan(
        schedule: &Schedule,
        time_zone: FixedOffset,
        last: Option<Started>,
        wall_now: DateTime<Utc>,
        mono_now: Instant,
        jitter: Duration,
    ) -> NextRun {
        let at = match last {
            Some(last) => next_run(schedule, time_zone, last.wall, wall_now, jitter),
            None => first_run(schedule, time_zone, wall_now, jitter),
        };
        match schedule.when {
            ScheduleWhen::Every(interval) => {
                let deadline = match last {
                    // An interval too long for the monotonic clock falls
                    // back to the wall clock alone.
                    Some(last) => last
                        .mono
                        .checked_add(interval)
                        .map(|due| due.max(mono_now))
                        .and_then(|due| due.checked_add(jitter)),
                    None => Some(mono_now),
                };
                NextRun {
                    at,
                    deadline,
                    daily: None,
                }
            }
            ScheduleWhen::DailyAt(daily_at) => NextRun {
                at,
                deadline: None,
                daily: Some(DailyAt {
                    at: daily_at,
                    time_zone,
                    jitter,
                }),
            },
        }
    }

    /// The wall-clock time the run is due, for `STATUS=` and logs.
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }

    /// Whether the run is due now. A daily time that a clock stepped back
    /// pushed more than a day away is worked out again first.
    pub fn is_due(&mut self, wall_now: DateTime<Utc>, mono_now: Instant) -> bool {
        if let Some(daily) = self.daily {
            let jitter = chrono::Duration::from_std(daily.jitter).unwrap_or_default();
            if self.at - wall_now > chrono::Duration::days(1) + jitter {
                let at = next_daily(daily.at, daily.time_zone, wall_now) + jitter;
                tracing::warn!(
                    was = %stamp(self.at),
                    now = %stamp(at),
                    "the wall clock moved back; next run worked out again"
                );
                self.at = at;
            }
        }
        wall_now >= self.at || self.deadline.is_some_and(|deadline| mono_now >= deadline)
    }

    /// How long to sleep before asking [`NextRun::is_due`] again: until
    /// the earlier of the two deadlines, and never longer than
    /// a minute (`WAKE_EVERY`).
    pub fn sleep_for(&self, wall_now: DateTime<Utc>, mono_now: Instant) -> Duration {
        let wall = (self.at - wall_now).to_std().unwrap_or_default();
        let mono = self.deadline.map_or(Duration::MAX, |deadline| {
            deadline.saturating_duration_since(mono_now)
        });
        wall.min(mono).min(WAKE_EVERY)
    }
}

/// Sleep until `next` is due, looking at both clocks at least every
/// minute (`WAKE_EVERY`). Cancel-safe: dropping it loses nothing.
pub async fn until_due(next: &mut NextRun, clock: &dyn Clock) {
    loop {
        let (wall, mono) = (clock.now(), Instant::now());
        if next.is_due(wall, mono) {
            return;
        }
        tokio::time::sleep(next.sleep_for(wall, mono)).await;
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

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Why a configuration could not be put to use (at startup or on reload).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The client, credentials or transfer engine could not be set up.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The API refused the credentials for every configured instance.
    #[error("the API refused the credentials ({credentials}) for {service} instance {instance_id}: {error}")]
    Refused {
        /// Which credentials, masked (`config file, AKID…1234`).
        credentials: String,
        /// `redis` or `postgres`.
        service: tcbackup_core::model::Service,
        /// The first instance refused.
        instance_id: String,
        /// The API's answer.
        error: ApiError,
    },
    /// SIGTERM arrived before the check was done.
    #[error("stopped before the configuration was put to use")]
    Cancelled,
}

impl PrepareError {
    /// How the daemon ends when this stops it at startup.
    pub fn exit(&self) -> Exit {
        match self {
            PrepareError::Setup(e) => e.exit(),
            PrepareError::Refused { .. } => Exit::Auth,
            PrepareError::Cancelled => Exit::Ok,
        }
    }
}

/// Look every configured instance up: credentials the API refuses for all
/// of them are an error; anything else (a refused instance among accepted
/// ones, an unreachable API, an unknown instance) is a warning.
async fn check_credentials(ctx: &SyncContext) -> Result<(), PrepareError> {
    let mut confirmed = false;
    let mut refused = Vec::new();
    for instance in &ctx.config.instances {
        let checked = ctx
            .catalog
            .check_instance(
                instance.service,
                &instance.instance_id,
                Some(&instance.region),
            )
            .await;
        match checked {
            Ok(()) => confirmed = true,
            Err(error) if error.is_auth() => refused.push((instance, error)),
            Err(error) => tracing::warn!(
                instance = %instance.instance_id,
                "could not check {} instance {} at startup (each cycle checks it again): {error}",
                instance.service,
                instance.instance_id
            ),
        }
    }
    if !confirmed {
        if let Some((instance, error)) = refused.into_iter().next() {
            return Err(PrepareError::Refused {
                credentials: ctx.catalog.client().credentials().describe(),
                service: instance.service,
                instance_id: instance.instance_id.clone(),
                error,
            });
        }
        return Ok(());
    }
    for (instance, error) in refused {
        tracing::warn!(
            instance = %instance.instance_id,
            "the API refuses access to {} instance {}; it will fail every cycle: {error}",
            instance.service,
            instance.instance_id
        );
    }
    Ok(())
}

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
mod tests {
    use super::*;
    use tcbackup_signing::clock::ManualClock;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cst() -> FixedOffset {
        tcbackup_signing::times::CHINA_STANDARD_TIME
    }

    #[test]
    fn interval_schedule_counts_from_the_last_start() {
        let s = Schedule {
            when: ScheduleWhen::Every(Duration::from_secs(3600)),
            jitter: Duration::ZERO,
        };
        let next = next_run(
            &s,
            cst(),
            at("2026-11-26T00:00:00Z"),
            at("2026-11-26T00:10:00Z"),
            Duration::from_secs(30),
        );
        assert_eq!(next, at("2026-11-26T01:00:30Z"));
        // A cycle longer than the interval: the next one starts right away.
        let next = next_run(
            &s,
            cst(),
            at("2026-11-26T00:00:00Z"),
            at("2026-11-26T02:00:00Z"),
            Duration::ZERO,
        );
        assert_eq!(next, at("2026-11-26T02:00:00Z"));
        // The first run of an interval schedule is at startup.
        let now = at("2026-11-26T05:07:00Z");
        assert_eq!(first_run(&s, cst(), now, Duration::from_secs(99)), now);
    }

    #[test]
    fn daily_schedule_uses_the_configured_zone() {
        let s = Schedule {
            when: ScheduleWhen::DailyAt(NaiveTime::from_hms_opt(3, 30, 0).unwrap()),
            jitter: Duration::ZERO,
        };
        // 03:30 at UTC+8 is 19:30 UTC the day before.
        assert_eq!(
            next_run(
                &s,
                cst(),
                at("2026-11-26T00:00:00Z"),
                at("2026-11-26T10:00:00Z"),
                Duration::ZERO
            ),
            at("2026-11-26T19:30:00Z")
        );
        assert_eq!(
            next_run(
                &s,
                cst(),
                at("2026-11-26T00:00:00Z"),
                at("2026-11-26T19:30:00Z"),
                Duration::ZERO
            ),
            at("2026-11-27T19:30:00Z")
        );
        // A daily schedule does not run at startup, but at its time.
        assert_eq!(
            first_run(
                &s,
                cst(),
                at("2026-11-26T10:00:00Z"),
                Duration::from_secs(60)
            ),
            at("2026-11-26T19:31:00Z")
        );
    }

    fn every(interval: Duration) -> Schedule {
        Schedule {
            when: ScheduleWhen::Every(interval),
            jitter: Duration::ZERO,
        }
    }

    /// A wall clock that keeps time with tokio's (paused) clock, minute by
    /// minute, until the task is aborted; steps are made on `clock` by hand.
    fn keep_time(clock: &ManualClock) -> JoinHandle<()> {
        let clock = clock.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                Instant::now() + Duration::from_secs(60),
                Duration::from_secs(60),
            );
            loop {
                tick.tick().await;
                clock.advance(chrono::Duration::seconds(60));
            }
        })
    }

    /// Wait for `next` on `clock`; how long that took on tokio's clock.
    async fn waited(next: &mut NextRun, clock: &ManualClock) -> Duration {
        let begun = Instant::now();
        let limit = Duration::from_secs(3 * 86_400);
        tokio::time::timeout(limit, until_due(next, clock))
            .await
            .expect("the run never became due");
        begun.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_run_is_due_on_time_after_the_wall_clock_steps_back() {
        let t0 = at("2026-11-26T00:00:00Z");
        let clock = ManualClock::fixed(t0);
        let ticking = keep_time(&clock);
        let six_hours = Duration::from_secs(6 * 3600);
        let last = Started {
            wall: t0,
            mono: Instant::now(),
        };
        let mut next = NextRun::plan(
            &every(six_hours),
            cst(),
            Some(last),
            clock.now(),
            Instant::now(),
            Duration::ZERO,
        );
        // NTP steps the wall clock back an hour right after the cycle.
        clock.advance(chrono::Duration::hours(-1));
        let took = waited(&mut next, &clock).await;
        assert_eq!(
            took, six_hours,
            "due after the interval, not the interval plus the step"
        );
        ticking.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_run_is_due_when_the_wall_clock_passes_it_after_a_suspend() {
        // While suspended the monotonic clock stands still; on waking, the
        // wall clock is past the time and the run starts within a minute.
        let t0 = at("2026-11-26T00:00:00Z");
        let clock = ManualClock::fixed(t0);
        let last = Started {
            wall: t0,
            mono: Instant::now(),
        };
        let mut next = NextRun::plan(
            &every(Duration::from_secs(6 * 3600)),
            cst(),
            Some(last),
            t0,
            Instant::now(),
            Duration::ZERO,
        );
        clock.advance(chrono::Duration::hours(7));
        assert!(waited(&mut next, &clock).await <= WAKE_EVERY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_daily_run_is_worked_out_again_when_the_wall_clock_steps_back_days() {
        let daily = Schedule {
            when: ScheduleWhen::DailyAt(NaiveTime::from_hms_opt(3, 30, 0).unwrap()),
            jitter: Duration::ZERO,
        };
        // 10:00 UTC: the next 03:30 UTC+8 is 19:30 UTC, 9.5 hours away.
        let t0 = at("2026-11-26T10:00:00Z");
        let clock = ManualClock::fixed(t0);
        let ticking = keep_time(&clock);
        let mut next = NextRun::plan(&daily, cst(), None, t0, Instant::now(), Duration::ZERO);
        assert_eq!(next.at(), at("2026-11-26T19:30:00Z"));
        // The clock was two days fast; NTP steps it back.
        clock.advance(chrono::Duration::days(-2));
        // Within a minute of 9.5 hours (the wall clock here ticks by the
        // minute), not two days and 9.5 hours.
        let took = waited(&mut next, &clock).await;
        let expected = Duration::from_secs(9 * 3600 + 1800);
        assert!(
            took >= expected && took <= expected + WAKE_EVERY,
            "{took:?}"
        );
        assert_eq!(next.at(), at("2026-11-24T19:30:00Z"));

        // The next run is a day away; an hour into the wait, the clock is
        // stepped forward past it: noticed within a minute.
        let mut next = NextRun::plan(
            &daily,
            cst(),
            None,
            clock.now(),
            Instant::now(),
            Duration::ZERO,
        );
        let hour = Duration::from_secs(3600);
        let stepper = {
            let clock = clock.clone();
            tokio::spawn(async move {
                tokio::time::sleep(hour).await;
                clock.advance(chrono::Duration::hours(25));
            })
        };
        let took = waited(&mut next, &clock).await;
        assert!(took >= hour && took <= hour + WAKE_EVERY, "{took:?}");
        stepper.await.unwrap();
        ticking.abort();
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        assert_eq!(draw_jitter(Duration::ZERO), Duration::ZERO);
        for _ in 0..100 {
            assert!(draw_jitter(Duration::from_secs(2)) <= Duration::from_secs(2));
        }
    }
}
