//! Leftovers of interrupted publishes and deletes: hidden `.tmp-*` and
//! `.deleting-*` directories in an instance directory are removed by the
//! next run that holds the download directory's lock, and only those.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tcbackup_core::store::Store;
use tcbackup_signing::clock::SystemClock;

use crate::common::*;

/// Every file of every published set, with its bytes.
fn published_files(h: &Harness) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for instance in [REDIS, PG] {
        for set in h.set_dirs(instance) {
            let dir = h.instance_dir(instance).join(&set);
            for file in files_under(&dir) {
                let bytes = std::fs::read(dir.join(&file)).unwrap();
                out.insert(PathBuf::from(instance).join(&set).join(file), bytes);
            }
        }
    }
    out
}

/// Issue 8, defect 4: a crash during a delete (`.deleting-*`) or a publish
/// whose staging directory was never cleaned up (`.tmp-*`) leaves hidden
/// directories as big as a backup. While another process holds the lock
/// they are left alone (they could be its work in progress); the next run
/// that holds the lock removes them, and leaves every published set and
/// any other hidden entry exactly as it was.
#[test]
fn hidden_leftovers_are_removed_by_the_next_run_and_nothing_else() {
    let h = Harness::sample();
    h.now().assert_code(0);
    let sets_before = (h.set_dirs(REDIS), h.set_dirs(PG));
    let files_before = published_files(&h);
    assert!(!files_before.is_empty());

    let plant = |instance: &str, name: &str| {
        let dir = h.instance_dir(instance).join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("shard-1.rdb"), vec![7u8; 1 << 20]).unwrap();
        dir
    };
    let planted = [
        plant(REDIS, ".deleting-2020-01-01T000000Z_redis_165706342-1-1"),
        plant(REDIS, ".tmp-2020-01-02T000000Z_redis_165706342-2-2"),
        plant(PG, ".deleting-2020-01-03T000000Z_base_gone"),
    ];
    // Not a leftover of tcbackup's: left alone.
    plant(REDIS, ".operator-notes");

    // Another tcbackup is live (it holds the lock): this run refuses and
    // touches nothing of what might be that process's work.
    let other = Store::open(&h.download_dir, Arc::new(SystemClock));
    let held = other.lock().unwrap();
    let run = h.now();
    run.assert_code(1);
    assert!(
        run.stderr.contains("another tcbackup is running"),
        "{}",
        run.stderr
    );
    for dir in &planted {
        assert!(
            dir.exists(),
            "{} removed under another's lock",
            dir.display()
        );
    }
    drop(held);

    let run = h.now();
    run.assert_code(0);
    assert!(
        run.stderr.contains("removed the leftover"),
        "{}",
        run.stderr
    );
    assert_eq!(
        h.hidden_entries(REDIS),
        [".operator-notes".to_string()].into(),
        "{}",
        run.stderr
    );
    assert!(
        h.hidden_entries(PG).is_empty(),
        "{:?}",
        h.hidden_entries(PG)
    );
    assert_eq!((h.set_dirs(REDIS), h.set_dirs(PG)), sets_before);
    assert_eq!(published_files(&h), files_before);
    h.run(&["verify"]).assert_code(0);
}
