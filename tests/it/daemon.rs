//! The daemon as systemd runs it: the real `tcbackup` binary as a child
//! process (signals, exit codes, readiness, the log format; the event loop's
//! schedule, reloads, lock and metrics are tested in process, on paused
//! time, in `src/daemon/tests.rs`) against an in-process emulator, with `NOTIFY_SOCKET` pointing at
//! a datagram socket the test reads. Every wait is for a condition (a notify
//! message, a log line, a file) with a bounded timeout; nothing sleeps.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use tcbackup_core::store::Store;
use tcbackup_emulator::cos::{Fault, FaultTarget, Repeat};
use tcbackup_emulator::sample;
use tcbackup_emulator::{Emulator, EmulatorOptions, PgBackupKind, PgInstance};
use tcbackup_signing::clock::{Clock, SystemClock};

/// The longest any single condition may take to come true.
const WAIT: Duration = Duration::from_secs(60);
const REDIS: &str = sample::SAMPLE_REDIS_INSTANCE;
const PG: &str = sample::SAMPLE_PG_INSTANCE;
/// A PostgreSQL instance holding one large, slowly served base backup.
const SLOW_PG: &str = "postgres-slowbase1";
const SLOW_BACKUP: &str = "b0b0b0b0-slow-base";
const SLOW_LEN: u64 = 4 << 20;

// ---------------------------------------------------------------- feeds

/// Lines (log lines or notify datagrams) as they arrive, for waiting on.
#[derive(Clone)]
struct Feed {
    name: &'static str,
    items: Arc<Mutex<Vec<String>>>,
    changed: Arc<watch::Sender<usize>>,
}

impl Feed {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            items: Arc::default(),
            changed: Arc::new(watch::Sender::new(0)),
        }
    }

    fn push(&self, item: String) {
        let len = {
            let mut items = self.items.lock().unwrap();
            items.push(item);
            items.len()
        };
        self.changed.send_replace(len);
    }

    fn all(&self) -> Vec<String> {
        self.items.lock().unwrap().clone()
    }

    fn len(&self) -> usize {
        self.items.lock().unwrap().len()
    }

    /// Wait for an item at index `from` or later that satisfies `pred`;
    /// returns its index. Panics (showing everything seen) after [`WAIT`].
    async fn wait(&self, from: usize, what: &str, pred: impl Fn(&str) -> bool) -> usize {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            {
                let items = self.items.lock().unwrap();
                if let Some(i) = (from..items.len()).find(|&i| pred(&items[i])) {
                    return i;
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                panic!(
                    "timed out waiting for {what} in {} (from #{from}):\n{:#?}",
                    self.name,
                    self.all()
                );
            }
        }
    }

    fn get(&self, i: usize) -> String {
        self.items.lock().unwrap()[i].clone()
    }
}

/// Bind the notify socket at `path` and feed every datagram to a [`Feed`].
fn notify_socket(path: &Path) -> Feed {
    let socket = tokio::net::UnixDatagram::bind(path).unwrap();
    let feed = Feed::new("sd_notify messages");
    let sink = feed.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf).await {
            sink.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    feed
}

// ---------------------------------------------------------------- setup

struct Setup {
    dir: tempfile::TempDir,
    emu: Emulator,
    config: PathBuf,
    download: PathBuf,
    notify_path: PathBuf,
    notify: Feed,
}

/// What goes in the config file.
#[derive(Clone)]
struct Conf {
    interval: &'static str,
    redis: bool,
    pg: bool,
    slow_pg: bool,
    metrics: bool,
    healthcheck: Option<String>,
    mode: u32,
}

impl Default for Conf {
    fn default() -> Self {
        Self {
            interval: "1h",
            redis: true,
            pg: false,
            slow_pg: false,
            metrics: false,
            healthcheck: None,
            mode: 0o600,
        }
    }
}

impl Setup {
    async fn new() -> Setup {
        let emu = Emulator::start(EmulatorOptions::new().sample(true).rate_limiting(false))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let notify_path = dir.path().join("notify.sock");
        let notify = notify_socket(&notify_path);
        std::fs::create_dir(dir.path().join("metrics")).unwrap();
        Setup {
            config: dir.path().join("tcbackup.toml"),
            download: dir.path().join("backups"),
            notify_path,
            notify,
            dir,
            emu,
        }
    }

    fn metrics_path(&self) -> PathBuf {
        self.dir.path().join("metrics").join("tcbackup.prom")
    }

    /// Add [`SLOW_PG`] with one generated base backup of [`SLOW_LEN`] bytes,
    /// and make the next GET answer at `rate` bytes/s. Returns the COS key.
    fn add_slow_backup(&self, rate: u64) -> String {
        let state = self.emu.state();
        let now = self.emu.clock().now();
        state
            .add_pg_instance(PgInstance::new(SLOW_PG, sample::SAMPLE_REGION, now))
            .unwrap();
        sample::add_generated_pg_base_backup(
            state,
            SLOW_PG,
            SLOW_BACKUP,
            now - chrono::Duration::hours(1),
            SLOW_LEN,
            42,
        )
        .unwrap();
        // Only this instance's object is fetched while the fault is armed.
        self.emu
            .cos()
            .add_fault(FaultTarget::AnyKey, Fault::Slow(rate), Repeat::Times(1));
        state.pg_backups(SLOW_PG, PgBackupKind::Base).unwrap()[0]
            .file
            .cos_key
            .clone()
    }

    fn config_text(&self, conf: &Conf) -> String {
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
        t += &format!(
            "[schedule]\ninterval = {}\njitter = \"0s\"\n",
            q(conf.interval)
        );
        t += "[retention]\nkeep_last = 50\n";
        if conf.redis {
            t += &format!("[[redis]]\ninstance_id = {}\n", q(REDIS));
        }
        if conf.pg {
            t += &format!("[[postgres]]\ninstance_id = {}\n", q(PG));
        }
        if conf.slow_pg {
            t += &format!(
                "[[postgres]]\ninstance_id = {}\nbackup_types = [\"base\"]\n",
                q(SLOW_PG)
            );
        }
        t
    }

    fn write_config(&self, conf: &Conf) {
        self.write_raw_config(&self.config_text(conf), conf.mode);
    }

    /// Replace the config file's content (write then rename, as editors do).
    fn write_raw_config(&self, text: &str, mode: u32) {
        let tmp = self.dir.path().join("tcbackup.toml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcbackup"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.path())
            .env("NOTIFY_SOCKET", &self.notify_path)
            .env("HOME", self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("TENCENTCLOUD_SECRET_ID")
            .env_remove("TENCENTCLOUD_SECRET_KEY")
            .env_remove("TENCENTCLOUD_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Start `tcbackup --config … <args>` with its stderr fed to a [`Feed`].
    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = Feed::new("stderr");
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.push(line);
            }
        });
        Proc {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    /// Run `tcbackup --config … <args>` to the end: (exit code, stderr).
    async fn run(&self, args: &[&str]) -> (i32, String) {
        let mut proc = self.spawn(args, &[]);
        let status = proc.exit_within(WAIT).await;
        (status.code().unwrap_or(-1), proc.stderr_text())
    }

    /// The backup ids published for `instance`.
    fn published(&self, instance: &str) -> Vec<String> {
        let store = Store::open(&self.download, Arc::new(SystemClock) as Arc<dyn Clock>);
        match store.list_sets(instance) {
            Ok(listing) => listing
                .sets
                .iter()
                .map(|s| s.manifest.backup_id.clone())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Every `.part` file under the partial area, with its length.
    fn part_files(&self) -> Vec<(PathBuf, u64)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "part") {
                    out.push((path.clone(), recorded_bytes(&path)));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.download.join(".partial"), &mut out);
        out
    }

    /// Wait until a `.part` file's sidecar records at least `bytes` written
    /// (the file itself is preallocated to its full size, so its length
    /// says nothing): the transfer is under way and has written data. (Polls the file: there is nothing to
    /// be notified by.)
    async fn wait_for_part(&self, bytes: u64) -> PathBuf {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((path, _)) = self.part_files().into_iter().find(|(_, n)| *n >= bytes) {
                return path;
            }
            assert!(
                Instant::now() < deadline,
                "no .part file reached {bytes} bytes: {:?}",
                self.part_files()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Bytes the sidecar next to `part` records as written (0 without one).
fn recorded_bytes(part: &Path) -> u64 {
    crate::common::sidecar_recorded_bytes(&PathBuf::from(format!("{}.json", part.display())))
}

struct Proc {
    child: Child,
    stderr: Feed,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Proc {
    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("the process is running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Wait for the exit (and the end of stderr).
    async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "the process did not exit within {limit:?}; stderr:\n{}",
                self.stderr_text()
            ),
        };
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(WAIT, reader).await;
        }
        status
    }

    fn stderr_text(&self) -> String {
        self.stderr.all().join("\n")
    }

    /// SIGTERM and a clean exit 0.
    async fn stop(mut self) -> String {
        self.signal("TERM");
        let status = self.exit_within(WAIT).await;
        assert_eq!(status.code(), Some(0), "stderr:\n{}", self.stderr_text());
        self.stderr_text()
    }
}

/// The STATUS of a cycle that ran (not one skipped or failed to start).
fn is_cycle_status(m: &str) -> bool {
    m.contains("STATUS=last run ") && m.contains(" set(s) published")
}

/// Wait for the end of the next cycle that ran (its `STATUS=last run …`)
/// from message `from` on; returns (its index, the message).
async fn next_cycle(notify: &Feed, from: usize) -> (usize, String) {
    let i = notify.wait(from, "a cycle's STATUS", is_cycle_status).await;
    (i, notify.get(i))
}

// ---------------------------------------------------------------- tests

/// Requirement 2, as a real process meets it: SIGHUP with a broken file
/// keeps the old configuration (the error is logged, the process lives);
/// SIGHUP with a valid file is accepted. That later cycles run on the old
/// configuration, then on the new one, is shown in process by
/// `daemon::tests::a_broken_reload_keeps_the_old_config_and_a_valid_one_is_used`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_the_old_config_when_the_new_one_is_broken() {
    let s = Setup::new().await;
    s.write_config(&Conf::default());
    let mut daemon = s.spawn(&[], &[]);
    let (first, _) = next_cycle(&s.notify, 0).await;

    s.write_raw_config("download_dir = [this is not toml\n", 0o600);
    daemon.signal("HUP");
    daemon
        .stderr
        .wait(0, "the reload error", |l| {
            l.contains("ERROR")
                && l.contains("configuration reload failed, keeping the previous configuration")
                && l.contains("not valid TOML")
        })
        .await;
    let refused = s
        .notify
        .wait(first + 1, "READY after the failed reload", |m| {
            m.starts_with("READY=1") && m.contains("reload failed")
        })
        .await;
    assert!(daemon.alive());

    s.write_config(&Conf {
        pg: true,
        ..Conf::default()
    });
    daemon.signal("HUP");
    daemon
        .stderr
        .wait(0, "the reload", |l| l.contains("configuration reloaded"))
        .await;
    s.notify
        .wait(refused + 1, "READY after the reload", |m| {
            m.starts_with("READY=1") && m.contains("configuration reloaded; next run ")
        })
        .await;
    assert!(daemon.alive());
    daemon.stop().await;
}

/// Requirement 2, the other half, through SIGHUP: a reload that arrives
/// during a cycle is checked at once but does not interrupt the cycle (its
/// transfer goes on in the same request). That the next cycle uses the new
/// configuration is shown in process by
/// `daemon::tests::a_reload_during_a_cycle_takes_effect_when_it_ends`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_a_cycle_waits_for_it() {
    let s = Setup::new().await;
    let key = s.add_slow_backup(1 << 20);
    let conf = Conf {
        redis: false,
        slow_pg: true,
        ..Conf::default()
    };
    s.write_config(&conf);
    let daemon = s.spawn(&[], &[]);
    s.wait_for_part(300 << 10).await;
    s.write_config(&Conf {
        redis: true,
        ..conf.clone()
    });
    daemon.signal("HUP");
    let accepted = s
        .notify
        .wait(0, "READY after the reload", |m| {
            m.starts_with("READY=1")
                && m.contains("configuration reloaded; it takes effect when the running cycle ends")
        })
        .await;
    let (_, status) = next_cycle(&s.notify, accepted).await;
    assert!(status.contains("1 set(s) published"), "{status}");
    assert_eq!(
        s.emu.cos().stats(&key).requests,
        1,
        "the slow download was never interrupted"
    );
    assert!(
        s.published(REDIS).is_empty(),
        "the running cycle kept its configuration"
    );
    daemon.stop().await;
}

/// Requirement 3: SIGTERM during a transfer exits 0 at once, sends
/// STOPPING=1 and leaves the `.part` file and its sidecar; the next start
/// resumes, so the emulator serves fewer bytes than the object holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_transfer_exits_promptly_and_the_next_start_resumes() {
    let s = Setup::new().await;
    let key = s.add_slow_backup(256 << 10);
    s.write_config(&Conf {
        redis: false,
        slow_pg: true,
        ..Conf::default()
    });
    let mut daemon = s.spawn(&[], &[]);
    let part = s.wait_for_part(300 << 10).await;

    let asked = Instant::now();
    daemon.signal("TERM");
    let status = daemon.exit_within(WAIT).await;
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "{}", daemon.stderr_text());
    assert!(
        took < Duration::from_secs(10),
        "stopped in {took:?}, well within the grace"
    );
    s.notify
        .wait(0, "STOPPING=1", |m| m.contains("STOPPING=1"))
        .await;
    let kept = recorded_bytes(&part);
    assert!(kept > 0 && kept < SLOW_LEN, "{kept}");
    let sidecar = PathBuf::from(format!("{}.json", part.display()));
    assert!(
        sidecar.exists(),
        "the resume state is kept next to {part:?}"
    );
    assert!(s.published(SLOW_PG).is_empty());
    let served_first = s.emu.cos().stats(&key).bytes_served;

    // The next start resumes (the slow fault is used up).
    let notify_from = s.notify.len();
    let daemon = s.spawn(&[], &[]);
    let (_, status) = next_cycle(&s.notify, notify_from).await;
    assert!(status.contains("1 set(s) published"), "{status}");
    daemon.stop().await;
    assert_eq!(s.published(SLOW_PG), vec![SLOW_BACKUP.to_string()]);
    let stats = s.emu.cos().stats(&key);
    let second = stats.records.last().unwrap();
    assert!(
        second.range.as_deref().unwrap_or("").starts_with("bytes="),
        "{stats:?}"
    );
    assert!(
        second.bytes_sent < SLOW_LEN,
        "served {} of {SLOW_LEN} the second time",
        second.bytes_sent
    );
    assert!(stats.bytes_served - served_first < SLOW_LEN);
    assert!(
        s.part_files().is_empty(),
        "the partial is gone once published"
    );
}

/// Requirement 4: READY=1 (after the credential check), STATUS= while a
/// cycle runs and after it, and WATCHDOG=1 every half `WATCHDOG_USEC`,
/// also during a long cycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifies_ready_status_and_watchdog_during_a_long_cycle() {
    let s = Setup::new().await;
    // 4 MiB at 1 MiB/s: a cycle of about four seconds.
    s.add_slow_backup(1 << 20);
    s.write_config(&Conf {
        redis: false,
        slow_pg: true,
        interval: "1h",
        ..Conf::default()
    });
    let daemon = s.spawn(&[], &[("WATCHDOG_USEC", "1000000")]);
    let ready = s
        .notify
        .wait(0, "READY=1", |m| {
            m.starts_with("READY=1\nSTATUS=watching 1 instance(s)")
        })
        .await;
    let running = s
        .notify
        .wait(ready, "the running STATUS", |m| {
            m.starts_with("STATUS=cycle running since")
        })
        .await;
    let (done, status) = next_cycle(&s.notify, running).await;
    assert!(status.contains("1 set(s) published"), "{status}");
    assert!(status.contains("; next run "), "{status}");
    let during = s.notify.all()[running..done]
        .iter()
        .filter(|m| *m == "WATCHDOG=1")
        .count();
    assert!(
        during >= 3,
        "WATCHDOG=1 every 0.5 s during a ~4 s cycle, got {during}: {:#?}",
        s.notify.all()
    );
    assert_eq!(
        ready,
        0,
        "READY=1 is the first message: {:#?}",
        s.notify.all()
    );
    daemon.stop().await;
}

/// READY=1 waits for the credential check: credentials the API refuses stop
/// the daemon with exit 3 and no READY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_never_report_ready() {
    let s = Setup::new().await;
    let text = s
        .config_text(&Conf::default())
        .replace(s.emu.secret_key().expose(), "not-the-right-key");
    s.write_raw_config(&text, 0o600);
    let (code, stderr) = s.run(&[]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("the API refused the credentials"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-right-key"), "{stderr}");
    assert!(
        s.notify.all().iter().all(|m| !m.contains("READY=1")),
        "{:#?}",
        s.notify.all()
    );
    assert!(s.published(REDIS).is_empty());
}

/// Requirement 6: `--log-format json` writes JSON lines; text without a
/// terminal has no ANSI escapes; text into the journal carries priorities.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_or_plain_text() {
    let s = Setup::new().await;
    s.write_config(&Conf::default());

    let daemon = s.spawn(&["--log-format", "json"], &[]);
    next_cycle(&s.notify, 0).await;
    let stderr = daemon.stop().await;
    let mut messages = Vec::new();
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        messages.push(v["message"].as_str().unwrap_or_default().to_string());
    }
    assert!(
        messages.iter().any(|m| m == "daemon started"),
        "{messages:#?}"
    );
    assert!(messages.iter().any(|m| m.starts_with("cycle finished")));

    // Text into a pipe: no colours.
    let (code, text) = s.run(&["--now"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(" INFO "), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI escape in:\n{text}");

    // Text into the journal: `<priority>` first, no escapes, no timestamps.
    let log = s.dir.path().join("journal.log");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    let status = s
        .command(&["--now"])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(Stdio::from(file))
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let journal = std::fs::read_to_string(&log).unwrap();
    assert!(!journal.contains('\u{1b}'), "{journal}");
    let info: Vec<&str> = journal.lines().filter(|l| l.contains("INFO")).collect();
    assert!(!info.is_empty(), "{journal}");
    for line in info {
        assert!(line.starts_with("<6> INFO "), "{line}");
    }
}

/// Requirement 7: a config file with a secret key that group or others can
/// read is warned about, naming the file and `chmod 600`, by `--now` and
/// by the daemon (at startup and at each reload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readable_config_with_a_secret_is_warned_about() {
    let s = Setup::new().await;
    s.write_config(&Conf {
        mode: 0o644,
        ..Conf::default()
    });
    let warning = format!(
        "config file {} holds a secret key and is readable by group or others (mode 0644); run `chmod 600 {}`",
        s.config.display(),
        s.config.display()
    );
    let (code, stderr) = s.run(&["--now"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&warning), "{stderr}");
    assert!(!stderr.contains(s.emu.secret_key().expose()));

    let daemon = s.spawn(&[], &[]);
    daemon
        .stderr
        .wait(0, "the warning", |l| l.contains(&warning))
        .await;
    s.notify.wait(0, "READY=1", |m| m.contains("READY=1")).await;
    daemon.signal("HUP");
    daemon
        .stderr
        .wait(0, "the reload", |l| l.contains("configuration reloaded"))
        .await;
    let stderr = daemon.stop().await;
    assert_eq!(stderr.matches(&warning).count(), 2, "{stderr}");
}

/// Requirement 8: `--now` while the daemon's cycle holds the lock reports
/// the lock and exits 1. (A daemon cycle that meets a held lock is skipped
/// and runs at the next tick: `daemon::tests::a_cycle_that_meets_a_held_lock_is_skipped_and_the_next_runs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_never_overlaps_and_reports_the_lock() {
    let s = Setup::new().await;
    s.add_slow_backup(256 << 10);
    s.write_config(&Conf {
        redis: false,
        slow_pg: true,
        ..Conf::default()
    });
    let daemon = s.spawn(&[], &[]);
    s.wait_for_part(1).await;
    let (code, stderr) = s.run(&["--now"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("another tcbackup is running on this download directory (lock"),
        "{stderr}"
    );
    daemon.stop().await;
}
