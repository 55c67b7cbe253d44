//! SIGTERM in the middle of a transfer: exit 130, resumable state under
//! `.partial/`, and a next run that continues instead of starting over;
//! while the transfer runs, a second run keeps out of the directory.

use std::time::Duration;

use chrono::Duration as Age;
use tcbackup_emulator::cos::{Fault, FaultTarget, Repeat};
use tcbackup_emulator::{sample, PgBackupKind};

use crate::common::*;

const LEN: u64 = 24 << 20;
const STALL_AT: u64 = 8 << 20;

/// SIGTERM while 8 MiB of a 24 MiB file are in: exit 130, the `.part`
/// file and its sidecar stay in `.partial/`, and the next run asks COS
/// only for the bytes after the recorded offset and publishes a file
/// identical to the object.
#[test]
fn sigterm_mid_transfer_exits_130_and_the_next_run_resumes() {
    let h = Harness::empty_postgres();
    let start = whole_seconds(h.emulator.clock().now() - Age::hours(1));
    let id = "5d1c0ffe-0000-4000-8000-00000000big1";
    sample::add_generated_pg_base_backup(h.emulator.state(), PG, id, start, LEN, 42).unwrap();
    let backup = h.pg_backups(PgBackupKind::Base).pop().unwrap();
    let key = backup.file.cos_key.clone();
    // The first response sends 8 MiB and then nothing: the transfer is in
    // flight, deterministically, when the signal arrives.
    h.emulator.cos().add_fault(
        FaultTarget::Key(key.clone()),
        Fault::StallAfter(STALL_AT),
        Repeat::Times(1),
    );

    let partial = h
        .download_dir
        .join(".partial")
        .join(PG)
        .join(format!("base_{id}"));
    let part = partial.join(format!("{}.part", backup.file.name));
    let sidecar = partial.join(format!("{}.part.json", backup.file.name));

    let child = h.spawn(&["--now"]);
    // The part file is preallocated to its full size, so progress is read
    // from the sidecar, which records what was written.
    let recorded = || sidecar_recorded_bytes(&sidecar);
    wait_for(
        Duration::from_secs(60),
        "the download to record progress",
        || recorded() >= STALL_AT / 2,
    );
    // Meanwhile a second run refuses to share the download directory.
    let requests = h.requests(&key);
    let second = h.now();
    second.assert_code(1);
    assert!(
        second.stderr.contains("another tcbackup is running"),
        "{}",
        second.stderr
    );
    assert_eq!(h.requests(&key), requests, "the second run downloaded");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let run = h.wait(child);
    run.assert_code(130);
    assert!(run.stderr.contains("SIGTERM"), "{}", run.stderr);
    assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
    // The summary does not call the unfinished instance ok.
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with(&format!("{PG} (postgres): INTERRUPTED: "))),
        "{}",
        run.stderr
    );

    // Resumable state is kept in the private area, nothing is published.
    assert!(part.is_file(), "{}", part.display());
    assert!(sidecar.is_file(), "{}", sidecar.display());
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    let written: u64 = state["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["written"].as_u64().unwrap() - s["start"].as_u64().unwrap())
        .sum();
    assert!(
        (STALL_AT / 2..=STALL_AT).contains(&written),
        "sidecar records {written} bytes"
    );
    assert!(h.set_dirs(PG).is_empty());

    // The next run asks only for the rest.
    h.emulator.cos().reset_stats();
    let run = h.now();
    run.assert_code(0);
    let served = h.served(&key);
    assert_eq!(served, LEN - written, "resumed from {written}");
    let ranges = h.emulator.cos().stats(&key).ranges();
    assert_eq!(
        ranges.first().cloned().flatten().as_deref(),
        Some(format!("bytes={written}-").as_str()),
        "{ranges:?}"
    );
    let dir = h.instance_dir(PG).join(set_dir(start, "base", id));
    assert_published_set(&dir, "base", id, std::slice::from_ref(&backup.file.name));
    assert_eq!(
        crc64_file(&dir.join(&backup.file.name)),
        h.object_crc64(&key)
    );
    assert!(h.partial_files().is_empty(), "{:?}", h.partial_files());
}
