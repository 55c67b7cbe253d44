//! The content check of PostgreSQL archives end to end: a backup that is
//! corrupt at the source (COS serves it with the right size and the CRC of
//! the corrupt bytes) fails its set and publishes nothing; good archives
//! publish with the checks they passed in the manifest; a file whose name
//! says no archive format publishes with the checks it skipped.

use chrono::Duration as Age;
use tcbackup_emulator::sample::targz::{corrupt_targz, Corruption};
use tcbackup_emulator::{sample, ObjectBody, PgBackupKind, PgBackupSpec};

use crate::common::*;

/// Add one finished base backup named `name` holding `body`; its start.
fn add_base(h: &Harness, id: &str, name: &str, body: Vec<u8>) -> chrono::DateTime<chrono::Utc> {
    let start = whole_seconds(h.emulator.clock().now() - Age::hours(1));
    h.emulator
        .state()
        .add_pg_backup(
            PG,
            PgBackupSpec::finished(
                PgBackupKind::Base,
                id,
                start,
                name,
                ObjectBody::Bytes(body.into()),
            ),
        )
        .unwrap();
    start
}

#[test]
fn an_archive_corrupt_at_the_source_fails_and_publishes_nothing() {
    for (how, says) in [
        (Corruption::GzipCrc, "gzip CRC-32 mismatch"),
        (
            Corruption::TarHeader,
            "tar header checksum mismatch at tar offset 0",
        ),
    ] {
        let h = Harness::empty_postgres();
        let id = "ba5eba5e-0000-4000-8000-0000000c0rpt";
        let good = sample::sample_base_backup(3, h.emulator.clock().now()).unwrap();
        let bad = corrupt_targz(&good, how).unwrap();
        let start = add_base(&h, id, "automatic-corrupt.tar.gz", bad.clone());
        // COS vouches for the corrupt bytes: only the content check can tell.
        let key = h.pg_backups(PgBackupKind::Base)[0].file.cos_key.clone();
        let crc = {
            let mut d = crc64fast::Digest::new();
            d.write(&bad);
            d.sum64()
        };
        assert_eq!(h.object_crc64(&key), crc);

        let run = h.now();
        run.assert_code(1);
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("  backup {id}: ")))
            .unwrap_or_else(|| panic!("no failure line for {id} in\n{}", run.stderr));
        assert!(line.contains("verification failed"), "{line}");
        assert!(line.contains("automatic-corrupt.tar.gz"), "{line}");
        assert!(line.contains(says), "{how:?}: {line}");
        assert!(h.set_dirs(PG).is_empty(), "{:?}", h.set_dirs(PG));
        assert!(!h.instance_dir(PG).join(set_dir(start, "base", id)).exists());
        // Discarded, not kept for resume (the directory's owner marker stays).
        let kept: Vec<_> = h
            .partial_files()
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("automatic-corrupt.tar.gz")
            })
            .collect();
        assert!(kept.is_empty(), "the corrupt download was kept: {kept:?}");
    }
}

#[test]
fn good_archives_publish_with_their_checks_and_unknown_names_with_what_was_skipped() {
    let h = Harness::empty_postgres();
    let now = h.emulator.clock().now();
    let id = "ba5eba5e-0000-4000-8000-000000000g0d";
    let start = add_base(
        &h,
        id,
        "automatic-good.tar.gz",
        sample::sample_base_backup(4, now).unwrap(),
    );
    let run = h.now();
    run.assert_code(0);
    let set = h.instance_dir(PG).join(set_dir(start, "base", id));
    let m = manifest(&set);
    let checks = &m["files"][0]["content_checks"];
    assert_eq!(checks["format"], "tar.gz", "{m:#}");
    assert_eq!(
        checks["passed"],
        serde_json::json!(["gzip CRC-32 and length", "tar headers"]),
        "{m:#}"
    );
    assert_eq!(checks["skipped"], serde_json::json!([]), "{m:#}");

    // A file whose name says no archive: published, its skipped checks said.
    let h = Harness::empty_postgres();
    let id = "ba5eba5e-0000-4000-8000-0000000unkn0";
    let start = add_base(&h, id, "automatic-other.bak", b"whatever it is".to_vec());
    let run = h.now();
    run.assert_code(0);
    assert!(
        run.stderr.contains("content checks were skipped"),
        "{}",
        run.stderr
    );
    let m = manifest(&h.instance_dir(PG).join(set_dir(start, "base", id)));
    let checks = &m["files"][0]["content_checks"];
    assert!(checks.get("format").is_none(), "{m:#}");
    assert_eq!(checks["passed"], serde_json::json!([]), "{m:#}");
    assert_eq!(
        checks["skipped"],
        serde_json::json!(["compression framing", "tar headers"]),
        "{m:#}"
    );
}
