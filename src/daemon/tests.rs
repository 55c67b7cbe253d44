//! The daemon's event loop in process, on one injected wall clock shared
//! with the emulator and on tokio's paused time (as mini-redis tests its
//! expiry): an hour-long interval is tested in milliseconds, and the test
//! waits on the daemon's own sd_notify messages, never on a sleep.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use chrono::DateTime;
use tcbackup_core::config::Config;
use tcbackup_core::exit::Exit;
use tcbackup_core::service::notify::Notifier;
use tcbackup_emulator::{sample, Emulator, EmulatorOptions, RedisBackupSpec};
use tcbackup_signing::clock::{Clock, ManualClock};
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;

use super::Daemon;
use crate::shutdown::Shutdown;

/// A wall clock that keeps time with tokio's paused clock, second by second.
fn keep_time(clock: &ManualClock) -> tokio::task::JoinHandle<()> {
    let clock = clock.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            clock.advance(chrono::Duration::seconds(1));
        }
    })
}

fn write_config(path: &Path, emu: &Emulator, download: &Path) {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let text = format!(
        "download_dir = {}\n[api]\nendpoint = {}\nallow_http_downloads = true\nregion = {}\n\
         [credentials]\nsecret_id = {}\nsecret_key = {}\n\
         [schedule]\ninterval = \"1h\"\njitter = \"0s\"\n[retention]\nkeep_last = 50\n\
         [[redis]]\ninstance_id = {}\n",
        q(&download.to_string_lossy()),
        q(&emu.endpoint()),
        q(sample::SAMPLE_REGION),
        q(emu.secret_id()),
        q(emu.secret_key().expose()),
        q(sample::SAMPLE_REDIS_INSTANCE),
    );
    std::fs::write(path, text).expect("config written");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("mode");
}

/// The next `STATUS=last run …` message: a cycle has ended.
async fn cycle_ended(socket: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).await.expect("sd_notify message");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.contains("STATUS=last run") {
            return text;
        }
    }
}

fn sets(download: &Path) -> usize {
    let dir = download.join(sample::SAMPLE_REDIS_INSTANCE);
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn an_hourly_daemon_runs_at_start_then_once_an_hour_and_stops_cleanly() {
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
    let (config_path, download) = (dir.path().join("tcbackup.toml"), dir.path().join("b"));
    write_config(&config_path, &emu, &download);
    let config = Config::load(&config_path).expect("valid config");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");

    let shutdown = Shutdown::new();
    let stop = shutdown.token();
    let daemon = Daemon::new(
        config_path.clone(),
        Arc::new(clock.clone()),
        Notifier::to_socket(&socket_path, None),
        shutdown,
    );
    let (_reload, reloads) = mpsc::channel(1);
    let started = tokio::time::Instant::now();
    let test = async {
        // The first cycle runs at once and fetches the four sample sets.
        let status = cycle_ended(&socket).await;
        assert!(status.contains("4 set(s) published"), "{status}");
        assert_eq!(sets(&download), 4);
        let first_end = tokio::time::Instant::now();

        // A backup that appears now waits for the next run, an hour after
        // the first started, not a moment sooner.
        let id = "165706342-5832999-1796300600";
        let start = clock.now() - chrono::Duration::minutes(1);
        let mut spec = RedisBackupSpec::finished(id, start);
        for shard in 1..=sample::SAMPLE_REDIS_SHARDS {
            spec = spec.file(
                sample::redis_file_name(5_832_999, shard),
                tcbackup_emulator::ObjectBody::Bytes(
                    sample::sample_rdb(99 + u64::from(shard), start.timestamp(), shard).into(),
                ),
            );
        }
        emu.state()
            .add_redis_backup(sample::SAMPLE_REDIS_INSTANCE, spec)
            .expect("backup added");
        let status = cycle_ended(&socket).await;
        let second = started.elapsed();
        assert!(status.contains("1 set(s) published"), "{status}");
        assert_eq!(sets(&download), 5);
        assert!(
            second >= std::time::Duration::from_secs(3600)
                && second < std::time::Duration::from_secs(3600 + 61),
            "the second cycle ended {second:?} after the start (first ended after {:?})",
            first_end - started
        );
        stop.cancel();
    };
    let (exit, ()) = tokio::join!(daemon.run(config, reloads), test);
    assert_eq!(exit, Exit::Ok);
    ticker.abort();
}
