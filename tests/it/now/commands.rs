//! The other commands against what `--now` left on disk: `list --json`,
//! `verify`, `prune --dry-run` and `check-config`.

use std::collections::BTreeMap;

use serde_json::Value;
use tcbackup_emulator::{redis_status, PgBackupKind};

use crate::common::*;

/// Every file under the download directory with its bytes.
fn snapshot(h: &Harness) -> BTreeMap<std::path::PathBuf, Vec<u8>> {
    files_under(&h.download_dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(h.download_dir.join(&p)).unwrap();
            (p, bytes)
        })
        .collect()
}

/// `list --json` shows every remote backup with its state next to its
/// local copy: finished ones with the set directory, running ones without.
/// `list --local` works from the disk alone.
#[test]
fn list_json_shows_remote_backups_next_to_local_sets() {
    let h = Harness::sample();
    h.now().assert_code(0);
    let run = h.run(&["list", "--json"]);
    run.assert_code(0);
    let rows: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    let row = |id: &str| -> &Value {
        rows.iter()
            .find(|r| r["backup_id"] == id)
            .unwrap_or_else(|| panic!("no row for {id} in {}", run.stdout))
    };
    let mut checked = 0;
    for b in h.redis_backups() {
        let r = row(&b.backup_id);
        assert_eq!(r["instance_id"], REDIS);
        assert_eq!(r["kind"], "redis");
        if b.status == redis_status::NORMAL {
            assert_eq!(r["remote_finished"], true);
            let dir = h
                .instance_dir(REDIS)
                .join(set_dir(b.start, "redis", &b.backup_id));
            assert_eq!(r["local_dir"].as_str(), Some(dir.to_str().unwrap()));
            let size: u64 = b.files.iter().map(|f| f.size).sum();
            assert_eq!(r["local_bytes"].as_u64(), Some(size));
        } else {
            assert_eq!(r["remote_finished"], false);
            assert!(r["local_dir"].is_null());
        }
        checked += 1;
    }
    for (kind, label) in [(PgBackupKind::Base, "base"), (PgBackupKind::Log, "log")] {
        for b in h.pg_backups(kind) {
            let r = row(&b.id);
            assert_eq!(r["kind"], label);
            assert_eq!(r["remote_finished"], b.state == "finished");
            assert_eq!(r["local_dir"].is_null(), b.state != "finished", "{}", b.id);
            checked += 1;
        }
    }
    assert_eq!(rows.len(), checked, "one row per backup");

    let calls = h.emulator.state().total_requests();
    let run = h.run(&["list", "--local", "--json"]);
    run.assert_code(0);
    let rows: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(rows.len(), 16, "the published sets");
    assert!(rows.iter().all(|r| r["local_dir"].is_string()));
    assert_eq!(
        h.emulator.state().total_requests(),
        calls,
        "--local called the API"
    );
}

/// `verify` passes on what `--now` published, and after one byte of one
/// file is flipped it exits 1 naming the set and the file.
#[test]
fn verify_finds_a_flipped_byte_and_names_the_file() {
    let h = Harness::sample();
    h.now().assert_code(0);
    let run = h.run(&["verify"]);
    run.assert_code(0);
    assert!(run.stdout.contains("16 set(s) verified"), "{}", run.stdout);

    let b = h
        .redis_backups()
        .into_iter()
        .find(|b| b.status == redis_status::NORMAL)
        .unwrap();
    let dir = h
        .instance_dir(REDIS)
        .join(set_dir(b.start, "redis", &b.backup_id));
    let victim = &b.files[1].name;
    let path = dir.join(victim);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let run = h.run(&["verify"]);
    run.assert_code(1);
    let failed = format!("FAILED  {}", dir.display());
    assert!(run.stdout.contains(&failed), "{}", run.stdout);
    let file_line = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with(&failed))
        .nth(1)
        .unwrap_or_default();
    assert!(
        file_line.trim_start().starts_with(&format!("{victim}:")),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.matches("FAILED").count(), 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("1 of 16 set(s) failed verification"),
        "{}",
        run.stderr
    );
}

/// `prune --dry-run` prints, per instance, keep or delete with the reason
/// for every set and deletes nothing; `prune` then does what it showed.
#[test]
fn prune_dry_run_shows_the_plan_and_deletes_nothing() {
    let h = Harness::sample();
    h.now().assert_code(0);
    h.write_config(&Cfg::keep_last(2));
    let before = snapshot(&h);

    let run = h.run(&["prune", "--dry-run"]);
    run.assert_code(0);
    assert_eq!(
        snapshot(&h),
        before,
        "a dry run changed the download directory"
    );
    let line_of = |dir: &str| -> &str {
        run.stdout
            .lines()
            .find(|l| l.contains(dir))
            .unwrap_or_else(|| panic!("{dir} not in the plan:\n{}", run.stdout))
    };
    let mut redis: Vec<_> = h
        .redis_backups()
        .into_iter()
        .filter(|b| b.status == redis_status::NORMAL)
        .collect();
    redis.sort_by_key(|b| std::cmp::Reverse(b.start));
    let dirs: Vec<String> = redis
        .iter()
        .map(|b| set_dir(b.start, "redis", &b.backup_id))
        .collect();
    assert!(
        line_of(&dirs[0]).starts_with("keep"),
        "{}",
        line_of(&dirs[0])
    );
    assert!(line_of(&dirs[0]).contains("newest, keep_last 1 of 2"));
    assert!(line_of(&dirs[1]).contains("keep_last 2 of 2"));
    for dir in &dirs[2..] {
        let line = line_of(dir);
        assert!(line.starts_with("delete"), "{line}");
        assert!(line.ends_with("not kept by any rule"), "{line}");
    }
    let deleted_logs = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("delete") && l.contains("log: finished before oldest kept base"))
        .count();
    assert!(deleted_logs > 0, "{}", run.stdout);
    assert!(run.stdout.contains("2 kept, 2 to delete"), "{}", run.stdout);

    // Without --dry-run the same plan is carried out.
    h.run(&["prune"]).assert_code(0);
    let kept: std::collections::BTreeSet<_> = dirs[..2].iter().cloned().collect();
    assert_eq!(h.set_dirs(REDIS), kept);
}

/// `check-config` checks the file, the credentials and each instance
/// against the API without touching the disk; an instance that does not
/// exist is a configuration error (exit 2) naming it.
#[test]
fn check_config_finds_the_instances_and_refuses_an_unknown_one() {
    let h = Harness::sample();
    let run = h.run(&["check-config"]);
    run.assert_code(0);
    assert!(
        run.stdout.contains("valid, 2 instance(s)"),
        "{}",
        run.stdout
    );
    for id in [REDIS, PG] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.contains(id) && l.ends_with("found")),
            "{id} not found in\n{}",
            run.stdout
        );
    }
    assert!(
        !h.download_dir.exists(),
        "check-config created download_dir"
    );

    let unknown = "crs-doesnotexist";
    h.write_config(&Cfg {
        redis: vec![REDIS.to_string(), unknown.to_string()],
        ..Cfg::default()
    });
    let run = h.run(&["check-config"]);
    run.assert_code(2);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains(unknown))
        .unwrap_or_else(|| panic!("{unknown} not named in\n{}", run.stderr));
    assert!(line.contains("not found"), "{line}");
    assert!(!h.download_dir.exists());
}

/// A timer-driven `--now` is what the operator monitors: it writes the
/// metrics file and sends the start and success pings, like a daemon cycle.
#[test]
fn now_writes_metrics_and_pings_like_a_daemon_cycle() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    let h = Harness::sample();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // A health-check server that records the request line of each ping.
    let pings = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for stream in listener.incoming().take(2) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            seen.push(request_line.trim().to_string());
        }
        seen
    });
    let metrics = h.download_dir.with_file_name("tcbackup.prom");
    let text = h.config_text(&Cfg::default()).replacen(
        "\n",
        &format!(
            "\nmetrics_file = {:?}\nhealthcheck_url = \"http://127.0.0.1:{port}/check\"\n",
            metrics.display().to_string()
        ),
        1,
    );
    h.write_config_text(&text);
    h.now().assert_code(0);

    let seen = pings.join().unwrap();
    assert_eq!(seen, ["POST /check/start HTTP/1.1", "POST /check HTTP/1.1"]);
    let prom = std::fs::read_to_string(&metrics).unwrap();
    let series = |name: &str, instance: &str, service: &str| -> f64 {
        let prefix = format!("{name}{{instance_id=\"{instance}\",service=\"{service}\"}} ");
        prom.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{prom}"))
            .parse()
            .unwrap()
    };
    assert_eq!(series("tcbackup_last_run_success", REDIS, "redis"), 1.0);
    assert_eq!(series("tcbackup_last_run_success", PG, "postgres"), 1.0);
    assert_eq!(
        series("tcbackup_sets", REDIS, "redis") as usize,
        h.set_dirs(REDIS).len()
    );
    assert!(series("tcbackup_last_success_timestamp_seconds", PG, "postgres") > 1.7e9);
}
