//! Retention as a user sees it: `keep_last`, the PostgreSQL log rule, and
//! a failed set that keeps its instance from being pruned.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use tcbackup_emulator::{
    redis_status, sample, ObjectBody, PgBackup, PgBackupKind, PgBackupSpec, RedisBackupSpec,
};

use crate::common::*;

/// Set directory names of the finished Redis backups, newest first.
fn redis_sets_newest_first(h: &Harness) -> Vec<(String, Vec<String>)> {
    let mut backups: Vec<_> = h
        .redis_backups()
        .into_iter()
        .filter(|b| b.status == redis_status::NORMAL)
        .collect();
    backups.sort_by_key(|b| std::cmp::Reverse(b.start));
    backups
        .iter()
        .map(|b| {
            (
                set_dir(b.start, "redis", &b.backup_id),
                b.files.iter().map(|f| f.cos_key.clone()).collect(),
            )
        })
        .collect()
}

/// Finished PostgreSQL backups of `kind`, newest first.
fn pg_newest_first(h: &Harness, kind: PgBackupKind) -> Vec<PgBackup> {
    let mut backups: Vec<_> = h
        .pg_backups(kind)
        .into_iter()
        .filter(|b| b.state == "finished")
        .collect();
    backups.sort_by_key(|b| std::cmp::Reverse(b.start));
    backups
}

fn base_dir(b: &PgBackup) -> String {
    set_dir(b.start, "base", &b.id)
}

fn log_dir(b: &PgBackup) -> String {
    set_dir(b.start, "log", &b.id)
}

fn finish(b: &PgBackup) -> DateTime<Utc> {
    b.finish.expect("finished backups have a finish time")
}

/// On a first run with `keep_last = 2` only what retention keeps is
/// fetched: the two newest Redis sets, the two newest base backups and the
/// log backups that finished at or after the older of those two started.
#[test]
fn keep_last_two_on_a_first_run_fetches_only_what_is_kept() {
    let h = Harness::sample();
    h.write_config(&Cfg::keep_last(2));
    h.now().assert_code(0);

    let redis = redis_sets_newest_first(&h);
    assert_eq!(redis.len(), 4);
    let kept: BTreeSet<_> = redis[..2].iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(h.set_dirs(REDIS), kept);
    for (_, keys) in &redis[2..] {
        for key in keys {
            assert_eq!(h.requests(key), 0, "{key} was fetched to be deleted");
        }
    }

    let bases = pg_newest_first(&h, PgBackupKind::Base);
    let oldest_kept_base = bases[1].start;
    let logs = pg_newest_first(&h, PgBackupKind::Log);
    let (after, before): (Vec<_>, Vec<_>) =
        logs.iter().partition(|l| finish(l) >= oldest_kept_base);
    assert!(
        !after.is_empty() && !before.is_empty(),
        "sample spans the base"
    );
    let expected: BTreeSet<_> = bases[..2]
        .iter()
        .map(base_dir)
        .chain(after.iter().map(|l| log_dir(l)))
        .collect();
    assert_eq!(h.set_dirs(PG), expected);
    for b in bases[2..].iter().chain(before) {
        assert_eq!(h.requests(&b.file.cos_key), 0, "{} fetched", b.id);
    }
}

/// With more sets on disk than `keep_last = 2`, a run leaves exactly the
/// two newest Redis sets and base backups, and the logs the log rule keeps.
#[test]
fn keep_last_two_prunes_down_to_the_two_newest() {
    let h = Harness::sample();
    h.now().assert_code(0);
    assert_eq!(h.set_dirs(REDIS).len(), 4);
    assert_eq!(h.set_dirs(PG).len(), 12);

    h.write_config(&Cfg::keep_last(2));
    let run = h.now();
    run.assert_code(0);
    let redis = redis_sets_newest_first(&h);
    let kept: BTreeSet<_> = redis[..2].iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(h.set_dirs(REDIS), kept);

    let bases = pg_newest_first(&h, PgBackupKind::Base);
    let logs = pg_newest_first(&h, PgBackupKind::Log);
    let expected: BTreeSet<_> = bases[..2]
        .iter()
        .map(base_dir)
        .chain(
            logs.iter()
                .filter(|l| finish(l) >= bases[1].start)
                .map(log_dir),
        )
        .collect();
    assert_eq!(h.set_dirs(PG), expected);
    let pruned = (redis.len() - 2) + (bases.len() + logs.len() - expected.len());
    assert!(
        run.stderr.contains(&format!("failed, {pruned} pruned, in")),
        "{pruned} pruned in\n{}",
        run.stderr
    );
    assert!(h.hidden_entries(REDIS).is_empty() && h.hidden_entries(PG).is_empty());

    // A backup pruned locally is not fetched again.
    h.emulator.cos().reset_stats();
    let run = h.now();
    run.assert_code(0);
    assert_eq!(h.served_total(), 0, "pruned backups were fetched again");
    assert_eq!(h.set_dirs(REDIS), kept);
    assert!(run.stderr.contains("0 set(s) published"), "{}", run.stderr);
}

/// The log rule: once retention keeps only the two newest base backups,
/// log backups that finished before the older of them started are
/// deleted, and those that finished at or after it are kept, including
/// one that finished at that very second.
#[test]
fn log_backups_follow_the_oldest_kept_base_backup() {
    let h = Harness::sample();
    let bases = pg_newest_first(&h, PgBackupKind::Base);
    let anchor = bases[1].start;
    // Two logs right at the boundary: one finished at the anchor, one a
    // second before it.
    for (id, end, segment) in [
        ("00000000-0000-4000-8000-00000000at00", anchor, 0x90),
        (
            "00000000-0000-4000-8000-0000before00",
            anchor - Duration::seconds(1),
            0x91,
        ),
    ] {
        let start = end - Duration::seconds(20);
        let body = sample::sample_log_backup(segment, start, segment).unwrap();
        let mut spec = PgBackupSpec::finished(
            PgBackupKind::Log,
            id,
            start,
            format!("0000000100000000{segment:08X}.tar.gz"),
            ObjectBody::Bytes(body.into()),
        );
        spec.finish = Some(end);
        h.emulator.state().add_pg_backup(PG, spec).unwrap();
    }
    h.write_config(&Cfg::keep_last(4).postgres_only());
    h.now().assert_code(0);
    let logs = pg_newest_first(&h, PgBackupKind::Log);
    assert_eq!(logs.len(), 10);
    let all_logs: BTreeSet<_> = logs.iter().map(log_dir).collect();
    assert!(
        h.set_dirs(PG).is_superset(&all_logs),
        "every log kept at first"
    );

    h.write_config(&Cfg::keep_last(2).postgres_only());
    h.now().assert_code(0);
    let on_disk = h.set_dirs(PG);
    let mut kept = 0;
    let mut deleted = 0;
    for log in &logs {
        let present = on_disk.contains(&log_dir(log));
        if finish(log) >= anchor {
            assert!(present, "log {} finished at/after the base: kept", log.id);
            kept += 1;
        } else {
            assert!(!present, "log {} finished before the base: deleted", log.id);
            deleted += 1;
        }
    }
    assert!(kept >= 2 && deleted >= 2, "kept {kept}, deleted {deleted}");
    // The boundary, by name: finished at the base's start is kept, a
    // second earlier is deleted.
    let named = |suffix: &str| log_dir(logs.iter().find(|l| l.id.ends_with(suffix)).unwrap());
    assert!(on_disk.contains(&named("at00")));
    assert!(!on_disk.contains(&named("before00")));
    let expected_bases: BTreeSet<_> = bases[..2].iter().map(base_dir).collect();
    let bases_on_disk: BTreeSet<_> = on_disk
        .iter()
        .filter(|d| d.contains("_base_"))
        .cloned()
        .collect();
    assert_eq!(bases_on_disk, expected_bases);
}

/// A backup whose announced FileSize is wrong fails the run (exit 1),
/// leaves no set directory, and keeps its instance from being pruned even
/// though retention would prune it; the other instance completes and is
/// pruned as usual.
#[test]
fn wrong_file_size_fails_the_set_and_blocks_pruning_of_its_instance() {
    let h = Harness::sample();
    h.now().assert_code(0);
    let redis_before = h.set_dirs(REDIS);
    assert_eq!(redis_before.len(), 4);
    let pg_before = h.set_dirs(PG);

    // A new Redis backup with a wrong size on shard 2, and a new base backup.
    h.write_config(&Cfg::keep_last(1));
    let start = whole_seconds(h.emulator.clock().now() - Duration::minutes(10));
    let bad_id = format!("165706342-5832998-{}", start.timestamp());
    let mut spec = RedisBackupSpec::finished(bad_id.clone(), start);
    for shard in 1..=sample::SAMPLE_REDIS_SHARDS {
        spec = spec.file(
            sample::redis_file_name(5_832_998, shard),
            ObjectBody::Bytes(
                sample::sample_rdb(77 + u64::from(shard), start.timestamp(), shard).into(),
            ),
        );
    }
    let state = h.emulator.state();
    state.add_redis_backup(REDIS, spec).unwrap();
    let true_size = h.redis_backups().last().unwrap().files[1].size;
    state
        .set_redis_file_size(REDIS, &bad_id, 1, true_size + 1000)
        .unwrap();
    let base_id = "0f4b1d4e-0000-4000-8000-0000000base9";
    state
        .add_pg_backup(
            PG,
            PgBackupSpec::finished(
                PgBackupKind::Base,
                base_id,
                start,
                "manual-9.tar.gz",
                ObjectBody::Bytes(sample::sample_base_backup(9, start).unwrap().into()),
            ),
        )
        .unwrap();

    let run = h.now();
    run.assert_code(1);
    // The summary names the backup, the file and both sizes.
    let shard = h.redis_backups().last().unwrap().files[1].name.clone();
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("  backup {bad_id}: ")))
        .unwrap_or_else(|| panic!("no failure line for {bad_id} in\n{}", run.stderr));
    assert!(line.contains(shard.as_str()), "{line}");
    assert!(line.contains(&true_size.to_string()), "{line}");
    assert!(line.contains(&(true_size + 1000).to_string()), "{line}");
    assert_eq!(
        line.matches(shard.as_str()).count(),
        1,
        "file named once: {line}"
    );
    // Nothing of the bad set under a final name, nothing of the instance deleted.
    assert_eq!(h.set_dirs(REDIS), redis_before);
    assert!(
        h.hidden_entries(REDIS).is_empty(),
        "{:?}",
        h.hidden_entries(REDIS)
    );
    let bad_dir = set_dir(start, "redis", &bad_id);
    assert!(!h.instance_dir(REDIS).join(&bad_dir).exists());
    assert!(
        run.stderr.contains("retention not applied"),
        "{}",
        run.stderr
    );
    // The other instance completed and was pruned to its newest base.
    let pg_after = h.set_dirs(PG);
    assert!(pg_after.contains(&set_dir(start, "base", base_id)));
    let bases: Vec<_> = pg_after.iter().filter(|d| d.contains("_base_")).collect();
    assert_eq!(bases.len(), 1, "{pg_after:?}");
    assert!(pg_after.len() < pg_before.len() + 1);

    // Once the API reports the right size, the set is published and the
    // instance pruned: retention had been held back, not out of work.
    state
        .set_redis_file_size(REDIS, &bad_id, 1, true_size)
        .unwrap();
    h.now().assert_code(0);
    assert_eq!(h.set_dirs(REDIS), BTreeSet::from([bad_dir]));
}

/// Issue 8, defect 3: on a first run with `keep_last = 2`, when the newest
/// Redis backup fails, the next older one is fetched in its place in the
/// same run (the user has two good copies, not one), nothing older is
/// fetched, and nothing is pruned. Once the newest arrives, retention
/// prunes down to the two newest as usual.
#[test]
fn a_failed_newest_redis_backup_on_a_first_run_fetches_the_next_older_one() {
    let h = Harness::sample();
    h.write_config(&Cfg {
        postgres: Vec::new(),
        ..Cfg::keep_last(2)
    });
    let redis = redis_sets_newest_first(&h);
    assert_eq!(redis.len(), 4);
    let mut newest: Vec<_> = h
        .redis_backups()
        .into_iter()
        .filter(|b| b.status == redis_status::NORMAL)
        .collect();
    newest.sort_by_key(|b| std::cmp::Reverse(b.start));
    let bad = &newest[0];
    let true_size = bad.files[0].size;
    let state = h.emulator.state();
    state
        .set_redis_file_size(REDIS, &bad.backup_id, 0, true_size + 1000)
        .unwrap();

    let run = h.now();
    run.assert_code(1);
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with(&format!("  backup {}: ", bad.backup_id))),
        "{}",
        run.stderr
    );
    let expected: BTreeSet<_> = [redis[1].0.clone(), redis[2].0.clone()].into();
    assert_eq!(h.set_dirs(REDIS), expected);
    for key in &redis[3].1 {
        assert_eq!(h.requests(key), 0, "{key}: older than what is kept");
    }

    state
        .set_redis_file_size(REDIS, &bad.backup_id, 0, true_size)
        .unwrap();
    h.now().assert_code(0);
    let expected: BTreeSet<_> = [redis[0].0.clone(), redis[1].0.clone()].into();
    assert_eq!(h.set_dirs(REDIS), expected);
}

/// Issue 8, defect 3: with `keep_last = 1`, a published base B1 and a newer
/// base B2 whose download fails, the log backups that finished between B1
/// and B2 are fetched all the same: until B2 arrives they are what makes
/// B1 restorable to a point in time, and the cloud copies expire. Nothing
/// is pruned in that run; once B2 arrives, the logs before it go.
#[test]
fn logs_after_the_published_base_are_fetched_when_a_newer_base_fails() {
    let h = Harness::sample();
    h.write_config(&Cfg::keep_last(1).postgres_only());
    h.now().assert_code(0);
    let before = h.set_dirs(PG);
    let b1 = &pg_newest_first(&h, PgBackupKind::Base)[0];
    assert!(before.contains(&base_dir(b1)), "{before:?}");

    // Since then: two logs, the base B2 (announced with a wrong size, so
    // its download fails), and one more log.
    let now = whole_seconds(h.emulator.clock().now());
    let state = h.emulator.state();
    let log_at = |id: &str, start: DateTime<Utc>, segment: u64| {
        let body = sample::sample_log_backup(segment, start, segment).unwrap();
        let mut spec = PgBackupSpec::finished(
            PgBackupKind::Log,
            id,
            start,
            format!("0000000100000000{segment:08X}.tar.gz"),
            ObjectBody::Bytes(body.into()),
        );
        spec.finish = Some(start + Duration::seconds(20));
        state.add_pg_backup(PG, spec).unwrap();
    };
    log_at(
        "00000000-0000-4000-8000-00000between1",
        now - Duration::minutes(25),
        0xa1,
    );
    log_at(
        "00000000-0000-4000-8000-00000between2",
        now - Duration::minutes(20),
        0xa2,
    );
    let b2_id = "00000000-0000-4000-8000-0000000base2";
    let b2_start = now - Duration::minutes(15);
    let b2_body = sample::sample_base_backup(7, b2_start).unwrap();
    let b2_size = b2_body.len() as u64;
    state
        .add_pg_backup(
            PG,
            PgBackupSpec::finished(
                PgBackupKind::Base,
                b2_id,
                b2_start,
                "manual-b2.tar.gz",
                ObjectBody::Bytes(b2_body.into()),
            ),
        )
        .unwrap();
    state.set_pg_file_size(PG, b2_id, b2_size + 1000).unwrap();
    log_at(
        "00000000-0000-4000-8000-0000000after1",
        now - Duration::minutes(5),
        0xa3,
    );
    let new_log = |suffix: &str| {
        log_dir(
            pg_newest_first(&h, PgBackupKind::Log)
                .iter()
                .find(|l| l.id.ends_with(suffix))
                .unwrap(),
        )
    };
    let (between1, between2, after) = (new_log("between1"), new_log("between2"), new_log("after1"));

    let run = h.now();
    run.assert_code(1);
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with(&format!("  backup {b2_id}: "))),
        "{}",
        run.stderr
    );
    let mut expected = before.clone();
    expected.extend([between1.clone(), between2.clone(), after.clone()]);
    assert_eq!(h.set_dirs(PG), expected, "B1 and every log after it");
    assert!(
        run.stderr.contains("retention not applied"),
        "{}",
        run.stderr
    );

    // B2 arrives: B1 and the logs before B2 are pruned, as the log rule says.
    state.set_pg_file_size(PG, b2_id, b2_size).unwrap();
    h.now().assert_code(0);
    // Kept: B2 and every log that finished at or after it started (`after`,
    // and the sample's newest log when it ran past B2's start).
    let mut expected: BTreeSet<_> = pg_newest_first(&h, PgBackupKind::Log)
        .iter()
        .filter(|l| finish(l) >= b2_start)
        .map(log_dir)
        .collect();
    assert!(expected.contains(&after), "{expected:?}");
    expected.insert(set_dir(b2_start, "base", b2_id));
    assert_eq!(h.set_dirs(PG), expected);
}
