//! Free space on a nearly full disk, end to end: `download_dir` is a
//! 100 MiB tmpfs (tests and CI run as root; elsewhere the test says it
//! skipped), and an 80 MiB backup interrupted early is published by
//! the next run.

use std::time::Duration;

use chrono::Duration as Age;
use tcbackup_emulator::cos::{Fault, FaultTarget, Repeat};
use tcbackup_emulator::{sample, PgBackupKind};

use crate::common::tmpfs::SmallFs;
use crate::common::*;

const MIB: u64 = 1 << 20;

/// SIGTERM 8 MiB into an 80 MiB base backup on a 100 MiB file system:
/// the preallocated part file leaves 20 MiB free, which is all the next
/// run needs (nothing), so it resumes and publishes the backup.
#[test]
fn a_backup_interrupted_on_a_nearly_full_disk_is_published_by_the_next_run() {
    let h = Harness::empty_postgres();
    let Some(_fs) = SmallFs::mount(&h.download_dir, 100) else {
        return;
    };
    let text = h.config_text(&Cfg::default().postgres_only())
        + "\n[transfer]\nfree_space_margin = \"4MiB\"\nsegments = 4\n";
    h.write_config_text(&text);
    let len = 80 * MIB;
    let start = whole_seconds(h.emulator.clock().now() - Age::hours(1));
    let id = "5d1c0ffe-0000-4000-8000-0000000full1";
    sample::add_generated_pg_base_backup(h.emulator.state(), PG, id, start, len, 43).unwrap();
    let backup = h.pg_backups(PgBackupKind::Base).pop().unwrap();
    let key = backup.file.cos_key.clone();
    // Four pieces of 20 MiB (`segments = 4` caps the connections and so
    // sets the piece count), halved as they are taken while fewer wait
    // than there are workers; the four streams in flight each stop after
    // 2 MiB.
    h.emulator.cos().add_fault(
        FaultTarget::Key(key.clone()),
        Fault::StallAfter(2 * MIB),
        Repeat::Times(4),
    );
    let sidecar = h
        .download_dir
        .join(".partial")
        .join(PG)
        .join(format!("base_{id}"))
        .join(format!("{}.part.json", backup.file.name));
    let recorded = || sidecar_recorded_bytes(&sidecar);

    let child = h.spawn(&["--now"]);
    wait_for(
        Duration::from_secs(60),
        "the download to record progress",
        || recorded() >= 8 * MIB,
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    h.wait(child).assert_code(130);
    assert_eq!(recorded(), 8 * MIB);
    h.emulator.cos().release_stalls();

    let run = h.now();
    run.assert_code(0);
    assert!(
        !run.stderr.contains("not enough free space"),
        "{}",
        run.stderr
    );
    let dir = h.instance_dir(PG).join(set_dir(start, "base", id));
    assert_published_set(&dir, "base", id, std::slice::from_ref(&backup.file.name));
    assert_eq!(
        crc64_file(&dir.join(&backup.file.name)),
        h.object_crc64(&key)
    );
    assert_eq!(h.served(&key), len, "not one byte twice");
}
