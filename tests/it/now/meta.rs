//! What the API says about each backup, end to end: the manifest records
//! it, `list` shows manual backups as such, `keep_manual` keeps them past
//! the keep rules, and backups tcbackup cannot fetch (a PostgreSQL
//! `snapshot`, a Redis file type that is not an RDB) are listed with the
//! reason, never fetched, and never fail the run.

use serde_json::Value;
use tcbackup_emulator::{sample, ObjectBody, PgBackupKind, RedisBackupSpec};

use crate::common::*;

/// The set directory of sample Redis backup `backup_id`.
fn redis_dir(h: &Harness, backup_id: &str) -> String {
    let b = h
        .redis_backups()
        .into_iter()
        .find(|b| b.backup_id == backup_id)
        .unwrap();
    set_dir(b.start, "redis", &b.backup_id)
}

/// The set directory of sample base backup `id`.
fn base_dir(h: &Harness, id: &str) -> String {
    let b = h
        .pg_backups(PgBackupKind::Base)
        .into_iter()
        .find(|b| b.id == id)
        .unwrap();
    set_dir(b.start, "base", &b.id)
}

fn keep_last_one(keep_manual: bool) -> Cfg {
    let mut cfg = Cfg::keep_last(1);
    if keep_manual {
        cfg.retention_extra.push("keep_manual = true".to_string());
    }
    cfg
}

/// The manifest of a manual set records what the API said (mode, remark,
/// instance name, version, file type; for PostgreSQL the method and the
/// instance's DBVersion fields), and `list` marks it manual.
#[test]
fn manifests_and_list_carry_the_api_metadata_and_mark_manual_backups() {
    let h = Harness::sample();
    let s = h.emulator.sample().unwrap().clone();
    h.now().assert_code(0);

    let redis = manifest(&h.instance_dir(REDIS).join(redis_dir(&h, &s.redis_manual)));
    let meta = &redis["meta"];
    assert_eq!(meta["mode"], "manual", "{redis}");
    assert_eq!(meta["remark"], sample::SAMPLE_MANUAL_REMARK);
    assert_eq!(meta["instance_name"], format!("{REDIS}-name"));
    assert_eq!(meta["file_type"], "RDB-Redis 6.2");
    assert_eq!(meta["redis_version"], "6.2");
    let automatic = manifest(
        &h.instance_dir(REDIS)
            .join(redis_dir(&h, &s.redis_finished[0])),
    );
    assert_eq!(automatic["meta"]["mode"], "automatic", "{automatic}");
    assert!(automatic["meta"].get("remark").is_none(), "{automatic}");

    let base = manifest(&h.instance_dir(PG).join(base_dir(&h, &s.pg_base_manual)));
    let meta = &base["meta"];
    assert_eq!(meta["mode"], "manual", "{base}");
    assert_eq!(meta["backup_method"], "physical");
    assert_eq!(meta["instance_name"], format!("{PG}-name"));
    assert_eq!(meta["db_version"], "16.2");
    assert_eq!(meta["db_major_version"], "16");
    assert_eq!(meta["db_kernel_version"], "v16.2_r1.5");

    let run = h.run(&["list", "--json"]);
    run.assert_code(0);
    let rows: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    let row = |id: &str| rows.iter().find(|r| r["backup_id"] == id).unwrap();
    assert_eq!(row(&s.redis_manual)["manual"], true);
    assert_eq!(
        row(&s.redis_manual)["meta"]["remark"],
        sample::SAMPLE_MANUAL_REMARK
    );
    assert_eq!(row(&s.pg_base_manual)["manual"], true);
    assert_eq!(row(&s.redis_finished[0])["manual"], false);
    let manual_rows = rows.iter().filter(|r| r["manual"] == true).count();
    assert_eq!(manual_rows, 2, "{}", run.stdout);

    // Local only: the manifest says the same.
    let run = h.run(&["list", "--local", "--json"]);
    run.assert_code(0);
    let rows: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    let local = rows
        .iter()
        .find(|r| r["backup_id"] == s.redis_manual.as_str())
        .unwrap();
    assert_eq!(local["manual"], true);
    assert_eq!(local["meta"]["instance_name"], format!("{REDIS}-name"));

    let run = h.run(&["list"]);
    run.assert_code(0);
    let marked: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("[manual]"))
        .collect();
    assert_eq!(marked.len(), 2, "{}", run.stdout);
    assert!(marked.iter().any(|l| l.contains(&s.redis_manual)));
    assert!(marked.iter().any(|l| l.contains(&s.pg_base_manual)));
}

/// `keep_manual = true` keeps a manual set that the keep rules alone would
/// not (older than `keep_last = 1`), fetches it on a first run, shows
/// "manual" as the reason in `prune --dry-run`; without it the set is
/// pruned.
#[test]
fn keep_manual_keeps_an_old_manual_set_and_without_it_it_is_pruned() {
    let h = Harness::sample();
    let s = h.emulator.sample().unwrap().clone();
    h.write_config(&keep_last_one(true));
    h.now().assert_code(0);
    let newest = redis_dir(&h, &s.redis_finished[0]);
    let manual = redis_dir(&h, &s.redis_manual);
    assert_eq!(
        h.set_dirs(REDIS),
        [newest.clone(), manual.clone()].into_iter().collect()
    );
    let manual_base = base_dir(&h, &s.pg_base_manual);
    let newest_base = base_dir(&h, &s.pg_base_finished[0]);
    let pg = h.set_dirs(PG);
    assert!(
        pg.contains(&manual_base) && pg.contains(&newest_base),
        "{pg:?}"
    );
    let older_automatic = base_dir(&h, &s.pg_base_finished[1]);
    assert!(!pg.contains(&older_automatic), "{pg:?}");

    let run = h.run(&["prune", "--dry-run"]);
    run.assert_code(0);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains(&manual))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        line.starts_with("keep") && line.ends_with("manual"),
        "{line}"
    );

    // A second run keeps it.
    h.now().assert_code(0);
    assert!(h.set_dirs(REDIS).contains(&manual));

    // Without keep_manual, the next run prunes it.
    h.write_config(&keep_last_one(false));
    let run = h.run(&["prune", "--dry-run"]);
    let line = run.stdout.lines().find(|l| l.contains(&manual)).unwrap();
    assert!(line.starts_with("delete"), "{line}");
    h.now().assert_code(0);
    assert_eq!(h.set_dirs(REDIS), [newest].into_iter().collect());
    let pg = h.set_dirs(PG);
    assert!(!pg.contains(&manual_base), "{pg:?}");
}

/// A PostgreSQL `snapshot` base backup and a Redis backup whose file type
/// is not an RDB are listed with the reason, never downloaded (COS serves
/// no byte of them, no URL is asked for them), and the run exits 0.
#[test]
fn backups_tcbackup_cannot_fetch_are_listed_not_fetched() {
    let h = Harness::sample();
    let s = h.emulator.sample().unwrap().clone();
    let now = h.emulator.clock().now();
    let aof_id = "165706342-5832400-aof";
    h.emulator
        .state()
        .add_redis_backup(
            REDIS,
            RedisBackupSpec::finished(aof_id, now - chrono::Duration::hours(1))
                .file_type("AOF-Redis 7.0")
                .file(
                    "appendonly.aof",
                    ObjectBody::Generated { seed: 9, len: 4096 },
                ),
        )
        .unwrap();
    let mut cfg = Cfg::default();
    cfg.postgres.push(s.pg_snapshot_instance_id.clone());
    h.write_config(&cfg);

    let run = h.now();
    run.assert_code(0);
    assert!(
        run.stderr.contains(&format!(
            "backup {} (base): skipped: backup method \"snapshot\" is not one tcbackup can fetch",
            s.pg_base_snapshot
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "backup {aof_id} (redis): skipped: file type \"AOF-Redis 7.0\" is not an RDB file"
        )),
        "{}",
        run.stderr
    );
    assert!(h.set_dirs(&s.pg_snapshot_instance_id).is_empty());
    assert!(!h.set_dirs(REDIS).iter().any(|d| d.contains("aof")));
    // Everything else was fetched as before.
    assert_eq!(h.set_dirs(REDIS).len(), 4);
    assert_eq!(h.set_dirs(PG).len(), 12);
    let snapshot = h
        .emulator
        .state()
        .pg_backups(&s.pg_snapshot_instance_id, PgBackupKind::Base)
        .unwrap();
    let aof = h
        .redis_backups()
        .into_iter()
        .find(|b| b.backup_id == aof_id)
        .unwrap();
    for key in [&snapshot[0].file.cos_key, &aof.files[0].cos_key] {
        assert_eq!(h.requests(key), 0, "{key} was requested");
        assert_eq!(h.served(key), 0, "{key} was served");
    }
    let asked = |action: &str, field: &str, id: &str| {
        h.emulator
            .state()
            .received_params(action)
            .iter()
            .any(|p| p[field] == id)
    };
    assert!(!asked("DescribeBackupUrl", "BackupId", aof_id));
    assert!(!asked(
        "DescribeBackupDownloadURL",
        "BackupId",
        &s.pg_base_snapshot
    ));

    // `list` shows them with the reason, in text and JSON.
    let run = h.run(&["list", "--json"]);
    run.assert_code(0);
    let rows: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    let row = |id: &str| rows.iter().find(|r| r["backup_id"] == id).unwrap();
    let snap = row(&s.pg_base_snapshot);
    assert!(snap["not_fetched"].as_str().unwrap().contains("snapshot"));
    assert_eq!(snap["meta"]["backup_method"], "snapshot");
    assert!(snap["local_dir"].is_null());
    assert!(row(aof_id)["not_fetched"]
        .as_str()
        .unwrap()
        .contains("AOF-Redis 7.0"));
    assert!(row(&s.redis_finished[0]).get("not_fetched").is_none());
    let run = h.run(&["list"]);
    run.assert_code(0);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains(&s.pg_base_snapshot))
        .unwrap();
    assert!(line.contains("not fetched"), "{line}");
    assert!(line.contains("snapshot"), "{line}");

    // A second run is quiet about downloads and still exits 0.
    let run = h.now();
    run.assert_code(0);
    assert!(run.stderr.contains("0 set(s) published"), "{}", run.stderr);
}
