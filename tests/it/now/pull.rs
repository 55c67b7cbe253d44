//! A full pull of both services, a second run that fetches nothing, and
//! new backups that appear between runs.

use chrono::Duration;
use tcbackup_emulator::{redis_status, sample, ObjectBody, PgBackupKind, PgBackupSpec};

use crate::common::*;

/// Every finished Redis backup and every finished PostgreSQL base and log
/// backup becomes a set directory named by its UTC start, holding the
/// files as the API named them (one RDB per shard) and a manifest whose
/// sizes and SHA-256 match the bytes on disk, which are the bytes COS
/// holds; backups still running are not fetched at all.
#[test]
fn full_pull_publishes_every_finished_backup_and_nothing_else() {
    let h = Harness::sample();
    let run = h.now();
    run.assert_code(0);

    // Redis: one set per finished backup, one RDB per shard.
    let redis = h.redis_backups();
    let finished: Vec<_> = redis
        .iter()
        .filter(|b| b.status == redis_status::NORMAL)
        .collect();
    let running: Vec<_> = redis
        .iter()
        .filter(|b| b.status == redis_status::IN_PROGRESS)
        .collect();
    assert_eq!((finished.len(), running.len()), (4, 1));
    let mut expected_dirs = std::collections::BTreeSet::new();
    for b in &finished {
        let name = set_dir(b.start, "redis", &b.backup_id);
        let dir = h.instance_dir(REDIS).join(&name);
        let files: Vec<String> = b.files.iter().map(|f| f.name.clone()).collect();
        assert_eq!(files.len(), sample::SAMPLE_REDIS_SHARDS as usize);
        assert_published_set(&dir, "redis", &b.backup_id, &files);
        for f in &b.files {
            let path = dir.join(&f.name);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), f.size);
            assert!(f.name.ends_with(".rdb"));
            assert_eq!(&std::fs::read(&path).unwrap()[..5], b"REDIS");
            assert_eq!(crc64_file(&path), h.object_crc64(&f.cos_key), "{}", f.name);
        }
        expected_dirs.insert(name);
    }
    assert_eq!(h.set_dirs(REDIS), expected_dirs);
    for f in &running[0].files {
        assert_eq!(h.requests(&f.cos_key), 0, "in-progress {} fetched", f.name);
    }

    // PostgreSQL: base and log backups, one file each.
    let mut expected_dirs = std::collections::BTreeSet::new();
    let mut running_keys = Vec::new();
    for (kind, label) in [(PgBackupKind::Base, "base"), (PgBackupKind::Log, "log")] {
        for b in h.pg_backups(kind) {
            if b.state != "finished" {
                running_keys.push(b.file.cos_key.clone());
                continue;
            }
            let name = set_dir(b.start, label, &b.id);
            let dir = h.instance_dir(PG).join(&name);
            assert_published_set(&dir, label, &b.id, std::slice::from_ref(&b.file.name));
            let path = dir.join(&b.file.name);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), b.file.size);
            assert_eq!(crc64_file(&path), h.object_crc64(&b.file.cos_key));
            expected_dirs.insert(name);
        }
    }
    assert_eq!(expected_dirs.len(), 4 + 8, "4 base and 8 log backups");
    assert_eq!(h.set_dirs(PG), expected_dirs);
    assert_eq!(running_keys.len(), 1, "the sample has one running base");
    assert_eq!(h.requests(&running_keys[0]), 0, "running base fetched");

    // No leftovers: no partial files, no staging directories.
    assert_eq!(h.partial_files(), Vec::<std::path::PathBuf>::new());
    assert!(
        h.hidden_entries(REDIS).is_empty(),
        "{:?}",
        h.hidden_entries(REDIS)
    );
    assert!(
        h.hidden_entries(PG).is_empty(),
        "{:?}",
        h.hidden_entries(PG)
    );
    assert!(run.stderr.contains("16 set(s) published"), "{}", run.stderr);
}

/// A second run with nothing new downloads nothing and asks for no URL.
#[test]
fn second_run_downloads_nothing() {
    let h = Harness::sample();
    h.now().assert_code(0);
    let served = h.served_total();
    assert!(served > 0);
    let urls = h.emulator.state().request_count("DescribeBackupUrl")
        + h.emulator
            .state()
            .request_count("DescribeBackupDownloadURL");
    let before = h.set_dirs(REDIS).len() + h.set_dirs(PG).len();

    let run = h.now();
    run.assert_code(0);
    assert_eq!(h.served_total(), served, "COS served bytes again");
    assert_eq!(
        h.emulator.state().request_count("DescribeBackupUrl")
            + h.emulator
                .state()
                .request_count("DescribeBackupDownloadURL"),
        urls,
        "download URLs were resolved again"
    );
    assert_eq!(h.set_dirs(REDIS).len() + h.set_dirs(PG).len(), before);
    assert!(run.stderr.contains("0 set(s) published"), "{}", run.stderr);
}

/// Backups that appear between runs are pulled, and only they.
#[test]
fn new_backups_between_runs_are_the_only_ones_pulled() {
    let h = Harness::sample();
    h.now().assert_code(0);
    let old_keys = h.all_cos_keys();
    h.emulator.cos().reset_stats();

    let start = whole_seconds(h.emulator.clock().now() - Duration::minutes(10));
    let state = h.emulator.state();
    let redis_id = format!("165706342-5832999-{}", start.timestamp());
    let mut spec = tcbackup_emulator::RedisBackupSpec::finished(redis_id.clone(), start);
    for shard in 1..=sample::SAMPLE_REDIS_SHARDS {
        spec = spec.file(
            sample::redis_file_name(5_832_999, shard),
            ObjectBody::Bytes(
                sample::sample_rdb(99 + u64::from(shard), start.timestamp(), shard).into(),
            ),
        );
    }
    state.add_redis_backup(REDIS, spec).unwrap();
    let base_id = "0f4b1d4e-0000-4000-8000-00000000new1";
    state
        .add_pg_backup(
            PG,
            PgBackupSpec::finished(
                PgBackupKind::Base,
                base_id,
                start,
                "manual-new.tar.gz",
                ObjectBody::Bytes(sample::sample_base_backup(7, start).unwrap().into()),
            ),
        )
        .unwrap();
    let log_id = "0f4b1d4e-0000-4000-8000-00000000new2";
    let mut log = PgBackupSpec::finished(
        PgBackupKind::Log,
        log_id,
        start + Duration::minutes(4),
        "000000010000000000000099.tar.gz",
        ObjectBody::Bytes(sample::sample_log_backup(8, start, 0x99).unwrap().into()),
    );
    log.finish = Some(start + Duration::minutes(5));
    state.add_pg_backup(PG, log).unwrap();
    // And the backup that was in progress has finished since.
    let was_running = h
        .redis_backups()
        .into_iter()
        .find(|b| b.status == redis_status::IN_PROGRESS)
        .unwrap();
    state
        .set_redis_backup_status(REDIS, &was_running.backup_id, redis_status::NORMAL)
        .unwrap();
    state
        .set_redis_backup_locked(REDIS, &was_running.backup_id, false)
        .unwrap();

    let redis_before = h.set_dirs(REDIS);
    let pg_before = h.set_dirs(PG);
    let run = h.now();
    run.assert_code(0);
    assert!(run.stderr.contains("4 set(s) published"), "{}", run.stderr);

    let finished_since: Vec<&str> = was_running
        .files
        .iter()
        .map(|f| f.cos_key.as_str())
        .collect();
    for key in old_keys
        .iter()
        .filter(|k| !finished_since.contains(&k.as_str()))
    {
        assert_eq!(h.requests(key), 0, "old object {key} fetched again");
    }
    let new = h
        .redis_backups()
        .into_iter()
        .find(|b| b.backup_id == redis_id)
        .unwrap();
    for f in &new.files {
        assert_eq!(
            h.served(&f.cos_key),
            f.size,
            "{} served once, whole",
            f.name
        );
    }
    let redis_after = h.set_dirs(REDIS);
    let added: std::collections::BTreeSet<_> =
        redis_after.difference(&redis_before).cloned().collect();
    let expected: std::collections::BTreeSet<_> = [
        set_dir(start, "redis", &redis_id),
        set_dir(was_running.start, "redis", &was_running.backup_id),
    ]
    .into();
    assert_eq!(added, expected);
    for b in [&new, &was_running] {
        let files: Vec<String> = b.files.iter().map(|f| f.name.clone()).collect();
        let dir = h
            .instance_dir(REDIS)
            .join(set_dir(b.start, "redis", &b.backup_id));
        assert_published_set(&dir, "redis", &b.backup_id, &files);
    }

    let pg_after = h.set_dirs(PG);
    let added: std::collections::BTreeSet<_> = pg_after.difference(&pg_before).cloned().collect();
    let expected: std::collections::BTreeSet<_> = [
        set_dir(start, "base", base_id),
        set_dir(start + Duration::minutes(4), "log", log_id),
    ]
    .into();
    assert_eq!(added, expected);
    assert!(pg_before.is_subset(&pg_after), "nothing old was pruned");
}
