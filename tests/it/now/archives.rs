//! The content check of PostgreSQL archives end to end: a backup that is
//! corrupt at the source (COS serves it with the right size and the CRC of
//! the corrupt bytes) fails its set and publishes nothing; good archives
//! publish with the checks they passed in the manifest; a file whose name
//! says no archive format publishes with the checks it skipped. Both
//! compressions, gzip and zstd, are covered.

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
    for (how, name, says) in [
        (
            Some(Corruption::GzipCrc),
            "automatic-corrupt.tar.gz",
            "gzip CRC-32 mismatch",
        ),
        (
            Some(Corruption::TarHeader),
            "automatic-corrupt.tar.gz",
            "tar header checksum mismatch at tar offset 0",
        ),
        (
            None,
            "automatic-corrupt.tar.zst",
            "zstd frame checksum mismatch",
        ),
    ] {
        let h = Harness::empty_postgres();
        let id = "ba5eba5e-0000-4000-8000-0000000c0rpt";
        let now = h.emulator.clock().now();
        let bad = match how {
            Some(how) => corrupt_targz(&sample::sample_base_backup(3, now).unwrap(), how).unwrap(),
            None => {
                // The frame's content checksum is its last four bytes.
                let mut zst = sample::sample_base_backup_zst(3, now).unwrap();
                let n = zst.len();
                zst[n - 1] ^= 0x01;
                zst
            }
        };
        let start = add_base(&h, id, name, bad.clone());
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
        assert!(line.contains(name), "{line}");
        assert!(line.contains(says), "{how:?}: {line}");
        assert!(h.set_dirs(PG).is_empty(), "{:?}", h.set_dirs(PG));
        assert!(!h.instance_dir(PG).join(set_dir(start, "base", id)).exists());
        // Discarded, not kept for resume (the directory's owner marker stays).
        let kept: Vec<_> = h
            .partial_files()
            .into_iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(name))
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

/// The sample's base backups, `.tar.gz` and `.tar.zst`, all publish, each
/// manifest recording the checks its format passed.
#[test]
fn the_sample_archives_of_both_compressions_publish_with_their_checks() {
    let h = Harness::sample();
    h.write_config(&Cfg::default().postgres_only());
    h.now().assert_code(0);
    let mut formats = Vec::new();
    for dir in h.set_dirs(PG) {
        let m = manifest(&h.instance_dir(PG).join(&dir));
        let file = &m["files"][0];
        let checks = &file["content_checks"];
        let name = file["name"].as_str().unwrap();
        let expected = if name.ends_with(".tar.zst") {
            serde_json::json!(["zstd framing", "zstd frame checksums", "tar headers"])
        } else {
            assert!(name.ends_with(".tar.gz"), "{name}");
            serde_json::json!(["gzip CRC-32 and length", "tar headers"])
        };
        assert_eq!(checks["passed"], expected, "{m:#}");
        assert_eq!(checks["skipped"], serde_json::json!([]), "{m:#}");
        formats.push(checks["format"].as_str().unwrap().to_string());
    }
    assert!(formats.iter().any(|f| f == "tar.zst"), "{formats:?}");
    assert!(formats.iter().any(|f| f == "tar.gz"), "{formats:?}");
}
