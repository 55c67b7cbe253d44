//! The daemon's event loop in process, on one injected wall clock shared
//! with the emulator and on tokio's paused time (as mini-redis tests its
//! expiry): hour-long intervals are tested in milliseconds, reloads arrive
//! on the same channel SIGHUP feeds, and every wait is for one of the
//! daemon's own sd_notify messages, never a sleep. What only a real process
//! shows (signals, exit codes, the journal's log format) stays in
//! `tests/it/daemon.rs`.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::DateTime;
use tcbackup_core::config::Config;
use tcbackup_core::exit::Exit;
use tcbackup_core::service::notify::Notifier;
use tcbackup_core::store::Store;
use tcbackup_emulator::cos::{Fault, FaultTarget, Repeat};
use tcbackup_emulator::{
    sample, Emulator, EmulatorOptions, ObjectBody, PgBackupKind, RedisBackupSpec,
};
use tcbackup_signing::clock::{Clock, ManualClock};
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, LocalSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Daemon;
use crate::shutdown::Shutdown;

const HOUR: Duration = Duration::from_secs(3600);
const REDIS: &str = sample::SAMPLE_REDIS_INSTANCE;
const PG: &str = sample::SAMPLE_PG_INSTANCE;

/// A wall clock that keeps time with tokio's paused clock, second by second.
fn keep_time(clock: &ManualClock) -> JoinHandle<()> {
    let clock = clock.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            clock.advance(chrono::Duration::seconds(1));
        }
    })
}

/// What goes in the config file.
#[derive(Clone, Default)]
struct Conf {
    /// Leave the sample Redis instance out.
    no_redis: bool,
    pg: bool,
    /// `[transfer] idle_timeout`, when set.
    idle_timeout: Option<&'static str>,
    metrics: bool,
    healthcheck: Option<String>,
}

/// An emulator on the shared clock, a config file, a download directory and
/// the notify socket the daemon writes to.
struct Setup {
    clock: ManualClock,
    emu: Emulator,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    download: PathBuf,
    socket: UnixDatagram,
    socket_path: PathBuf,
    ticker: JoinHandle<()>,
}

impl Setup {
    async fn new() -> Setup {
        let t0 = DateTime::from_timestamp(1_796_300_000, 0).expect("valid instant");
        let clock = ManualClock::fixed(t0);
        let ticker = keep_time(&clock);
        let emu = Emulator::start(
            EmulatorOptions::new()
                .sample(true)
                .rate_limiting(false)
                .clock(Arc::new(clock.clone())),
        )
        .await
        .expect("emulator");
        let dir = tempfile::tempdir().expect("tempdir");
        let socket_path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
        Setup {
            config_path: dir.path().join("tcbackup.toml"),
            download: dir.path().join("backups"),
            clock,
            emu,
            dir,
            socket,
            socket_path,
            ticker,
        }
    }

    fn metrics_path(&self) -> PathBuf {
        self.dir.path().join("tcbackup.prom")
    }

    fn write_config(&self, conf: &Conf) {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut t = format!("download_dir = {}\n", q(&self.download.to_string_lossy()));
        if conf.metrics {
            t += &format!(
                "metrics_file = {}\n",
                q(&self.metrics_path().to_string_lossy())
            );
        }
        if let Some(url) = &conf.healthcheck {
            t += &format!("healthcheck_url = {}\n", q(url));
        }
        t += &self.emu.client_tables();
        if let Some(idle) = conf.idle_timeout {
            t += &format!("[transfer]\nidle_timeout = {}\n", q(idle));
        }
        t += "[schedule]\ninterval = \"1h\"\njitter = \"0s\"\n[retention]\nkeep_last = 50\n";
        if !conf.no_redis {
            t += &format!("[[redis]]\ninstance_id = {}\n", q(REDIS));
        }
        if conf.pg {
            t += &format!("[[postgres]]\ninstance_id = {}\n", q(PG));
        }
        self.write_raw_config(&t);
    }

    fn write_raw_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("config written");
        std::fs::set_permissions(&self.config_path, std::fs::Permissions::from_mode(0o600))
            .expect("mode");
    }

    /// Add a finished Redis backup (valid RDB shards) that started a minute ago.
    fn add_redis_backup(&self, number: u64) -> String {
        let start = self.clock.now() - chrono::Duration::minutes(1);
        let id = format!("165706342-{number}-{}", start.timestamp());
        let mut spec = RedisBackupSpec::finished(id.clone(), start);
        for shard in 1..=sample::SAMPLE_REDIS_SHARDS {
            spec = spec.file(
                sample::redis_file_name(number, shard),
                ObjectBody::Bytes(
                    sample::sample_rdb(number + u64::from(shard), start.timestamp(), shard).into(),
                ),
            );
        }
        self.emu
            .state()
            .add_redis_backup(REDIS, spec)
            .expect("backup added");
        id
    }

    /// Published set directories of `instance`.
    fn sets(&self, instance: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.download.join(instance))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Start the daemon on the current config; returns the stop token, the
    /// reload sender and the task.
    fn spawn(&self) -> (CancellationToken, mpsc::Sender<()>, JoinHandle<Exit>) {
        let config = Config::load(&self.config_path).expect("valid config");
        let shutdown = Shutdown::new();
        let stop = shutdown.token();
        let daemon = Daemon::new(
            self.config_path.clone(),
            Arc::new(self.clock.clone()),
            Notifier::to_socket(&self.socket_path, None),
            shutdown,
        );
        let (reload, reloads) = mpsc::channel(1);
        let task = tokio::task::spawn_local(daemon.run(config, reloads));
        (stop, reload, task)
    }

    /// The next sd_notify message for which `wanted` holds.
    async fn wait_for(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let mut buf = vec![0u8; 4096];
        let mut seen = Vec::new();
        let waiting = async {
            loop {
                let n = self.socket.recv(&mut buf).await.expect("sd_notify message");
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if wanted(&text) {
                    return text;
                }
                seen.push(text);
            }
        };
        // Virtual time: hours pass in no time when nothing else is due.
        match tokio::time::timeout(6 * HOUR, waiting).await {
            Ok(text) => text,
            Err(_) => panic!("no sd_notify message for {what} within 6 h; saw {seen:#?}"),
        }
    }

    /// The next `STATUS=last run …` of a cycle that ran.
    async fn cycle_ended(&self) -> String {
        self.wait_for("the end of a cycle", |m| {
            m.contains("STATUS=last run") && !m.contains("skipped") && !m.contains("failed at")
        })
        .await
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

/// Run `test` with a `LocalSet` around it (the daemon's future is not `Send`).
async fn local<F: std::future::Future<Output = ()>>(test: F) {
    LocalSet::new().run_until(test).await;
}

/// A local health-check endpoint that records the paths it is pinged on.
async fn health_server() -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::extract::State;
    use axum::http::Uri;
    let hits: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(hits): State<Arc<Mutex<Vec<String>>>>, uri: Uri| async move {
                hits.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(uri.path().to_string());
                "OK"
            },
        )
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hc/3f1a"), hits)
}

fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The first cycle runs at once; a backup that appears afterwards waits for
/// the next run, exactly one interval after the first started; each cycle
/// sends its start and success pings; a stop ends with `Exit::Ok`.
#[tokio::test(start_paused = true)]
async fn an_hourly_daemon_runs_at_start_then_once_an_hour() {
    let s = Setup::new().await;
    let (hc_url, hits) = health_server().await;
    s.write_config(&Conf {
        healthcheck: Some(hc_url),
        ..Conf::default()
    });
    local(async {
        let started = Instant::now();
        let (stop, _reload, daemon) = s.spawn();
        let status = s.cycle_ended().await;
        assert!(status.contains("4 set(s) published"), "{status}");
        assert_eq!(s.sets(REDIS).len(), 4);

        let id = s.add_redis_backup(5_832_999);
        let status = s.cycle_ended().await;
        let second = started.elapsed();
        assert!(status.contains("1 set(s) published"), "{status}");
        assert!(s.sets(REDIS).iter().any(|d| d.ends_with(&id)));
        assert!(
            second >= HOUR && second < HOUR + Duration::from_secs(61),
            "the second cycle ended {second:?} after the start"
        );
        stop.cancel();
        assert_eq!(daemon.await.expect("daemon task"), Exit::Ok);
    })
    .await;
    let hits = hits.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(
        hits[..4],
        ["/hc/3f1a/start", "/hc/3f1a", "/hc/3f1a/start", "/hc/3f1a"],
        "start and success pings for both cycles"
    );
}

/// A reload with a broken file keeps the old configuration (cycles go on);
/// a reload with a valid file puts it to use from the next cycle.
#[tokio::test(start_paused = true)]
async fn a_broken_reload_keeps_the_old_config_and_a_valid_one_is_used() {
    let s = Setup::new().await;
    s.write_config(&Conf::default());
    local(async {
        let (stop, reload, daemon) = s.spawn();
        s.cycle_ended().await;

        s.write_raw_config("download_dir = [this is not toml\n");
        reload.send(()).await.expect("reload sent");
        s.wait_for("READY after the failed reload", |m| {
            m.starts_with("READY=1") && m.contains("reload failed")
        })
        .await;
        // A later cycle still runs, on the old configuration.
        let status = s.cycle_ended().await;
        assert!(status.contains("0 set(s) published"), "{status}");

        assert!(s.sets(PG).is_empty());
        s.write_config(&Conf {
            pg: true,
            ..Conf::default()
        });
        reload.send(()).await.expect("reload sent");
        s.wait_for("READY after the reload", |m| {
            m.starts_with("READY=1") && m.contains("configuration reloaded")
        })
        .await;
        let status = s.cycle_ended().await;
        assert!(!s.sets(PG).is_empty(), "{status}");
        stop.cancel();
        assert_eq!(daemon.await.expect("daemon task"), Exit::Ok);
    })
    .await;
}

/// A reload that arrives during a cycle is checked at once but does not
/// interrupt the cycle (its transfer goes on in the same request); the new
/// configuration is used from the next cycle. The download is held by a
/// stall the test releases, so the reload lands mid-transfer for certain.
#[tokio::test(start_paused = true)]
async fn a_reload_during_a_cycle_takes_effect_when_it_ends() {
    let s = Setup::new().await;
    let key = s
        .emu
        .state()
        .pg_backups(PG, PgBackupKind::Base)
        .expect("sample PG")[0]
        .file
        .cos_key
        .clone();
    s.emu.cos().add_fault(
        FaultTarget::Key(key.clone()),
        Fault::StallAfter(1),
        Repeat::Times(1),
    );
    // Paused time jumps to the next timer whenever the runtime waits on a
    // socket, so a held download's idle clock runs fast: give it room.
    let conf = Conf {
        no_redis: true,
        pg: true,
        idle_timeout: Some("6h"),
        ..Conf::default()
    };
    s.write_config(&conf);
    local(async {
        let (stop, reload, daemon) = s.spawn();
        s.emu.cos().stalls_reached(1).await;
        s.write_config(&Conf {
            no_redis: false,
            ..conf.clone()
        });
        reload.send(()).await.expect("reload sent");
        s.wait_for("READY after the reload", |m| {
            m.starts_with("READY=1")
                && m.contains("configuration reloaded; it takes effect when the running cycle ends")
        })
        .await;
        s.emu.cos().release_stalls();
        let status = s.cycle_ended().await;
        assert!(!status.contains(" 0 set(s) published"), "{status}");
        assert_eq!(
            s.emu.cos().stats(&key).requests,
            1,
            "the held download was never interrupted"
        );
        assert!(
            s.sets(REDIS).is_empty(),
            "the running cycle kept its configuration"
        );
        let status = s.cycle_ended().await;
        assert!(status.contains("4 set(s) published"), "{status}");
        assert_eq!(s.sets(REDIS).len(), 4);
        stop.cancel();
        assert_eq!(daemon.await.expect("daemon task"), Exit::Ok);
    })
    .await;
}

/// A cycle that meets the store lock held (by a `--now`, say) is skipped
/// with a STATUS that says so, and the next one runs on schedule.
#[tokio::test(start_paused = true)]
async fn a_cycle_that_meets_a_held_lock_is_skipped_and_the_next_runs() {
    let s = Setup::new().await;
    s.write_config(&Conf::default());
    let store = Store::open(&s.download, Arc::new(s.clock.clone()) as Arc<dyn Clock>);
    let lock = store.lock().expect("lock");
    local(async {
        let (stop, _reload, daemon) = s.spawn();
        s.wait_for("the skipped cycle", |m| {
            m.contains("STATUS=last run skipped") && m.contains("another tcbackup is running")
        })
        .await;
        assert!(s.sets(REDIS).is_empty());
        drop(lock);
        let status = s.cycle_ended().await;
        assert!(status.contains("4 set(s) published"), "{status}");
        stop.cancel();
        assert_eq!(daemon.await.expect("daemon task"), Exit::Ok);
    })
    .await;
}

/// The metrics file holds the per-instance series, written 0644 and
/// replaced by a rename (a new inode, no temporary left) after each cycle.
#[tokio::test(start_paused = true)]
async fn the_metrics_file_holds_the_series_and_is_replaced_atomically() {
    let s = Setup::new().await;
    s.write_config(&Conf {
        pg: true,
        metrics: true,
        ..Conf::default()
    });
    local(async {
        let (stop, _reload, daemon) = s.spawn();
        s.cycle_ended().await;
        let path = s.metrics_path();
        let m = parse_metrics(&std::fs::read_to_string(&path).expect("metrics file"));
        let redis = |name: &str| m[&format!("{name}{{instance_id=\"{REDIS}\",service=\"redis\"}}")];
        let pg = |name: &str| m[&format!("{name}{{instance_id=\"{PG}\",service=\"postgres\"}}")];
        let now = s.clock.now().timestamp() as f64;
        let success = redis("tcbackup_last_success_timestamp_seconds");
        assert!((now - 120.0..=now).contains(&success), "{success} vs {now}");
        assert!(pg("tcbackup_last_success_timestamp_seconds") > now - 120.0);
        assert_eq!(redis("tcbackup_last_run_success"), 1.0);
        assert_eq!(redis("tcbackup_last_run_sets_published"), 4.0);
        assert_eq!(redis("tcbackup_sets"), 4.0);
        assert_eq!(redis("tcbackup_failures_total"), 0.0);
        assert_eq!(redis("tcbackup_last_run_sets_failed"), 0.0);
        assert!(redis("tcbackup_last_run_bytes") > 0.0);
        assert_eq!(redis("tcbackup_bytes"), redis("tcbackup_last_run_bytes"));
        assert_eq!(pg("tcbackup_sets"), s.sets(PG).len() as f64, "{m:#?}");
        let meta = std::fs::metadata(&path).expect("metrics file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);

        // The second cycle replaces the file by a rename: a new inode.
        s.cycle_ended().await;
        stop.cancel();
        assert_eq!(daemon.await.expect("daemon task"), Exit::Ok);
        let after = std::fs::metadata(&path).expect("metrics file");
        assert_ne!(meta.ino(), after.ino(), "replaced, not rewritten in place");
        let m2 = parse_metrics(&std::fs::read_to_string(&path).expect("metrics file"));
        let key = format!(
            "tcbackup_last_run_sets_published{{instance_id=\"{REDIS}\",service=\"redis\"}}"
        );
        assert_eq!(m2[&key], 0.0, "nothing new in the second cycle");
        let key = format!(
            "tcbackup_last_run_timestamp_seconds{{instance_id=\"{REDIS}\",service=\"redis\"}}"
        );
        assert!(
            (3590.0..3700.0).contains(&(m2[&key] - m[&key])),
            "an hour later: {} then {}",
            m[&key],
            m2[&key]
        );
        let names: Vec<_> = std::fs::read_dir(s.dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("prom"))
            .collect();
        assert_eq!(names, vec!["tcbackup.prom"], "no temporary file left");
    })
    .await;
}
