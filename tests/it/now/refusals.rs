//! What tcbackup refuses, and how it says so: hostile file names, a
//! misspelt config key, a wrong secret key; and what it never says: secrets.

use std::path::PathBuf;

use crate::common::*;

/// A file name like `../../x.rdb` fails its set (exit 1) with an error that
/// names it; nothing lands outside `download_dir` (nor anywhere else under
/// that name), the set has no directory, and the other sets still arrive.
#[test]
fn file_name_with_a_path_is_refused_and_nothing_escapes() {
    let h = Harness::sample();
    let mut redis = h.redis_backups();
    redis.sort_by_key(|b| std::cmp::Reverse(b.start));
    let target = redis
        .iter()
        .find(|b| b.status == tcbackup_emulator::redis_status::NORMAL)
        .unwrap()
        .clone();
    h.emulator
        .state()
        .set_redis_file_name(REDIS, &target.backup_id, 0, "../../x.rdb")
        .unwrap();
    let outside = h.tmp.path().parent().unwrap().join("x.rdb");
    let existed_outside = outside.exists();

    let run = h.now();
    run.assert_code(1);
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("  backup {}: ", target.backup_id)))
        .unwrap_or_else(|| panic!("no failure line in\n{}", run.stderr));
    assert!(line.contains("\"../../x.rdb\""), "{line}");
    assert!(line.contains("not a plain file name"), "{line}");

    // Only the config lies outside download_dir; no x.rdb anywhere.
    let all = files_under(h.tmp.path());
    let outside_download: Vec<&PathBuf> = all
        .iter()
        .filter(|p| !h.tmp.path().join(p).starts_with(&h.download_dir))
        .collect();
    assert_eq!(outside_download, vec![&PathBuf::from("tcbackup.toml")]);
    assert!(
        !all.iter()
            .any(|p| p.file_name().is_some_and(|n| n == "x.rdb")),
        "{all:?}"
    );
    assert_eq!(outside.exists(), existed_outside, "{}", outside.display());
    // The refused set has no directory and fetched nothing; the others arrived.
    let refused = set_dir(target.start, "redis", &target.backup_id);
    assert!(!h.set_dirs(REDIS).contains(&refused));
    assert_eq!(h.set_dirs(REDIS).len(), 3);
    for f in &target.files {
        assert_eq!(h.requests(&f.cos_key), 0, "{} fetched", f.name);
    }
    assert_eq!(h.set_dirs(PG).len(), 12);
}

/// A misspelt key is a configuration error: exit 2, the message names the
/// key and its line, and nothing was touched: no download directory, no
/// API call, no download.
#[test]
fn misspelt_config_key_exits_2_and_touches_nothing() {
    let h = Harness::sample();
    let cfg = Cfg {
        retention_extra: vec!["keep_lst = 2".to_string()],
        ..Cfg::default()
    };
    let text = h.config_text(&cfg);
    h.write_config_text(&text);
    let line = text
        .lines()
        .position(|l| l.starts_with("keep_lst"))
        .unwrap()
        + 1;

    let run = h.now();
    run.assert_code(2);
    assert!(
        run.stderr.contains(&format!("tcbackup.toml:{line}:")),
        "line {line} in\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("`keep_lst`"), "{}", run.stderr);
    assert!(
        run.stderr.contains("keep_last"),
        "suggests the fix: {}",
        run.stderr
    );
    assert!(!h.download_dir.exists(), "download_dir was created");
    assert_eq!(h.emulator.state().total_requests(), 0, "the API was called");
    assert_eq!(h.served_total(), 0);
}

/// A wrong secret key is an authentication failure: exit 3, the API's
/// error code is named, nothing is downloaded.
#[test]
fn wrong_secret_key_exits_3_naming_the_error_code() {
    let h = Harness::sample();
    let wrong = "tcbackupWrongSecretKey000000000000000";
    h.write_config(&Cfg {
        secret_key: Some(wrong.to_string()),
        ..Cfg::default()
    });
    let run = h.now();
    run.assert_code(3);
    assert!(
        run.stderr.contains("AuthFailure.SignatureFailure"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(wrong), "the key was printed");
    assert_eq!(h.served_total(), 0);
    assert!(h.set_dirs(REDIS).is_empty() && h.set_dirs(PG).is_empty());
}

/// At the highest verbosity a full pull with temporary credentials logs
/// URLs and API answers, but neither the secret key nor the token, and
/// every URL signature is redacted.
#[test]
fn no_secret_in_the_most_verbose_logs() {
    let h = Harness::sample();
    let (id, key, token) = (
        "AKIDtemporaryE2E0000000000000000000000",
        "temporarySecretKeyE2E00000000000000000",
        "temporaryTokenE2E0000000000000000000000000000000000000000000",
    );
    let expires = h.emulator.clock().now() + chrono::Duration::hours(2);
    h.emulator
        .state()
        .add_temporary_credential(id, key, token, expires);
    h.write_config(&Cfg {
        secret_id: Some(id.to_string()),
        secret_key: Some(key.to_string()),
        token: Some(token.to_string()),
        ..Cfg::default()
    });
    let run = h.run(&["-vv", "--now"]);
    run.assert_code(0);
    let log = &run.stderr;
    assert!(log.contains("TRACE"), "not verbose:\n{log}");
    assert!(
        log.contains("download url obtained"),
        "URLs are logged:\n{log}"
    );
    assert!(!log.contains(key), "the secret key was logged");
    assert!(!log.contains(token), "the token was logged");
    // Both URL shapes were logged, redacted.
    assert!(
        assert_redacted(log, "q-signature=") > 0,
        "no PostgreSQL URL logged"
    );
    assert!(assert_redacted(log, "?sign=") > 0, "no Redis URL logged");
    assert_redacted(log, "&sign=");
    assert_redacted(log, "x-cos-security-token=");
    assert!(!log.contains("Signature="), "a TC3 signature was logged");
}

/// A permission failure on one instance wins over a failed set on another
/// (exit 3, not 1); both are reported, and what could be fetched was.
#[test]
fn permission_failure_wins_over_a_failed_set() {
    let h = Harness::sample();
    h.emulator.state().inject_fault(
        "DescribeBackupDownloadURL",
        tcbackup_emulator::ApiFault::Code {
            code: "AuthFailure.UnauthorizedOperation".to_string(),
            message: "you are not authorized to perform this operation".to_string(),
        },
        100,
    );
    let target = h
        .redis_backups()
        .into_iter()
        .find(|b| b.status == tcbackup_emulator::redis_status::NORMAL)
        .unwrap();
    h.emulator
        .state()
        .set_redis_file_name(REDIS, &target.backup_id, 2, "")
        .unwrap();

    let run = h.now();
    run.assert_code(3);
    assert!(
        run.stderr.contains("AuthFailure.UnauthorizedOperation"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("  backup {}: ", target.backup_id)),
        "{}",
        run.stderr
    );
    assert_eq!(h.set_dirs(REDIS).len(), 3, "the other Redis sets arrived");
    assert!(h.set_dirs(PG).is_empty());
}

/// Bytes that are not an RDB file fail verification: exit 1 naming the
/// shard, no set directory, and the download is discarded rather than
/// kept for resume (the next run fetches it afresh).
#[test]
fn a_shard_that_is_not_an_rdb_file_fails_verification_and_is_discarded() {
    let h = Harness::sample();
    let start = whole_seconds(h.emulator.clock().now() - chrono::Duration::minutes(10));
    let id = format!("165706342-5832997-{}", start.timestamp());
    tcbackup_emulator::sample::add_generated_redis_backup(
        h.emulator.state(),
        REDIS,
        &id,
        start,
        100_000,
        5,
    )
    .unwrap();

    let run = h.now();
    run.assert_code(1);
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("  backup {id}: ")))
        .unwrap_or_else(|| panic!("no failure line for {id} in\n{}", run.stderr));
    assert!(line.contains("verification failed"), "{line}");
    assert!(!h.set_dirs(REDIS).contains(&set_dir(start, "redis", &id)));
    assert_eq!(h.set_dirs(REDIS).len(), 4, "the sample sets arrived");
    let failed = (1..=3)
        .map(|shard| format!("{id}-{shard}.rdb"))
        .find(|name| line.contains(name.as_str()))
        .unwrap_or_else(|| panic!("no shard named in {line}"));
    let leftovers: Vec<_> = h
        .partial_files()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&failed)
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "the failed download was kept: {leftovers:?}"
    );
}
