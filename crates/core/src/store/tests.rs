use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use sha2::{Digest, Sha256};

use super::*;
use tcbackup_signing::clock::ManualClock;

const INSTANCE: &str = "crs-4y9t57vt";

fn published_at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap()
}

fn store_in(dir: &Path) -> Store {
    Store::open(
        dir.join("download"),
        Arc::new(ManualClock::fixed(published_at())),
    )
}

fn record(name: &str, contents: &[u8]) -> FileRecord {
    FileRecord {
        name: name.to_string(),
        size: contents.len() as u64,
        sha256: hex::encode(Sha256::digest(contents)),
        crc64: 42,
        crc64_checked_against_cos: true,
        content_checks: None,
    }
}

/// A set whose files are written into the store's partial directory.
fn prepared(store: &Store, backup_id: &str, files: &[(&str, &[u8])]) -> SetToPublish {
    let partial = store
        .partial_dir(INSTANCE, BackupKind::Redis, backup_id)
        .unwrap();
    let files = files
        .iter()
        .map(|(name, contents)| {
            let path = partial.join(format!("{name}.part"));
            std::fs::write(&path, contents).unwrap();
            (path, record(name, contents))
        })
        .collect();
    SetToPublish {
        instance_id: INSTANCE.to_string(),
        region: "ap-guangzhou".to_string(),
        kind: BackupKind::Redis,
        backup_id: backup_id.to_string(),
        start: Utc.with_ymd_and_hms(2024, 12, 31, 15, 59, 59).unwrap(),
        finish: Some(Utc.with_ymd_and_hms(2024, 12, 31, 16, 5, 0).unwrap()),
        files,
        encryption: None,
        meta: Default::default(),
    }
}

/// Every file path under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if path.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn publish_then_list_round_trips() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let set = prepared(
        &store,
        "659b0b4d-1f9e",
        &[
            ("shard-1.rdb", b"REDIS0009one"),
            ("shard-2.rdb", b"REDIS0009two"),
        ],
    );
    let published = store.publish(&set).unwrap();
    assert_eq!(published.dir_name, "2024-12-31T155959Z_redis_659b0b4d-1f9e");
    assert_eq!(
        published.dir,
        temp.path()
            .join("download")
            .join(INSTANCE)
            .join("2024-12-31T155959Z_redis_659b0b4d-1f9e")
    );
    assert_eq!(
        std::fs::read(published.dir.join("shard-2.rdb")).unwrap(),
        b"REDIS0009two"
    );
    let manifest = &published.manifest;
    assert_eq!(manifest.format, 1);
    assert_eq!(manifest.service, crate::model::Service::Redis);
    assert_eq!(manifest.published_at, published_at());
    assert_eq!(manifest.tcbackup_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(manifest.files[0], record("shard-1.rdb", b"REDIS0009one"));

    let listing = store.list_sets(INSTANCE).unwrap();
    assert_eq!(listing.sets, std::slice::from_ref(&published));
    assert!(listing.ignored.is_empty(), "{:?}", listing.ignored);
    assert_eq!(
        listing.find(BackupKind::Redis, "659b0b4d-1f9e"),
        Some(&published)
    );
    assert_eq!(store.list_all().unwrap().sets, [published]);
    // Nothing but the set and empty private directories remains.
    let files: Vec<String> = tree(&temp.path().join("download"))
        .into_iter()
        .filter(|path| !path.starts_with(".partial"))
        .collect();
    assert_eq!(
        files,
        [
            "crs-4y9t57vt",
            "crs-4y9t57vt/2024-12-31T155959Z_redis_659b0b4d-1f9e",
            "crs-4y9t57vt/2024-12-31T155959Z_redis_659b0b4d-1f9e/manifest.json",
            "crs-4y9t57vt/2024-12-31T155959Z_redis_659b0b4d-1f9e/shard-1.rdb",
            "crs-4y9t57vt/2024-12-31T155959Z_redis_659b0b4d-1f9e/shard-2.rdb",
        ]
    );
    assert!(!temp
        .path()
        .join("download/.partial/crs-4y9t57vt/redis_659b0b4d-1f9e")
        .exists());
}

#[test]
fn a_refused_file_name_writes_nothing_and_leaves_no_set() {
    for bad in ["../../x.rdb", "a/b", "", "manifest.json", ".hidden"] {
        let temp = tempfile::tempdir().unwrap();
        let store = store_in(temp.path());
        let mut set = prepared(
            &store,
            "b1",
            &[("good.rdb", b"good"), ("placeholder", b"bad")],
        );
        set.files[1].1.name = bad.to_string();
        let before = tree(temp.path());
        let err = store.publish(&set).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::UnsafeFileName { .. } | StoreError::ConflictingFileName { .. }
            ),
            "{bad:?}: {err}"
        );
        assert_eq!(tree(temp.path()), before, "{bad:?} changed the tree");
        assert!(store.list_sets(INSTANCE).unwrap().sets.is_empty());
    }
}

#[test]
fn a_duplicate_file_name_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let mut set = prepared(&store, "b1", &[("a.rdb", b"1"), ("b.rdb", b"2")]);
    set.files[1].1.name = "a.rdb".to_string();
    let err = store.publish(&set).unwrap_err();
    assert!(
        err.to_string().contains("\"a.rdb\" (listed twice)"),
        "{err}"
    );
}

#[test]
fn a_published_set_is_never_overwritten() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let first = store
        .publish(&prepared(&store, "b1", &[("a.rdb", b"first")]))
        .unwrap();
    let second = prepared(&store, "b1", &[("a.rdb", b"second")]);
    let err = store.publish(&second).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyPublished { .. }), "{err}");
    assert_eq!(std::fs::read(first.dir.join("a.rdb")).unwrap(), b"first");
    assert!(second.files[0].0.exists(), "the new partial file stays put");
    // Same backup id, different start (the API moved it): still refused.
    let mut moved = prepared(&store, "b1", &[("a.rdb", b"third")]);
    moved.start += TimeDelta::hours(1);
    assert!(matches!(
        store.publish(&moved),
        Err(StoreError::AlreadyPublished { .. })
    ));
}

#[test]
fn a_failed_publish_puts_the_partial_files_back() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let mut set = prepared(&store, "b1", &[("a.rdb", b"aaaa"), ("b.rdb", b"bbbb")]);
    std::fs::remove_file(&set.files[1].0).unwrap();
    assert!(matches!(store.publish(&set), Err(StoreError::Io { .. })));
    assert_eq!(std::fs::read(&set.files[0].0).unwrap(), b"aaaa");
    let instance_dir = temp.path().join("download").join(INSTANCE);
    assert_eq!(
        tree(&instance_dir),
        Vec::<String>::new(),
        "no set and no staging directory"
    );
    // A size that disagrees with the record is refused the same way.
    std::fs::write(&set.files[1].0, b"bb").unwrap();
    let err = store.publish(&set).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SizeMismatch {
                expected: 4,
                actual: 2,
                ..
            }
        ),
        "{err}"
    );
    set.files[1].1 = record("b.rdb", b"bb");
    store.publish(&set).unwrap();
}

#[test]
fn crash_leftovers_are_not_listed_and_are_cleaned() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let good = store
        .publish(&prepared(&store, "b1", &[("a.rdb", b"a")]))
        .unwrap();
    let instance_dir = temp.path().join("download").join(INSTANCE);
    // A crash just before the final rename: a complete staging directory.
    let staging = instance_dir.join(".tmp-2025-01-01T000000Z_redis_b2");
    std::fs::create_dir(&staging).unwrap();
    std::fs::copy(
        good.dir.join("manifest.json"),
        staging.join("manifest.json"),
    )
    .unwrap();
    // A crash in the middle of a delete.
    let deleting = instance_dir.join(".deleting-2024-01-01T000000Z_redis_b0");
    std::fs::create_dir(&deleting).unwrap();
    std::fs::write(deleting.join("a.rdb"), b"a").unwrap();
    // A directory someone made by hand, without a manifest.
    let stray = instance_dir.join("2025-02-01T000000Z_redis_b3");
    std::fs::create_dir(&stray).unwrap();
    // A staging directory of a publish running right now in this process.
    let running = instance_dir.join(".tmp-2025-03-01T000000Z_redis_b4");
    std::fs::create_dir(&running).unwrap();
    store.lock_staging().insert(running.clone());

    let listing = store.list_sets(INSTANCE).unwrap();
    assert_eq!(listing.sets, std::slice::from_ref(&good));
    assert_eq!(listing.ignored.len(), 1);
    assert_eq!(listing.ignored[0].path, stray);
    assert_eq!(
        listing.ignored[0].reason.to_string(),
        "no manifest.json, so not a complete set"
    );

    let held = store.lock().unwrap();
    let mut removed = store.clean_leftovers(&held).unwrap();
    removed.sort();
    assert_eq!(removed, [deleting.clone(), staging.clone()]);
    assert!(!staging.exists() && !deleting.exists());
    assert!(running.exists(), "a publish in progress is left alone");
    assert!(
        stray.exists(),
        "visible directories are reported, not removed"
    );
    assert_eq!(store.list_sets(INSTANCE).unwrap().sets, [good]);
}

#[test]
fn delete_hides_the_set_before_removing_it() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let kept = store
        .publish(&prepared(&store, "keep", &[("a.rdb", b"a")]))
        .unwrap();
    let mut doomed_set = prepared(&store, "drop", &[("b.rdb", b"b")]);
    doomed_set.start -= TimeDelta::days(1);
    let doomed = store.publish(&doomed_set).unwrap();
    store.delete_set(&doomed).unwrap();
    assert!(!doomed.dir.exists());
    let instance_dir = temp.path().join("download").join(INSTANCE);
    assert_eq!(
        tree(&instance_dir)
            .iter()
            .filter(|p| p.starts_with(".deleting"))
            .count(),
        0
    );
    assert_eq!(
        store.list_sets(INSTANCE).unwrap().sets,
        std::slice::from_ref(&kept)
    );
    // A listing that went stale (the directory now holds another backup)
    // is refused rather than deleting the wrong set.
    let mut impostor = kept.clone();
    impostor.manifest.backup_id = "other".to_string();
    assert!(matches!(
        store.delete_set(&impostor),
        Err(StoreError::Stale { .. })
    ));
    let mut escaping = kept.clone();
    escaping.dir_name = "../..".to_string();
    assert!(matches!(
        store.delete_set(&escaping),
        Err(StoreError::Stale { .. })
    ));
    assert!(kept.dir.exists());
}

#[test]
fn verify_catches_a_flipped_byte_a_truncated_file_and_a_missing_one() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let contents: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let set = store
        .publish(&prepared(
            &store,
            "b1",
            &[
                ("big.rdb", &contents),
                ("small.rdb", b"small"),
                ("gone.rdb", b"x"),
            ],
        ))
        .unwrap();
    let clean = store.verify_set(&set).unwrap();
    assert!(clean.is_ok(), "{clean:?}");

    let mut flipped = contents.clone();
    flipped[2_500_000] ^= 0x01;
    std::fs::write(set.dir.join("big.rdb"), &flipped).unwrap();
    std::fs::write(set.dir.join("small.rdb"), b"sma").unwrap();
    std::fs::remove_file(set.dir.join("gone.rdb")).unwrap();
    std::fs::write(set.dir.join("extra.txt"), b"?").unwrap();
    let report = store.verify_set(&set).unwrap();
    assert!(!report.is_ok());
    assert!(matches!(
        &report.files[0].outcome,
        FileOutcome::DigestMismatch { expected, .. } if *expected == set.manifest.files[0].sha256
    ));
    assert_eq!(
        report.files[1].outcome,
        FileOutcome::SizeMismatch {
            expected: 5,
            actual: 3
        }
    );
    assert_eq!(report.files[2].outcome, FileOutcome::Missing);
    assert_eq!(report.extra_files, ["extra.txt"]);
}

/// A published file swapped for a link to an identical copy elsewhere is not
/// the file tcbackup wrote: verify refuses to follow it.
#[test]
fn verify_never_follows_a_link_in_place_of_a_published_file() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let set = store
        .publish(&prepared(&store, "b1", &[("a.rdb", b"payload")]))
        .unwrap();
    let elsewhere = temp.path().join("copy.rdb");
    std::fs::write(&elsewhere, b"payload").unwrap();
    std::fs::remove_file(set.dir.join("a.rdb")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, set.dir.join("a.rdb")).unwrap();
    let report = store.verify_set(&set).unwrap();
    assert!(!report.is_ok(), "{report:?}");
    assert!(
        matches!(&report.files[0].outcome, FileOutcome::Unreadable { error } if error.contains("is a symbolic link")),
        "{:?}",
        report.files[0].outcome
    );
}

#[test]
fn set_directories_sort_by_start_time_in_ls_order() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let starts = [
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2024, 12, 31, 23, 59, 59).unwrap(),
        Utc.with_ymd_and_hms(2024, 2, 9, 10, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2024, 10, 1, 9, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2024, 10, 1, 10, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2031, 1, 1, 0, 0, 0).unwrap(),
    ];
    for (index, start) in starts.iter().enumerate() {
        // Ids chosen so that id order disagrees with time order.
        let mut set = prepared(&store, &format!("{}", 9 - index), &[("a.rdb", b"a")]);
        set.start = *start;
        store.publish(&set).unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(temp.path().join("download").join(INSTANCE))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort(); // byte order, which is `ls` order in the C locale
    let mut by_time = starts.to_vec();
    by_time.sort();
    let name_times: Vec<String> = names.iter().map(|name| name[..18].to_string()).collect();
    let expected: Vec<String> = by_time
        .iter()
        .map(|start| start.format("%Y-%m-%dT%H%M%SZ").to_string())
        .collect();
    assert_eq!(name_times, expected);
}

#[test]
fn partial_dirs_are_cleaned_when_published_or_no_longer_listed() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let published = prepared(&store, "done", &[("a.rdb", b"a")]);
    store.publish(&published).unwrap();
    // A crash between publish and cleanup leaves the partial directory.
    let leftover = store
        .partial_dir(INSTANCE, BackupKind::Redis, "done")
        .unwrap();
    let listed = store
        .partial_dir(INSTANCE, BackupKind::Redis, "still/listed")
        .unwrap();
    std::fs::write(listed.join("a.rdb.part"), b"half").unwrap();
    let dropped = store
        .partial_dir(INSTANCE, BackupKind::Redis, "expired")
        .unwrap();
    std::fs::write(dropped.join("a.rdb.part"), b"123456").unwrap();
    let unknown = temp
        .path()
        .join("download/.partial")
        .join(INSTANCE)
        .join("mystery");
    std::fs::create_dir(&unknown).unwrap();

    let dropped_bytes: u64 = std::fs::read_dir(&dropped)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    assert!(dropped_bytes > 6, "the part file and the owner file");
    let active: HashSet<(String, BackupKind, String)> = [(
        INSTANCE.to_string(),
        BackupKind::Redis,
        "still/listed".to_string(),
    )]
    .into();
    let grace = Duration::from_secs(7 * 86_400);
    let soon = Utc::now() + TimeDelta::hours(1);
    let removed = store.clean_partials(&active, grace, soon).unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].path, leftover);
    assert_eq!(removed[0].reason, PartialRemoval::Published);

    let later = Utc::now() + TimeDelta::days(8);
    let mut removed = store.clean_partials(&active, grace, later).unwrap();
    removed.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert_eq!(removed[0].path, unknown);
    assert!(matches!(
        removed[0].reason,
        PartialRemoval::Unidentified { .. }
    ));
    assert_eq!(removed[1].path, dropped);
    assert_eq!(removed[1].bytes, dropped_bytes);
    assert!(matches!(removed[1].reason, PartialRemoval::NotListed { idle } if idle >= grace));
    assert_eq!(
        removed[1]
            .owner
            .as_ref()
            .map(|owner| owner.backup_id.as_str()),
        Some("expired")
    );
    assert!(
        listed.join("a.rdb.part").exists(),
        "listed backups keep their partials"
    );
}

#[test]
fn opening_and_listing_touch_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    assert!(store.list_all().unwrap().sets.is_empty());
    assert!(store.list_sets(INSTANCE).unwrap().sets.is_empty());
    assert!(store
        .clean_partials(&HashSet::new(), Duration::ZERO, Utc::now())
        .unwrap()
        .is_empty());
    assert!(!temp.path().join("download").exists());
}

#[test]
fn unsafe_instance_ids_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    for bad in ["..", "a/b", "", ".partial"] {
        assert!(matches!(
            store.partial_dir(bad, BackupKind::Redis, "b"),
            Err(StoreError::UnsafeInstanceId { .. })
        ));
        assert!(store.list_sets(bad).is_err());
    }
    assert!(!temp.path().join("download").exists());
}

#[test]
fn list_all_spans_instances_and_reports_strays() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    store
        .publish(&prepared(&store, "r1", &[("a.rdb", b"a")]))
        .unwrap();
    let postgres_partial = store
        .partial_dir("postgres-x", BackupKind::PgBase, "p1")
        .unwrap();
    std::fs::write(postgres_partial.join("base.tar.gz.part"), b"tar").unwrap();
    store
        .publish(&SetToPublish {
            instance_id: "postgres-x".to_string(),
            region: "ap-guangzhou".to_string(),
            kind: BackupKind::PgBase,
            backup_id: "p1".to_string(),
            start: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            finish: None,
            files: vec![(
                postgres_partial.join("base.tar.gz.part"),
                record("base.tar.gz", b"tar"),
            )],
            encryption: None,
            meta: Default::default(),
        })
        .unwrap();
    std::fs::write(temp.path().join("download/README"), b"?").unwrap();
    let listing = store.list_all().unwrap();
    let instances: Vec<&str> = listing
        .sets
        .iter()
        .map(|set| set.instance_id.as_str())
        .collect();
    assert_eq!(instances, [INSTANCE, "postgres-x"]);
    assert_eq!(listing.ignored.len(), 1);
    assert_eq!(listing.ignored[0].reason.to_string(), "not a directory");
}

#[test]
fn the_lock_is_exclusive_until_dropped() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let held = store.lock().unwrap();
    let other = store_in(temp.path());
    assert!(matches!(other.lock(), Err(StoreError::Locked { .. })));
    drop(held);
    other.lock().unwrap();
}

#[test]
fn leftovers_are_cleaned_only_under_this_directory_s_lock() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let doomed = store
        .root()
        .join(INSTANCE)
        .join(".deleting-2024-01-01T000000Z_redis_b0");
    std::fs::create_dir_all(&doomed).unwrap();
    let elsewhere = Store::open(temp.path().join("other"), Arc::new(ManualClock::new()));
    let other_lock = elsewhere.lock().unwrap();
    assert!(matches!(
        store.clean_leftovers(&other_lock),
        Err(StoreError::NotLocked { .. })
    ));
    assert!(doomed.exists());
    let held = store.lock().unwrap();
    assert_eq!(store.clean_leftovers(&held).unwrap(), [doomed.as_path()]);
    assert!(!doomed.exists());
}

#[test]
fn a_directory_whose_name_cannot_be_a_set_is_reported_as_such() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let instance_dir = store.instance_dir(INSTANCE).unwrap();
    std::fs::create_dir_all(instance_dir.join("bad\nname")).unwrap();
    let listing = store.list_sets(INSTANCE).unwrap();
    assert_eq!(listing.ignored.len(), 1);
    assert_eq!(
        listing.ignored[0].reason.to_string(),
        "not a set directory (the name contains a control character)"
    );
}

#[test]
fn an_instance_directory_whose_name_is_not_utf8_is_reported_not_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let odd = store.root().join(std::ffi::OsStr::from_bytes(b"crs-\xff"));
    std::fs::create_dir_all(&odd).unwrap();
    let listing = store.list_all().unwrap();
    assert_eq!(listing.ignored.len(), 1, "{:?}", listing.ignored);
    assert_eq!(listing.ignored[0].path, odd);
    assert_eq!(
        listing.ignored[0].reason.to_string(),
        "not an instance directory (the name is not UTF-8)"
    );
}

/// An encrypted set with its key, published by a group-readable store.
fn publish_encrypted(store: &Store, key: Option<&str>) -> LocalSet {
    let mut set = prepared(store, "enc-1", &[("enc-1.rdb", b"\x8f\x11ciphertext")]);
    set.encryption = Some(crate::encryption::Encryption {
        algorithm: "AES-256-CBC".to_string(),
        kms_key_id: String::new(),
        key: key.map(tcbackup_signing::secret::Secret::new),
    });
    store.publish(&set).unwrap()
}

#[test]
fn an_encrypted_set_is_published_with_its_key_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path()).with_modes(crate::private_files::FileModes::GROUP_READABLE);
    let set = publish_encrypted(&store, Some("c2VjcmV0LWtleQ=="));
    let key_path = set.dir.join(KEY_FILE);
    assert_eq!(std::fs::read(&key_path).unwrap(), b"c2VjcmV0LWtleQ==");
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "the key is owner-only even when sets are group-readable"
    );
    let manifest_text = std::fs::read_to_string(set.dir.join(MANIFEST_FILE)).unwrap();
    assert!(
        !manifest_text.contains("c2VjcmV0LWtleQ=="),
        "{manifest_text}"
    );
    assert!(set.manifest.encrypted);
    let record = set.manifest.encryption.as_ref().unwrap();
    assert_eq!(record.algorithm, "AES-256-CBC");
    assert_eq!(record.kms_key_id, None);
    assert_eq!(record.key_file.as_deref(), Some(KEY_FILE));
    assert_eq!(
        store.list_sets(INSTANCE).unwrap().sets,
        std::slice::from_ref(&set)
    );

    let report = store.verify_set(&set).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.key, KeyOutcome::Ok);
    assert!(report.extra_files.is_empty(), "{report:?}");

    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let report = store.verify_set(&set).unwrap();
    assert_eq!(report.key, KeyOutcome::NotPrivate { mode: 0o640 });
    assert!(!report.is_ok());
    std::fs::remove_file(&key_path).unwrap();
    let report = store.verify_set(&set).unwrap();
    assert_eq!(report.key, KeyOutcome::Missing);
    assert!(!report.is_ok());
}

#[test]
fn an_encrypted_set_without_a_key_says_so_and_verifies() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let set = publish_encrypted(&store, None);
    assert!(!set.dir.join(KEY_FILE).exists());
    assert!(set.manifest.encrypted);
    assert_eq!(set.manifest.encryption.as_ref().unwrap().key_file, None);
    let report = store.verify_set(&set).unwrap();
    assert_eq!(report.key, KeyOutcome::NotHeld);
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn a_file_named_like_the_key_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_in(temp.path());
    let set = prepared(&store, "k1", &[(KEY_FILE, b"x")]);
    assert!(matches!(
        store.publish(&set),
        Err(StoreError::ConflictingFileName { .. })
    ));
}
