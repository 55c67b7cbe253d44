//! Encrypted Redis backups end to end: the sample instance whose two
//! backups are AES-256-CBC ciphertext, one with its `DecryptKey` and one
//! whose key the API withholds (KMS). What a user relies on: the bytes on
//! disk are the ciphertext COS served, the key is beside them in
//! `DECRYPT-KEY` (0600), the manifest says how the set is encrypted but
//! never holds the key, and no log line, `list` or `verify` output shows it.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::Value;
use tcbackup_emulator::sample::{
    sample_encrypted_body, SAMPLE_KMS_KEY_ID, SAMPLE_REDIS_ENCRYPTED_INSTANCE as ENC,
};
use tcbackup_emulator::RedisBackup;

use crate::common::*;

/// The key file's name in a set directory.
const KEY_FILE: &str = "DECRYPT-KEY";

/// The sample with a config naming only the encrypted instance.
fn encrypted_harness() -> Harness {
    let h = Harness::sample();
    h.write_config(&Cfg {
        redis: vec![ENC.to_string()],
        postgres: Vec::new(),
        ..Cfg::default()
    });
    h
}

/// The encrypted sample backups, newest first (the first has its key).
fn encrypted_backups(h: &Harness) -> Vec<RedisBackup> {
    let ids = h.emulator.sample().unwrap().redis_encrypted.clone();
    let all = h.emulator.state().redis_backups(ENC).unwrap();
    ids.iter()
        .map(|id| all.iter().find(|b| &b.backup_id == id).unwrap().clone())
        .collect()
}

fn set_path(h: &Harness, b: &RedisBackup) -> PathBuf {
    h.instance_dir(ENC)
        .join(set_dir(b.start, "redis", &b.backup_id))
}

/// Every file named like the key anywhere under the download directory
/// (relative to it).
fn key_files(h: &Harness) -> Vec<PathBuf> {
    files_under(&h.download_dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == KEY_FILE))
        .collect()
}

#[test]
fn an_encrypted_backup_is_published_with_its_key_which_no_output_shows() {
    let h = encrypted_harness();
    // The most verbose logs: API answers are traced too.
    let run = h.run(&["-vv", "--now"]);
    run.assert_code(0);
    let backups = encrypted_backups(&h);
    assert_eq!(backups.len(), 2);
    let key = backups[0].decrypt_key.clone();
    assert_eq!(key.len(), 64, "the sample's key");
    assert!(backups[1].decrypt_key.is_empty(), "the KMS-held one");

    for (k, b) in (0u64..).zip(&backups) {
        let set = set_path(&h, b);
        let file = &b.files[0].name;
        let bytes = std::fs::read(set.join(file)).unwrap();
        assert_eq!(bytes, sample_encrypted_body(k), "the served ciphertext");
        assert!(!bytes.starts_with(b"REDIS"));
        let m = manifest(&set);
        assert_eq!(m["encrypted"], true, "{m}");
        assert_eq!(m["encryption"]["algorithm"], "AES-256-CBC", "{m}");
        let text = std::fs::read_to_string(set.join("manifest.json")).unwrap();
        assert!(!text.contains(&key), "the key is in {}", set.display());
        assert!(!text.to_lowercase().contains("decrypt_key"), "{text}");
    }
    // The newest: its key beside it, owner-only, exactly as the API gave it.
    let held = set_path(&h, &backups[0]);
    let key_path = held.join(KEY_FILE);
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), key);
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    let m = manifest(&held);
    assert_eq!(m["encryption"]["key_file"], KEY_FILE, "{m}");
    assert!(m["encryption"].get("kms_key_id").is_none(), "{m}");
    // The older: no key to keep, and the manifest and the log say so.
    let kms = set_path(&h, &backups[1]);
    assert!(!kms.join(KEY_FILE).exists());
    let m = manifest(&kms);
    assert!(m["encryption"].get("key_file").is_none(), "{m}");
    assert_eq!(m["encryption"]["kms_key_id"], SAMPLE_KMS_KEY_ID, "{m}");
    assert!(
        run.stderr.lines().any(|l| l.contains("WARN")
            && l.contains(&backups[1].backup_id)
            && l.contains("without a DecryptKey")),
        "{}",
        run.stderr
    );
    assert_eq!(
        key_files(&h),
        [key_path.strip_prefix(&h.download_dir).unwrap()]
    );
    // Never in a log line, at the highest verbosity either.
    assert!(run.stderr.contains("TRACE"), "not verbose");
    assert!(
        run.stderr.contains("DescribeBackupDetail"),
        "the detail was asked"
    );
    assert!(
        run.stderr.contains("\"DecryptKey\":\"REDACTED\""),
        "the traced answer is redacted:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains(&key), "the key was logged");
    assert!(!run.stdout.contains(&key), "the key was printed");

    // `list --json`: encrypted, whether the key is held; never the key.
    let run = h.run(&["list", "--json"]);
    run.assert_code(0);
    assert!(!run.stdout.contains(&key) && !run.stderr.contains(&key));
    let rows: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(rows.len(), 2, "{}", run.stdout);
    for (b, held) in backups.iter().zip([true, false]) {
        let row = rows.iter().find(|r| r["backup_id"] == b.backup_id).unwrap();
        assert_eq!(row["encrypted"], true, "{row}");
        assert_eq!(row["local_key_held"], held, "{row}");
    }
    let run = h.run(&["list", "--local"]);
    run.assert_code(0);
    assert!(!run.stdout.contains(&key) && !run.stderr.contains(&key));
    assert!(
        run.stdout.contains("[encrypted, key kept]"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("[encrypted, NO key held]"),
        "{}",
        run.stdout
    );

    // `verify` passes and reports what it found, without the key.
    let run = h.run(&["verify"]);
    run.assert_code(0);
    assert!(!run.stdout.contains(&key) && !run.stderr.contains(&key));
    let ok = format!("ok      {} (encrypted; key in {KEY_FILE})", held.display());
    assert!(run.stdout.contains(&ok), "{}", run.stdout);
    assert!(
        run.stderr.contains("no key held"),
        "the missing key is a warning:\n{}",
        run.stderr
    );
    assert!(run.stdout.contains("2 set(s) verified"), "{}", run.stdout);
}

/// `verify` fails an encrypted set whose key file others may read (it is
/// as sensitive as the data) or that is gone (the copy cannot be
/// decrypted), and one whose ciphertext changed.
#[test]
fn verify_fails_a_widened_or_missing_key_file_and_changed_ciphertext() {
    let h = encrypted_harness();
    h.now().assert_code(0);
    let backups = encrypted_backups(&h);
    let set = set_path(&h, &backups[0]);
    let key_path = set.join(KEY_FILE);
    let failed = format!("FAILED  {}", set.display());

    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = h.run(&["verify"]);
    run.assert_code(1);
    assert!(run.stdout.contains(&failed), "{}", run.stdout);
    assert!(
        run.stdout.contains("DECRYPT-KEY has mode 0644"),
        "{}",
        run.stdout
    );
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    h.run(&["verify"]).assert_code(0);

    let saved = std::fs::read(&key_path).unwrap();
    std::fs::remove_file(&key_path).unwrap();
    let run = h.run(&["verify"]);
    run.assert_code(1);
    assert!(run.stdout.contains(&failed), "{}", run.stdout);
    assert!(
        run.stdout.contains("DECRYPT-KEY is missing"),
        "{}",
        run.stdout
    );
    std::fs::write(&key_path, &saved).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    h.run(&["verify"]).assert_code(0);

    let file = set.join(&backups[0].files[0].name);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let run = h.run(&["verify"]);
    run.assert_code(1);
    assert!(run.stdout.contains(&failed), "{}", run.stdout);
    assert!(run.stdout.contains("sha256"), "{}", run.stdout);
}

/// A ciphertext file that is not what the API announced (here its size)
/// fails its set like any other: exit 1, no set directory, no key file
/// left anywhere; the other encrypted set still arrives.
#[test]
fn a_wrong_size_encrypted_file_fails_its_set_and_leaves_no_key() {
    let h = encrypted_harness();
    let backups = encrypted_backups(&h);
    let b = &backups[0];
    h.emulator
        .state()
        .set_redis_file_size(ENC, &b.backup_id, 0, b.files[0].size + 16)
        .unwrap();
    let run = h.now();
    run.assert_code(1);
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("  backup {}: ", b.backup_id)))
        .unwrap_or_else(|| panic!("no failure line in\n{}", run.stderr));
    assert!(line.contains(&b.files[0].name), "{line}");
    assert!(!set_path(&h, b).exists());
    assert!(set_path(&h, &backups[1]).exists(), "the other set arrived");
    assert!(key_files(&h).is_empty(), "{:?}", key_files(&h));
    assert!(!run.stderr.contains(&b.decrypt_key), "the key was logged");
}
